"""Real processes for the client and Synapse tests: `heron serve` over SQLite, and a Matrix
Synapse homeserver (PyPI `matrix-synapse`) in its own virtualenv with the heron-synapse module.

The Synapse virtualenv is created on first use under `.cache/synapse/` (ignored by git) and
reused while the pinned version and the two local packages' sources are unchanged, so the first
run on a fresh machine pays the install (a few minutes) and later runs start in seconds.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.integration.conftest import REPO, Proc, free_port, wait_port

BIN = Path(sys.executable).parent
SYNAPSE_VERSION = "1.163.2"  # pinned: the module API surface the module was written against
CACHE = REPO / ".cache" / "synapse"
PACKAGES = [REPO / "clients" / "python", REPO / "integrations" / "matrix_synapse"]


def _sources_hash() -> str:
    h = hashlib.sha256(SYNAPSE_VERSION.encode())
    for pkg in PACKAGES:
        for f in sorted(pkg.rglob("*")):
            parts = set(f.relative_to(pkg).parts)
            if f.is_file() and not {"__pycache__", "build"} & parts and ".egg-info" not in str(f):
                h.update(str(f.relative_to(REPO)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def ensure_synapse_venv() -> Path:
    """The virtualenv's python, with matrix-synapse, heron-client and heron-synapse installed.

    Installed with `pip install ./clients/python ./integrations/matrix_synapse`, exactly as the
    docs tell an admin, which also checks that both packages install on their own."""
    CACHE.mkdir(parents=True, exist_ok=True)
    venv = CACHE / "venv"
    python = venv / "bin" / "python"
    stamp = CACHE / "stamp"
    with (CACHE / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        want = _sources_hash()
        if stamp.exists() and stamp.read_text() == want and python.exists():
            return python
        # The venv is rebuilt when Synapse's pin or the packages' dependency lists change; a
        # change to their code only reinstalls the two packages (seconds, no index lookups).
        deps = hashlib.sha256(
            SYNAPSE_VERSION.encode() + b"".join((p / "pyproject.toml").read_bytes() for p in PACKAGES)
        ).hexdigest()[:16]
        marker = CACHE / f"deps-{deps}"
        if not python.exists() or not marker.exists():
            for old in CACHE.glob("deps-*"):
                old.unlink()
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", f"matrix-synapse=={SYNAPSE_VERSION}"]
                + [str(p) for p in PACKAGES],
                check=True,
            )
            marker.touch()
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps"]
            + [str(p) for p in PACKAGES],
            check=True,
        )
        stamp.write_text(want)
    return python


class HeronServer:
    """`heron serve` over its own SQLite file with an in-process worker and outbox drainer."""

    def __init__(self, tmp: Path, scorers: str | None = None, extra_env: dict[str, str] | None = None):
        """`scorers`: a HERON_SCORERS JSON list, or None for the server's default set."""
        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "HERON_DATABASE_URL": f"sqlite:///{tmp / 'heron.db'}",
            "HERON_WEBHOOK_BACKOFF_BASE_S": "0.2",
            "HERON_WEBHOOK_BACKOFF_MAX_S": "1",
            "HERON_ALLOW_PRIVATE_WEBHOOKS": "true",
            # Tests drive routes back to back; rate limits are tested where extra_env sets them.
            "HERON_RATE_LIMIT_PER_KEY": "",
            "HERON_RATE_LIMIT_PER_GUILD": "",
            "HERON_RATE_LIMIT_OTHER": "",
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self.env.pop("HERON_REDIS_URL", None)
        self.env.pop("HERON_SCORERS", None)
        if scorers is not None:
            self.env["HERON_SCORERS"] = scorers
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
        self.proc: Proc | None = None

    def start(self) -> None:
        self.proc = Proc(
            [str(BIN / "heron"), "serve", "--port", str(self.port), "--no-migrate", "--log-level", "warning"],
            self.env,
            self.tmp / "heron.log",
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.proc.proc.poll() is None, self.proc.output()
            time.sleep(0.3)
        raise AssertionError("heron serve did not become ready:\n" + self.proc.output()[-4000:])

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


LOG_CONFIG = """version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: {log}
loggers:
  synapse.storage.SQL:
    level: WARNING
  heron_synapse:
    level: INFO
root:
  level: WARNING
  handlers: [file]
disable_existing_loggers: false
"""


class SynapseServer:
    """A Synapse homeserver on 127.0.0.1 with SQLite and the heron-synapse module."""

    server_name = "localhost"

    def __init__(self, tmp: Path, python: Path, module_config: dict[str, Any] | None) -> None:
        self.tmp = tmp
        self.python = python
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.shared_secret = secrets.token_hex(16)
        self.module_config = module_config
        self.proc: Proc | None = None
        tmp.mkdir(parents=True, exist_ok=True)

    def write_config(self) -> Path:
        import json

        log = self.tmp / "synapse.log"
        (self.tmp / "log.config").write_text(LOG_CONFIG.format(log=log))
        modules = []
        if self.module_config is not None:
            modules = [{"module": "heron_synapse.HeronModule", "config": self.module_config}]
        config = {
            "server_name": self.server_name,
            "pid_file": str(self.tmp / "homeserver.pid"),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(self.tmp / "homeserver.db")}},
            "log_config": str(self.tmp / "log.config"),
            "media_store_path": str(self.tmp / "media_store"),
            "registration_shared_secret": self.shared_secret,
            "report_stats": False,
            "macaroon_secret_key": secrets.token_hex(16),
            "form_secret": secrets.token_hex(16),
            "signing_key_path": str(self.tmp / "signing.key"),
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "enable_metrics": False,
            "presence": {"enabled": False},
            # The test sends many messages quickly as two users.
            "rc_message": {"per_second": 1000, "burst_count": 1000},
            "rc_registration": {"per_second": 1000, "burst_count": 1000},
            "rc_login": {
                "address": {"per_second": 1000, "burst_count": 1000},
                "account": {"per_second": 1000, "burst_count": 1000},
            },
            "rc_joins": {"local": {"per_second": 1000, "burst_count": 1000}},
            "modules": modules,
        }
        path = self.tmp / "homeserver.yaml"
        path.write_text(json.dumps(config, indent=1))  # JSON is YAML
        return path

    def start(self) -> None:
        path = self.write_config()
        if not (self.tmp / "signing.key").exists():
            subprocess.run(
                [str(self.python), "-m", "synapse.app.homeserver", "-c", str(path), "--generate-keys"],
                check=True,
                capture_output=True,
                cwd=self.tmp,
            )
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        self.proc = Proc(
            [str(self.python), "-m", "synapse.app.homeserver", "-c", str(path)], env, self.tmp / "stdout.log"
        )
        wait_port(self.port, timeout=120)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("synapse did not start:\n" + self.output())

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def output(self) -> str:
        log = self.tmp / "synapse.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        if self.proc is not None:
            text += self.proc.output()
        return text[-6000:]

    def register(self, localpart: str, admin: bool = False) -> str:
        """A new user via shared-secret registration; returns its access token."""
        nonce = httpx.get(self.url + "/_synapse/admin/v1/register", timeout=10).json()["nonce"]
        password = secrets.token_hex(8)
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(
            b"\x00".join([nonce.encode(), localpart.encode(), password.encode(), b"admin" if admin else b"notadmin"])
        )
        r = httpx.post(
            self.url + "/_synapse/admin/v1/register",
            json={"nonce": nonce, "username": localpart, "password": password, "admin": admin, "mac": mac.hexdigest()},
            timeout=30,
        )
        r.raise_for_status()
        return str(r.json()["access_token"])


