"""The one place that decides whether Heron may open a connection to an address (SSRF guard).

Tenants give Heron URLs (webhooks today, image URLs later), and Heron runs next to things a
tenant must never reach through it: Redis, PostgreSQL, the cloud metadata service, the LAN.
Two checks, because one is not enough:

* `check_url()` at registration: scheme, host, and every address the name resolves to. It gives
  the tenant a clear reason at once, but DNS may answer differently later (DNS rebinding).
* `safe_transport()` / `safe_async_transport()` at send time: an httpcore network backend that
  resolves the host itself, refuses the connection if any address is unsafe, and then connects
  to the checked IP (never to the name again), so no second lookup can swap the address.
  A refused connection raises `httpx.ConnectError` (`RefusedConnection`) saying why.

Redirects: a redirect is a new connection to a new host. Callers must send with
`follow_redirects=False` (the webhook sink does: a receiver's 3xx is a failed delivery), or use
`send_following_redirects()`, which caps the hops and re-checks each one; the transport's
connect-time check applies to every hop either way.

`allow_private=True` (HERON_ALLOW_PRIVATE_WEBHOOKS, for development and tests with a receiver on
the same host or LAN) allows loopback, private, link-local, CGNAT and ULA addresses and
`localhost` names. It never allows cloud metadata endpoints, unspecified addresses (0.0.0.0
means "this host") or multicast/broadcast: no setup needs a webhook there.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import typing
from collections.abc import Iterable

import anyio
import httpcore
import httpx

from pipeline.errors import UnsafeURL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = ("http", "https")

# Names that mean "this machine" whatever DNS says (RFC 6761 reserves .localhost).
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
# Cloud instance-metadata names: refused even with allow_private (they hand out credentials).
_METADATA_NAMES = ("metadata.google.internal", "metadata.goog", "metadata", "instance-data.ec2.internal")
# Cloud instance-metadata addresses (AWS, GCP, Azure, OpenStack; AWS IPv6; Alibaba; Oracle).
_METADATA_IPS = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeURLError(UnsafeURL, ValueError):
    """Heron refuses to connect to this URL; `reason` is a sentence a person can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RefusedConnection(httpx.ConnectError):
    """Raised by the safe transports when the connect-time check refuses an address."""


