"""Real services for integration tests: a Redis server process, a fresh PostgreSQL database,
`heron serve` and `heron worker` processes. Nothing here is mocked; a missing service fails the
run instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import fresh_pg_database

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# The real scorers a deployment runs; the text model is included once its artifact is committed.
SCORERS = '["rules", "links", "text"]'

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A real redis-server on its own port, with no persistence (like this machine's Redis)."""

    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed; integration tests need the real Redis")
        self.binary = binary
        self.port = free_port()
        self.dir = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)

    def stop(self) -> None:
        """Stop hard, as a crash or a restart without persistence would: queued tasks are gone."""
        if self.proc:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the machine's server, dropped afterwards."""
    with fresh_pg_database("heron_it_") as url:
        yield url


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.handle = log.open("ab")
        self.proc = subprocess.Popen(
            args, env=env, cwd=REPO, stdout=self.handle, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(20)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.handle.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class Stack:
    """`heron serve` + `heron worker` processes over real PostgreSQL and Redis."""

    def __init__(self, tmp: Path, pg_url: str, redis: RedisServer) -> None:
        self.tmp = tmp
        self.redis = redis
        self.port = free_port()
        self.env = {
            **os.environ,
            "HERON_DATABASE_URL": pg_url,
            "HERON_REDIS_URL": redis.url,
            "HERON_SCORERS": os.environ.get("HERON_IT_SCORERS", SCORERS),
            "HERON_REQUEUE_AFTER_S": "3",
            "HERON_SWEEP_INTERVAL_S": "0.5",
            "HERON_WEBHOOK_BACKOFF_BASE_S": "0.2",
            "HERON_WEBHOOK_BACKOFF_MAX_S": "1",
            "HERON_SYNC_BUDGET_MS": "5000",
            # The test receivers listen on 127.0.0.1, which the SSRF guard refuses by default.
            "HERON_ALLOW_PRIVATE_WEBHOOKS": "true",
            # These tests replay bursts as fast as one client can send; on a fast machine that
            # outruns the default per-guild limit. Rate limits have their own tests
            # (test_ratelimit_shared.py, tests/api/test_ratelimit.py).
            "HERON_RATE_LIMIT_PER_KEY": "",
            "HERON_RATE_LIMIT_PER_GUILD": "",
            "HERON_RATE_LIMIT_OTHER": "",
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        self.api: Proc | None = None
        self.workers: list[Proc] = []
        self.engine = sa.create_engine(pg_url)
        subprocess.run([str(BIN / "heron"), "migrate"], env=self.env, cwd=REPO, check=True, capture_output=True)
        out = subprocess.run(
            [str(BIN / "heron"), "keys", "create", "--tenant", "chat"],
            env=self.env,
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        )
        self.key = out.stdout.strip()
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}", headers={"Authorization": f"Bearer {self.key}"}, timeout=30
        )

    def start_api(self) -> None:
        self.api = Proc(
            [str(BIN / "heron"), "serve", "--port", str(self.port), "--no-migrate", "--log-level", "warning"],
            self.env,
            self.tmp / "api.log",
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.client.get("/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.api.proc.poll() is None, self.api.output()
            time.sleep(0.2)
        raise AssertionError("API did not start:\n" + self.api.output())

    def start_worker(self, name: str) -> Proc:
        w = Proc(
            [str(BIN / "heron"), "worker", "--hostname", f"{name}@%h", "--loglevel", "INFO"],
            self.env,
            self.tmp / f"{name}.log",
        )
        self.workers.append(w)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if " ready." in w.output():
                return w
            assert w.proc.poll() is None, w.output()
            time.sleep(0.2)
        raise AssertionError(f"worker {name} did not become ready:\n" + w.output())

    def query(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params).all())

    def wait_decided(self, n: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        count = 0
        while time.monotonic() < deadline:
            count = self.query("SELECT count(*) FROM decisions")[0][0]
            if count >= n:
                return
            time.sleep(0.2)
        logs = "\n".join(w.output()[-3000:] for w in self.workers)
        raise AssertionError(f"{count} of {n} messages decided in {timeout}s\n{logs}")

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        if self.api:
            self.api.stop()
        self.client.close()
        self.engine.dispose()


@pytest.fixture
def stack(tmp_path: Path, pg_url: str, redis_server: RedisServer) -> Iterator[Stack]:
    s = Stack(tmp_path, pg_url, redis_server)
    yield s
    s.close()