class MatrixUser:
    """Just enough of the client-server API, over plain HTTP."""

    def __init__(self, server: SynapseServer, localpart: str) -> None:
        self.server = server
        self.user_id = f"@{localpart}:{server.server_name}"
        self.token = server.register(localpart)
        self.http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60)
        self._txn = 0

    def create_room(self, **body: Any) -> str:
        """A public room; `body` adds createRoom fields (initial_state, creation_content, ...)."""
        r = self.try_create_room(**body)
        r.raise_for_status()
        return str(r.json()["room_id"])

    def try_create_room(self, **body: Any) -> httpx.Response:
        return self.http.post("/_matrix/client/v3/createRoom", json={"preset": "public_chat", **body})

    def create_space(self, alias_localpart: str | None = None) -> str:
        """A space (a room of type m.space), with a canonical alias when `alias_localpart` is given."""
        body: dict[str, Any] = {"creation_content": {"type": "m.space"}}
        if alias_localpart is not None:
            body["room_alias_name"] = alias_localpart
        return self.create_room(**body)

    def put_state(self, room_id: str, event_type: str, state_key: str, content: dict[str, Any]) -> httpx.Response:
        return self.http.put(f"/_matrix/client/v3/rooms/{room_id}/state/{event_type}/{state_key}", json=content)

    def add_to_space(self, space_id: str, room_id: str) -> None:
        """Both halves of the spec's space membership: m.space.child in the space, m.space.parent
        in the room (this user must be allowed to send state in both)."""
        via = [self.server.server_name]
        self.put_state(space_id, "m.space.child", room_id, {"via": via}).raise_for_status()
        self.put_state(room_id, "m.space.parent", space_id, {"via": via, "canonical": True}).raise_for_status()

    def join(self, room_id: str) -> None:
        self.http.post(f"/_matrix/client/v3/join/{room_id}", json={}).raise_for_status()

    def send(self, room_id: str, content: dict[str, Any], event_type: str = "m.room.message") -> httpx.Response:
        self._txn += 1
        return self.http.put(
            f"/_matrix/client/v3/rooms/{room_id}/send/{event_type}/t{time.time_ns()}{self._txn}", json=content
        )

    def send_text(self, room_id: str, text: str) -> httpx.Response:
        return self.send(room_id, {"msgtype": "m.text", "body": text})

    def event(self, room_id: str, event_id: str) -> dict[str, Any]:
        r = self.http.get(f"/_matrix/client/v3/rooms/{room_id}/event/{event_id}")
        r.raise_for_status()
        return dict(r.json())

    def messages(self, room_id: str, limit: int = 50) -> list[dict[str, Any]]:
        r = self.http.get(f"/_matrix/client/v3/rooms/{room_id}/messages", params={"dir": "b", "limit": limit})
        r.raise_for_status()
        return list(r.json()["chunk"])

    def power_levels(self, room_id: str) -> dict[str, Any]:
        r = self.http.get(f"/_matrix/client/v3/rooms/{room_id}/state/m.room.power_levels/")
        r.raise_for_status()
        return dict(r.json())