class _RefusedConnect(httpcore.ConnectError):
    """httpcore-level twin of RefusedConnection (httpx maps httpcore errors to its own)."""


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo, NAT64), if any: a
    loopback hidden in ::ffff:127.0.0.1 is still a loopback."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_problem(ip: IPAddress, *, allow_private: bool) -> str | None:
    """What kind of address `ip` is when Heron must not connect to it ("a loopback address"), or
    None when it may."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(ip.compressed.split("%", 1)[0])
        inner = _embedded_ipv4(ip)
        if inner is not None:
            kind = address_problem(inner, allow_private=allow_private)
            return f"{kind} ({inner} embedded in IPv6)" if kind else None
    if ip in _METADATA_IPS:
        return "a cloud metadata address"
    if ip.is_unspecified:
        return "the unspecified address (this host)"
    if ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        return "a multicast or broadcast address"
    if ip.is_global or allow_private:
        return None
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10"):
        return "a carrier-grade NAT address (100.64.0.0/10)"
    if ip.is_private:
        return "a private address"
    return "a reserved address (not globally routable)"


def _host_problem(host: str, *, allow_private: bool) -> str | None:
    name = host.rstrip(".").lower()
    if name in _METADATA_NAMES:
        return f"{host!r} is a cloud metadata host name"
    if not allow_private and (name in _LOCAL_NAMES or name.endswith(".localhost")):
        return f"{host!r} names this machine"
    return None


def _parse_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _check_addresses(host: str, addresses: Iterable[str], *, allow_private: bool) -> list[IPAddress]:
    """Every address must be safe: a name with one public and one private answer is refused,
    because the client would pick either."""
    ips: list[IPAddress] = []
    for a in addresses:
        ip = ipaddress.ip_address(a.split("%", 1)[0])
        kind = address_problem(ip, allow_private=allow_private)
        if kind:
            what = f"{host} is {kind}" if _parse_ip(host) is not None else f"{host!r} resolves to {ip}, {kind}"
            raise UnsafeURLError(what)
        if ip not in ips:
            ips.append(ip)
    if not ips:
        raise UnsafeURLError(f"{host!r} does not resolve to any address")
    return ips


def _sockaddrs(infos: Iterable[tuple[typing.Any, ...]]) -> list[str]:
    return [str(info[4][0]) for info in infos]


def resolve_checked(host: str, port: int, *, allow_private: bool) -> list[IPAddress]:
    """Resolve `host` (blocking) and return its addresses, all checked; raises UnsafeURLError."""
    problem = _host_problem(host, allow_private=allow_private)
    if problem:
        raise UnsafeURLError(problem)
    literal = _parse_ip(host)
    if literal is not None:
        return _check_addresses(host, [str(literal)], allow_private=allow_private)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURLError(f"{host!r} does not resolve ({exc})") from None
    return _check_addresses(host, _sockaddrs(infos), allow_private=allow_private)


async def resolve_checked_async(host: str, port: int, *, allow_private: bool) -> list[IPAddress]:
    """`resolve_checked` without blocking the event loop (anyio runs getaddrinfo in a thread)."""
    problem = _host_problem(host, allow_private=allow_private)
    if problem:
        raise UnsafeURLError(problem)
    literal = _parse_ip(host)
    if literal is not None:
        return _check_addresses(host, [str(literal)], allow_private=allow_private)
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURLError(f"{host!r} does not resolve ({exc})") from None
    return _check_addresses(host, _sockaddrs(infos), allow_private=allow_private)


def _split_url(url: str) -> tuple[str, int]:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise UnsafeURLError(f"not a valid URL: {exc}") from None
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise UnsafeURLError(f"the URL scheme must be http or https, not {parsed.scheme or 'missing'!r}")
    host = parsed.raw_host.decode("ascii")
    if not host:
        raise UnsafeURLError("the URL has no host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return host, port


def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse a URL Heron must not send to; blocking (it resolves DNS): run it off the event loop.

    http/https only, a host is required, and every address the host resolves to must be safe
    (see `address_problem`). A name that does not resolve is refused too: registration is the
    moment to tell the tenant, not the first failed delivery.
    """
    host, port = _split_url(url)
    resolve_checked(host, port, allow_private=allow_private)


# ---- send time: httpcore network backends that check the address they connect to ----------------


class _SafeBackend(httpcore.NetworkBackend):
    def __init__(self, allow_private: bool, inner: httpcore.NetworkBackend | None = None) -> None:
        self.allow_private = allow_private
        self.inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            ips = resolve_checked(host, port, allow_private=self.allow_private)
        except UnsafeURLError as exc:
            raise _RefusedConnect(f"refusing to connect: {exc.reason}") from None
        last: Exception | None = None
        for ip in ips:  # connect to the checked address, never to the name again
            try:
                return self.inner.connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
    ) -> httpcore.NetworkStream:
        raise _RefusedConnect("refusing to connect: unix sockets are not allowed")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class _SafeAsyncBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, allow_private: bool, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.allow_private = allow_private
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            ips = await resolve_checked_async(host, port, allow_private=self.allow_private)
        except UnsafeURLError as exc:
            raise _RefusedConnect(f"refusing to connect: {exc.reason}") from None
        last: Exception | None = None
        for ip in ips:
            try:
                return await self.inner.connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise _RefusedConnect("refusing to connect: unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def _pool_kwargs(
    verify: ssl.SSLContext | str | bool,
    cert: typing.Any,
    trust_env: bool,
    http1: bool,
    http2: bool,
    limits: httpx.Limits,
    retries: int,
    socket_options: typing.Any,
) -> dict[str, typing.Any]:
    from httpx._config import create_ssl_context  # the same TLS defaults httpx uses

    return {
        "ssl_context": create_ssl_context(verify=verify, cert=cert, trust_env=trust_env),
        "max_connections": limits.max_connections,
        "max_keepalive_connections": limits.max_keepalive_connections,
        "keepalive_expiry": limits.keepalive_expiry,
        "http1": http1,
        "http2": http2,
        "retries": retries,
        "socket_options": socket_options,
    }


