"""An API client over the embedded runtime (SQLite in a temp dir, in-process worker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from pipeline.migrate import upgrade
from pipeline.runtime import Runtime
from pipeline.settings import override_settings, reset_settings


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Any]:
    clients: list[TestClient] = []

    def _make(**overrides: Any) -> tuple[TestClient, Runtime]:
        values: dict[str, Any] = {
            "database_url": f"sqlite:///{tmp_path}/heron-{len(clients)}.db",
            "redis_url": None,
            "scorers": ["rules", "links"],
            "sweep_interval_s": 0.1,
            "requeue_after_s": 1.0,
            "webhook_backoff_base_s": 0.05,
            "webhook_backoff_max_s": 0.2,
            "max_body_bytes": 20_000,
            "sync_budget_ms": 10_000,  # a loaded CI machine must not turn 200s into 202s
            # The test receivers listen on 127.0.0.1; the SSRF tests turn this off again.
            "allow_private_webhooks": True,
            # Tests send bursts faster than a chat service would on a fast machine; the rate
            # limits are under test only in test_ratelimit.py, which sets them explicitly.
            "rate_limit_per_key": "",
            "rate_limit_per_guild": "",
            "rate_limit_other": "",
            "rate_limit_login": "",
        }
        values.update(overrides)
        settings = override_settings(**values)
        upgrade(settings.database_url)
        rt = Runtime.build("api", settings)
        client = TestClient(create_app(rt))
        client.__enter__()
        clients.append(client)
        _, key = rt.store.tenants.create_api_key("acme")
        client.headers["Authorization"] = f"Bearer {key}"
        return client, rt

    yield _make
    for c in clients:
        c.__exit__(None, None, None)
    reset_settings()


@pytest.fixture
def api(make_api: Any) -> tuple[TestClient, Runtime]:
    return make_api()  # type: ignore[no-any-return]
