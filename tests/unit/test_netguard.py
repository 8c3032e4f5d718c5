"""The SSRF guard: what Heron refuses to connect to, at registration and again at connect time."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from pipeline.errors import HeronError, InvalidInput
from pipeline.netguard import (
    RefusedConnection,
    UnsafeURLError,
    check_url,
    safe_async_transport,
    safe_transport,
    send_following_redirects,
)

REAL_GETADDRINFO = socket.getaddrinfo


class Server:
    """A real HTTP server on 127.0.0.1 that counts what reaches it; `redirect_to` makes it a
    redirector."""

    def __init__(self, redirect_to: str | None = None) -> None:
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                server.hits.append(self.path)
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                if redirect_to is not None:
                    self.send_response(302)
                    self.send_header("Location", redirect_to.replace("{port}", str(server.port)))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = _answer  # noqa: N815 - http.server API

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/hook"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Answers for made-up names under .test (RFC 6761), as a DNS server under an attacker's
    control would give them; every other name goes to the real resolver."""
    answers: dict[str, list[str]] = {}

    def getaddrinfo(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name in answers:
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in answers[name]
            ]
        return REAL_GETADDRINFO(host, port, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def _loopback_hostname() -> str | None:
    """This machine's own name when /etc/hosts maps it to loopback (most Linux hosts do)."""
    name = socket.gethostname()
    try:
        addrs = {i[4][0] for i in REAL_GETADDRINFO(name, 80, type=socket.SOCK_STREAM)}
    except OSError:
        return None
    return name if addrs and all(a.startswith("127.") or a == "::1" for a in addrs) else None


REFUSED = [
    ("http://127.0.0.1:6379/", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[::1]/", "loopback"),
    ("http://localhost:5432/", "names this machine"),
    ("http://LOCALHOST./x", "names this machine"),
    ("http://api.localhost/", "names this machine"),
    ("http://10.1.2.3/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://[fc00::1]/", "private"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::ffff:169.254.169.254]/", "metadata"),
    ("http://2130706433/", "loopback"),  # decimal 127.0.0.1
    ("http://0x7f000001/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://169.254.10.10/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://0.0.0.0:8000/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
]


@pytest.mark.parametrize(("url", "why"), REFUSED, ids=[u for u, _ in REFUSED])
def test_internal_addresses_are_refused_with_a_reason(url: str, why: str) -> None:
    with pytest.raises(UnsafeURLError) as info:
        check_url(url, allow_private=False)
    assert why in info.value.reason
    # One taxonomy: the core's error, a ValueError for validators, mapped to 422 by the API.
    assert isinstance(info.value, InvalidInput) and isinstance(info.value, ValueError)
    assert isinstance(info.value, HeronError) and info.value.code == "unsafe_url"


def test_a_name_that_resolves_to_loopback_is_refused(dns: dict[str, list[str]]) -> None:
    dns["hooks.rebind.test"] = ["93.184.216.34", "127.0.0.1"]  # one bad answer is enough
    with pytest.raises(UnsafeURLError, match=r"'hooks.rebind.test' resolves to 127.0.0.1, a loopback"):
        check_url("https://hooks.rebind.test/x", allow_private=False)
    dns["v6.rebind.test"] = ["::1"]
    with pytest.raises(UnsafeURLError, match="loopback"):
        check_url("https://v6.rebind.test/x", allow_private=False)


def test_this_machines_own_name_is_refused_through_the_real_resolver() -> None:
    name = _loopback_hostname()
    if name is None:
        pytest.skip("this machine's hostname does not resolve to loopback via /etc/hosts")
    with pytest.raises(UnsafeURLError, match="loopback"):
        check_url(f"http://{name}:6379/", allow_private=False)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/x", "http or https"),
        ("javascript:alert(1)", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("http:///nohost", "no host"),
        ("https://name.does-not-exist.invalid/", "does not resolve"),
    ],
)
def test_non_http_urls_and_names_that_do_not_resolve_are_refused(url: str, why: str) -> None:
    with pytest.raises(UnsafeURLError, match=why):
        check_url(url, allow_private=True)


def test_public_addresses_pass(dns: dict[str, list[str]]) -> None:
    check_url("https://93.184.216.34/hook", allow_private=False)
    check_url("https://[2606:4700:4700::1111]/hook", allow_private=False)
    dns["chat.public.test"] = ["93.184.216.34", "2606:4700:4700::1111"]
    check_url("https://chat.public.test/heron", allow_private=False)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:6379/", "http://[::1]/", "http://localhost:5432/", "http://10.1.2.3/", "http://vm.lan.test/"],
)
def test_private_addresses_are_allowed_when_the_setting_says_so(url: str, dns: dict[str, list[str]]) -> None:
    dns["vm.lan.test"] = ["192.168.1.20"]
    check_url(url, allow_private=True)


@pytest.mark.parametrize("url", ["http://169.254.169.254/", "http://metadata.google.internal/", "http://0.0.0.0/"])
def test_metadata_and_unspecified_stay_refused_even_when_private_is_allowed(url: str) -> None:
    with pytest.raises(UnsafeURLError):
        check_url(url, allow_private=True)


# ---- send time ----------------------------------------------------------------------------------


def test_the_transport_refuses_loopback_even_when_the_url_passed_registration(server: Server) -> None:
    url = server.url()
    check_url(url, allow_private=True)  # registered while private addresses were allowed
    with httpx.Client(transport=safe_transport(allow_private=False)) as client:
        with pytest.raises(httpx.ConnectError, match="refusing to connect: 127.0.0.1 is a loopback address") as info:
            client.post(url, content=b"{}")
    assert isinstance(info.value, RefusedConnection)
    assert server.hits == []
    # The same server is reachable when private addresses are allowed: the refusal above is the guard.
    with httpx.Client(transport=safe_transport(allow_private=True)) as client:
        assert client.post(url, content=b"{}").status_code == 200
    assert server.hits == ["/hook"]


def test_dns_rebinding_is_refused_at_connect_time(server: Server, dns: dict[str, list[str]]) -> None:
    """The name resolves to a public address at registration and to loopback when Heron sends."""
    url = server.url("hooks.rebind.test")
    dns["hooks.rebind.test"] = ["93.184.216.34"]
    check_url(url, allow_private=False)
    dns["hooks.rebind.test"] = ["127.0.0.1"]
    with httpx.Client(transport=safe_transport(allow_private=False)) as client:
        with pytest.raises(httpx.ConnectError, match="'hooks.rebind.test' resolves to 127.0.0.1, a loopback"):
            client.post(url, content=b"{}")
    assert server.hits == []


def test_the_async_transport_refuses_loopback_too(server: Server, dns: dict[str, list[str]]) -> None:
    dns["async.rebind.test"] = ["127.0.0.1"]

    async def send(url: str, allow_private: bool) -> int:
        async with httpx.AsyncClient(transport=safe_async_transport(allow_private=allow_private)) as client:
            return (await client.post(url, content=b"{}")).status_code

    for url in (server.url(), server.url("async.rebind.test"), server.url("localhost")):
        with pytest.raises(httpx.ConnectError, match="refusing to connect"):
            asyncio.run(send(url, allow_private=False))
    assert server.hits == []
    assert asyncio.run(send(server.url(), allow_private=True)) == 200
    assert server.hits == ["/hook"]


def test_a_redirect_to_a_metadata_address_is_not_followed() -> None:
    redirector = Server(redirect_to="http://169.254.169.254/latest/meta-data/")
    try:
        with httpx.Client(transport=safe_transport(allow_private=True)) as client:
            request = client.build_request("GET", redirector.url())
            with pytest.raises(UnsafeURLError, match="metadata"):
                send_following_redirects(client, request, allow_private=True)
            # Without the helper, a client that does not follow redirects just sees the 302.
            assert client.get(redirector.url(), follow_redirects=False).status_code == 302
    finally:
        redirector.close()


def test_redirects_are_capped() -> None:
    loop = Server(redirect_to="http://127.0.0.1:{port}/again")
    try:
        with httpx.Client(transport=safe_transport(allow_private=True)) as client:
            with pytest.raises(httpx.TooManyRedirects):
                send_following_redirects(client, client.build_request("GET", loop.url()), allow_private=True)
        assert len(loop.hits) == 6  # the first request and five redirects
    finally:
        loop.close()