class _SafeHTTPTransport(httpx.HTTPTransport):
    def __init__(
        self,
        *,
        allow_private: bool,
        verify: ssl.SSLContext | str | bool = True,
        cert: typing.Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = httpx.Limits(max_connections=100, max_keepalive_connections=20),  # noqa: B008
        retries: int = 0,
        socket_options: typing.Any = None,
    ) -> None:
        # No proxy and no uds on purpose: either would connect somewhere this check never sees.
        self._pool = httpcore.ConnectionPool(
            **_pool_kwargs(verify, cert, trust_env, http1, http2, limits, retries, socket_options),
            network_backend=_SafeBackend(allow_private),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.ConnectError as exc:
            if isinstance(exc.__cause__, _RefusedConnect) or isinstance(exc.__context__, _RefusedConnect):
                raise RefusedConnection(str(exc), request=request) from None
            raise


class _SafeAsyncHTTPTransport(httpx.AsyncHTTPTransport):
    def __init__(
        self,
        *,
        allow_private: bool,
        verify: ssl.SSLContext | str | bool = True,
        cert: typing.Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = httpx.Limits(max_connections=100, max_keepalive_connections=20),  # noqa: B008
        retries: int = 0,
        socket_options: typing.Any = None,
    ) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            **_pool_kwargs(verify, cert, trust_env, http1, http2, limits, retries, socket_options),
            network_backend=_SafeAsyncBackend(allow_private),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectError as exc:
            if isinstance(exc.__cause__, _RefusedConnect) or isinstance(exc.__context__, _RefusedConnect):
                raise RefusedConnection(str(exc), request=request) from None
            raise


def safe_transport(*, allow_private: bool, **kw: typing.Any) -> httpx.BaseTransport:
    """An httpx transport that refuses unsafe addresses at connect time (after DNS resolution).

    `kw`: verify, cert, trust_env, http1, http2, limits, retries, socket_options (as for
    httpx.HTTPTransport; proxy and uds are refused). Use with `follow_redirects=False`."""
    return _SafeHTTPTransport(allow_private=allow_private, **kw)


def safe_async_transport(*, allow_private: bool, **kw: typing.Any) -> httpx.AsyncBaseTransport:
    """The asyncio/trio twin of `safe_transport`."""
    return _SafeAsyncHTTPTransport(allow_private=allow_private, **kw)


MAX_REDIRECTS = 5


def send_following_redirects(
    client: httpx.Client, request: httpx.Request, *, allow_private: bool, max_redirects: int = MAX_REDIRECTS
) -> httpx.Response:
    """Send and follow at most `max_redirects` redirects, checking each new URL with `check_url`.

    For callers that must follow redirects (fetching an image a chat service links to). The
    client's transport should be a safe one too: this check gives the clear reason, the transport
    closes the DNS-rebinding gap. Raises UnsafeURLError for an unsafe hop and
    httpx.TooManyRedirects past the cap."""
    response = client.send(request, follow_redirects=False)
    for _ in range(max_redirects):
        if not response.has_redirect_location:
            return response
        next_request = response.next_request
        assert next_request is not None
        response.close()
        check_url(str(next_request.url), allow_private=allow_private)
        response = client.send(next_request, follow_redirects=False)
    if response.has_redirect_location:
        response.close()
        raise httpx.TooManyRedirects(f"more than {max_redirects} redirects", request=request)
    return response
