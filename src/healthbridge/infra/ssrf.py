"""The one guard for every URL HealthBridge fetches or posts to: client JWKS URLs, subscription
rest-hook endpoints, and later $import sources and canonical fetching. SECURITY.md, "Server-side
request forgery"; OWASP's prevention rules
(https://cheatsheetseries.owasp.org/cheatsheets/Server_Side_Request_Forgery_Prevention_Cheat_Sheet.html):

* only ``http`` and ``https`` URLs, ``https`` unless the host is allow-listed; no userinfo;
* IP literals must be written canonically (no ``2130706433``, ``0x7f000001``, ``0177.0.0.1``,
  ``127.1``): a host name whose last label is a number is refused, because URL parsers and
  ``inet_aton`` take such names for IPv4 addresses;
* the host is resolved **once, at connect time**, every address it resolves to must be public
  (not loopback, private, link-local such as ``169.254.169.254``, ``0.0.0.0``, multicast,
  reserved, nor an IPv4-mapped IPv6 form of those), and the connection goes to the address that
  was checked. The URL keeps the original name, so the ``Host`` header and TLS SNI and
  certificate checks use it. A DNS answer that changes between a check and the connection (DNS
  rebinding) therefore cannot move the connection. This is done in an httpcore network backend
  (:class:`GuardedBackend`, :class:`AsyncGuardedBackend`), so no connection can bypass it;
* no redirects (httpcore follows none), no proxies from the environment, a timeout on every
  step and on the whole exchange, and a cap on the response size; error texts name the
  category of failure only, never the target's response body;
* the operator's allow-list (``host`` or ``host:port``, lower case) lifts the address and
  ``https`` rules for the hosts it names (``HEALTHBRIDGE_OUTBOUND_ALLOWED_HOSTS``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpcore2

from healthbridge.infra.asyncio_streams import AsyncioBackend

Resolver = Callable[[str, int], Sequence[str]]
"""Host name and port -> the addresses it resolves to (tests substitute their own)."""

_NUMBER = re.compile(r"0x[0-9a-f]*|[0-9]+", re.IGNORECASE)


class OutboundError(Exception):
    """An outbound request did not complete; the text is safe to show to our users."""


class OutboundRefused(OutboundError):
    """The target is forbidden by the rules above; retrying cannot help."""


class OutboundTooLarge(OutboundError):
    """The response was larger than the policy's size cap."""


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    allowed_hosts: frozenset[str] = frozenset()  # "host" or "host:port", lower case
    timeout_s: float = 10.0
    max_bytes: int = 1024 * 1024

    def allows(self, host: str, port: int) -> bool:
        """Whether the operator allow-listed this host (any port) or this host and port."""
        host = host.lower().strip("[]")
        shown = f"[{host}]" if ":" in host else host
        return bool({host, shown, f"{shown}:{port}"} & self.allowed_hosts)


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class OutboundResponse:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""


def parse_allowed_hosts(*values: str | Iterable[str]) -> frozenset[str]:
    """Comma-separated strings or lists of ``host[:port]`` -> the normalized allow-list."""
    hosts: set[str] = set()
    for value in values:
        items = value.split(",") if isinstance(value, str) else value
        hosts.update(item.strip().lower() for item in items if item.strip())
    return frozenset(hosts)


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return [str(info[4][0]) for info in infos]


def is_public(address: str) -> bool:
    """Whether an IP address may be reached without the operator's allow-list."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            ip = mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def _check_host_syntax(host: str) -> None:
    try:
        canonical = str(ipaddress.ip_address(host))
    except ValueError:
        if not host or not _NUMBER.fullmatch(host.rstrip(".").split(".")[-1]):
            return
        raise OutboundRefused(f"{host!r} is not a host name or a canonical IP address") from None
    if canonical != host:
        raise OutboundRefused(f"{host!r} is not a canonical IP address")


def parse_target(url: str, policy: OutboundPolicy) -> Target:
    """The static checks (no DNS): scheme, userinfo, IP literal forms, https."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise OutboundRefused("the URL is not a valid http(s) URL") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise OutboundRefused("the URL must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise OutboundRefused("the URL must not carry a user name or password")
    port = port or (443 if parts.scheme == "https" else 80)
    _check_host_syntax(host)
    if parts.scheme == "http" and not policy.allows(host, port):
        raise OutboundRefused("the URL must use https")
    return Target(parts.scheme, host, port)


def checked_address(host: str, port: int, policy: OutboundPolicy, resolver: Resolver) -> str:
    """Resolve ``host`` once; every address must be public unless allow-listed. Returns the
    address to connect to (the first one, which was checked)."""
    _check_host_syntax(host)
    addresses = list(resolver(host, port))
    if not addresses:
        raise OutboundRefused(f"the host {host!r} does not resolve")
    if not policy.allows(host, port) and not all(is_public(a) for a in addresses):
        raise OutboundRefused(
            f"the host {host!r} is a loopback, private or reserved address "
            "(the operator may allow-list it)"
        )
    return addresses[0]


