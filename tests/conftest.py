"""Shared fixtures: golden files, a temporary store, and an API client over the embedded runtime."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

GOLDEN_DIR = Path(__file__).parent / "golden"
PG_ADMIN_URL = os.environ.get("HERON_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def fresh_pg_database(prefix: str = "heron_test_") -> Iterator[str]:
    """A new database on the machine's real PostgreSQL, dropped afterwards; fails (never skips)
    when PostgreSQL is not answering."""
    import secrets

    import sqlalchemy as sa

    name = prefix + secrets.token_hex(4)
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not answering: {exc}")
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on the embedded SQLite store and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/heron.db"
        return
    with fresh_pg_database() as url:
        yield url


class Golden:
    """Compare a JSON-able value with tests/golden/<name>.json; HERON_UPDATE_GOLDEN=1 rewrites it."""

    def __call__(self, name: str, value: Any) -> None:
        path = GOLDEN_DIR / f"{name}.json"
        text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        if os.environ.get("HERON_UPDATE_GOLDEN") == "1" or not path.exists():
            if os.environ.get("CI") and not path.exists():
                pytest.fail(f"golden file {path} is missing; run the tests with HERON_UPDATE_GOLDEN=1 and commit it")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, "utf-8")
            return
        expected = json.loads(path.read_text("utf-8"))
        assert json.loads(text) == expected, f"{name} differs from {path}; rerun with HERON_UPDATE_GOLDEN=1 if intended"


@pytest.fixture
def golden() -> Golden:
    return Golden()


class Receiver:
    """A real HTTP server standing in for the chat service's webhook endpoint.

    It verifies every signature with the secret it is given and records what arrived; `fail_next`
    makes it answer 500 to simulate an outage, and `hang()` makes it accept connections and never
    answer (until `release()`), as a stopped or wedged chat service does.
    """

    def __init__(self) -> None:
        import threading
        import time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.secret: str | None = None
        self.received: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.fail_next = 0
        self.lock = threading.Lock()
        self.hung = threading.Event()
        self.hung_requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                from pipeline.signing import SignatureError, verify

                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if receiver.hung.is_set():
                    with receiver.lock:
                        receiver.hung_requests += 1
                    while receiver.hung.is_set():  # hold the connection open, answer nothing
                        time.sleep(0.05)
                    return  # the client gave up long ago; close without an answer
                with receiver.lock:
                    if receiver.fail_next > 0:
                        receiver.fail_next -= 1
                        self.send_response(500)
                        self.end_headers()
                        self.wfile.write(b"receiver down")
                        return
                    try:
                        verify(receiver.secret or "", dict(self.headers.items()), body)
                    except SignatureError:
                        receiver.bad_signatures += 1
                        self.send_response(401)
                        self.end_headers()
                        return
                    receiver.received.append(
                        {"headers": dict(self.headers.items()), "body": json.loads(body), "at": time.monotonic()}
                    )
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def hang(self) -> None:
        self.hung.set()

    def release(self) -> None:
        self.hung.clear()

    def decisions(self) -> dict[str, dict[str, Any]]:
        """The latest revision received for each message id."""
        with self.lock:
            out: dict[str, dict[str, Any]] = {}
            for r in self.received:
                d = r["body"]["decision"]
                if d["message_id"] not in out or d.get("revision", 1) >= out[d["message_id"]].get("revision", 1):
                    out[d["message_id"]] = d
            return out

    def events(self) -> list[dict[str, Any]]:
        """Every event body received, in arrival order (copies of one event included)."""
        with self.lock:
            return [r["body"] for r in self.received]

    def wait_for(self, n: int, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.decisions()
            if len(got) >= n:
                return got
            time.sleep(0.05)
        raise AssertionError(f"webhook receiver got {len(self.decisions())} of {n} decisions in {timeout}s")

    def close(self) -> None:
        self.hung.clear()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Any:
    r = Receiver()
    yield r
    r.close()
