"""Webhook registration refuses internal addresses (SSRF) unless HERON_ALLOW_PRIVATE_WEBHOOKS."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from pipeline.settings import Settings

REFUSED = [
    "http://127.0.0.1:6379/",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[::1]/",
    "http://localhost:5432/",
    "http://10.0.0.5/hook",
    "http://[::ffff:127.0.0.1]/",
    "http://2130706433/",
    "http://100.64.0.1/",
    "http://metadata.google.internal/",
]


def test_private_webhooks_are_off_by_default() -> None:
    assert Settings().allow_private_webhooks is False


def test_internal_webhook_urls_are_refused_at_registration(make_api: Any, golden: Any) -> None:
    client, _ = make_api(allow_private_webhooks=False)
    for url in REFUSED:
        r = client.put("/v1/webhook", json={"url": url})
        assert r.status_code == 422, (url, r.text)
        error = r.json()["error"]
        assert error["code"] == "unsafe_webhook_url", url
        assert error["message"].startswith("the webhook URL is refused: "), url
        if url == "http://127.0.0.1:6379/":
            golden("errors/unsafe_webhook_url", {"status": r.status_code, "body": r.json()})
    assert client.get("/v1/webhook").status_code == 404  # nothing was registered
    assert "webhook_registered" not in [e["event"] for e in client.get("/v1/audit").json()]


def test_a_name_resolving_to_loopback_is_refused(make_api: Any) -> None:
    client, _ = make_api(allow_private_webhooks=False)
    name = socket.gethostname()
    try:
        addresses = {i[4][0] for i in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
    except OSError:
        addresses = set()
    if not addresses or not all(a.startswith("127.") or a == "::1" for a in addresses):
        pytest.skip(f"{name!r} does not resolve to loopback here (tests/unit/test_netguard.py covers names)")
    r = client.put("/v1/webhook", json={"url": f"http://{name}:6379/"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unsafe_webhook_url"
    assert "loopback" in r.json()["error"]["message"]


def test_a_name_that_does_not_resolve_is_refused(make_api: Any) -> None:
    client, _ = make_api(allow_private_webhooks=False)
    r = client.put("/v1/webhook", json={"url": "https://hooks.does-not-exist.invalid/heron"})
    assert r.status_code == 422 and "does not resolve" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379/", "http://[::1]/", "http://localhost:5432/", "http://10.0.0.5/"]
)
def test_private_urls_are_accepted_when_the_setting_is_on(make_api: Any, url: str) -> None:
    client, _ = make_api(allow_private_webhooks=True)
    r = client.put("/v1/webhook", json={"url": url})
    assert r.status_code == 200, r.text
    assert r.json()["secret"].startswith("whsec_")


def test_metadata_stays_refused_when_the_setting_is_on(make_api: Any) -> None:
    client, _ = make_api(allow_private_webhooks=True)
    r = client.put("/v1/webhook", json={"url": "http://169.254.169.254/latest/"})
    assert r.status_code == 422 and "metadata" in r.json()["error"]["message"]


def test_non_http_urls_are_refused(api: Any) -> None:
    client, _ = api
    for url in ("ftp://example.com/", "javascript:alert(1)", "not a url", "http://"):
        r = client.put("/v1/webhook", json={"url": url})
        assert r.status_code == 422, (url, r.text)
        assert r.json()["error"]["code"] == "validation_error", url