def check_url(url: str, policy: OutboundPolicy, resolver: Resolver = system_resolver) -> Target:
    """Every check, DNS included: for early feedback (when a subscription is created). The
    connection itself is checked again when it is made."""
    target = parse_target(url, policy)
    checked_address(target.host, target.port, policy, resolver)
    return target


class GuardedBackend(httpcore2.NetworkBackend):
    """A blocking httpcore network backend that connects only to checked addresses."""

    def __init__(self, policy: OutboundPolicy, resolver: Resolver = system_resolver) -> None:
        self._policy, self._resolver = policy, resolver
        self._inner = httpcore2.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.NetworkStream:
        address = checked_address(host, port, self._policy, self._resolver)
        return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.NetworkStream:
        raise OutboundRefused("unix sockets are not outbound targets")


class AsyncGuardedBackend(httpcore2.AsyncNetworkBackend):
    """The asyncio counterpart of :class:`GuardedBackend` (DNS runs in a worker thread)."""

    def __init__(self, policy: OutboundPolicy, resolver: Resolver = system_resolver) -> None:
        self._policy, self._resolver = policy, resolver
        self._inner = AsyncioBackend()  # httpcore on asyncio's own streams, not AnyIO's

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        address = await asyncio.to_thread(checked_address, host, port, self._policy, self._resolver)
        return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise OutboundRefused("unix sockets are not outbound targets")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _timeouts(policy: OutboundPolicy) -> dict[str, object]:
    step = policy.timeout_s
    return {"timeout": {"connect": step, "read": step, "write": step, "pool": step}}


def _failure(exc: Exception) -> OutboundError:
    if isinstance(exc, httpcore2.TimeoutException | TimeoutError):
        return OutboundError("the request timed out")
    return OutboundError(f"the request failed ({type(exc).__name__})")


def _response(raw: httpcore2.Response, body: bytes) -> OutboundResponse:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw.headers}
    return OutboundResponse(raw.status, headers, body)


class OutboundClient:
    """Blocking requests under the guard (for code that already runs in a worker thread);
    each request opens and closes its own connection."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        resolver: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy
        self._backend = GuardedBackend(policy, resolver)
        self._ssl_context = ssl_context

    def request(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None
    ) -> OutboundResponse:
        parse_target(url, self.policy)
        deadline = time.monotonic() + self.policy.timeout_s
        pool = httpcore2.ConnectionPool(
            ssl_context=self._ssl_context or httpcore2.default_ssl_context(),
            network_backend=self._backend,
        )
        try:
            with (
                pool,
                pool.stream(
                    method,
                    url,
                    headers=list((headers or {}).items()),
                    extensions=_timeouts(self.policy),
                ) as raw,
            ):
                chunks: list[bytes] = []
                size = 0
                for chunk in raw.iter_stream():
                    size += len(chunk)
                    if size > self.policy.max_bytes:
                        raise OutboundTooLarge("the response is larger than the size limit")
                    if time.monotonic() > deadline:
                        raise OutboundError("the request timed out")
                    chunks.append(chunk)
                return _response(raw, b"".join(chunks))
        except OutboundError:
            raise
        except Exception as exc:  # httpcore's network and protocol errors
            raise _failure(exc) from exc


DRAIN_BYTES = 64 * 1024
"""An unwanted response body (``read_body=False``) up to this size is read and dropped, so that
its keep-alive connection serves the next request; a longer one closes the connection."""


class AsyncOutboundClient:
    """Requests from the event loop under the guard; one connection pool, closed by
    :meth:`aclose`. The whole exchange is bounded by the policy's timeout too."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        resolver: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=ssl_context or httpcore2.default_ssl_context(),
            network_backend=AsyncGuardedBackend(policy, resolver),
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        read_body: bool = True,
    ) -> OutboundResponse:
        parse_target(url, self.policy)
        try:
            async with asyncio.timeout(self.policy.timeout_s):
                return await self._exchange(method, url, headers, content, read_body)
        except OutboundError:
            raise
        except Exception as exc:  # httpcore's network and protocol errors, the deadline
            raise _failure(exc) from exc

    async def _exchange(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        content: bytes | None,
        read_body: bool,
    ) -> OutboundResponse:
        async with self._pool.stream(
            method,
            url,
            headers=list((headers or {}).items()),
            content=content,
            extensions=_timeouts(self.policy),
        ) as raw:
            chunks: list[bytes] = []
            size = 0
            async for chunk in raw.aiter_stream():
                size += len(chunk)
                if not read_body:  # read to its end all the same: the connection is reused
                    if size > DRAIN_BYTES:
                        break  # not worth it: the connection is closed instead
                    continue
                if size > self.policy.max_bytes:
                    raise OutboundTooLarge("the response is larger than the size limit")
                chunks.append(chunk)
            return _response(raw, b"".join(chunks))

    async def aclose(self) -> None:
        await self._pool.aclose()
