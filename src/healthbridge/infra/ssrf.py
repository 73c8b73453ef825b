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
  rebinding) therefore cannot move the connection. This is done where each client makes its
  connections, so no connection can bypass it: an httpcore network backend for the blocking
  client (:class:`GuardedBackend`), aiohttp's resolver for the asyncio one
  (:class:`GuardedResolver`, https://docs.aiohttp.org/en/stable/abc.html#abstract-resolver;
  aiohttp connects to an IP literal without asking it, so literals are checked per request);
* no redirects, no proxies nor ``.netrc`` from the environment, no cookies, no content
  decoding (no decompression bombs: the body is returned as sent), a timeout on every step and
  on the whole exchange, and a cap on the response size, read incrementally; error texts name
  the category of failure only, never the target's response body;
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

import aiohttp
import httpcore2
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

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


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver under the guard: asked once per new connection, it answers the one
    checked address (DNS in a worker thread); aiohttp connects to it and keeps the URL's name
    for the ``Host`` header, TLS SNI and the certificate check."""

    def __init__(self, policy: OutboundPolicy, resolver: Resolver = system_resolver) -> None:
        self._policy, self._resolver = policy, resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = await asyncio.to_thread(checked_address, host, port, self._policy, self._resolver)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


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


def _literal(host: str, port: int) -> list[str]:
    """An IP literal "resolves" to itself; anything else that aiohttp would take for one
    (``[v1.x]``) resolves to nothing and is refused."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        return []


def _aiohttp_url(url: str, target: Target, policy: OutboundPolicy) -> URL:
    """The URL as aiohttp reads it (yarl), which must name the target that was checked; an IP
    literal (aiohttp's test: a colon, or only digits and dots) is checked here, because aiohttp
    connects to it without asking the resolver."""
    try:
        parsed = URL(url)
    except ValueError:
        raise OutboundRefused("the URL is not a valid http(s) URL") from None
    if (parsed.scheme, parsed.raw_host, parsed.port) != (target.scheme, target.host, target.port):
        raise OutboundRefused("the URL is not a valid http(s) URL")  # the parsers disagree
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise OutboundRefused("the URL must not carry a user name or password")
    if ":" in target.host or target.host.replace(".", "").isdigit():
        checked_address(target.host, target.port, policy, _literal)
    return parsed


OPEN_CONNECTIONS = 64
"""Connections one client keeps open at most: more than the deliveries the subscription worker
runs at once (20), so endpoints that answer slowly hold up none of the others."""


def _new_session(
    policy: OutboundPolicy, resolver: Resolver, tls: ssl.SSLContext
) -> aiohttp.ClientSession:
    """aiohttp's client with the guard's rules: the guarded resolver, connections kept alive
    per host, a timeout on the connection, each read and the whole exchange, and none of
    aiohttp's conveniences that reach further (cookies, proxies and ``.netrc`` from the
    environment, content decoding); redirects are turned off per request
    (https://docs.aiohttp.org/en/stable/client_reference.html)."""
    step = policy.timeout_s
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(policy, resolver),
        use_dns_cache=False,  # the resolver is asked for every new connection
        ssl=tls,
        limit=OPEN_CONNECTIONS,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=step, sock_connect=step, sock_read=step),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,  # no proxies nor .netrc from the environment
        auto_decompress=False,
        # exactly the caller's headers: no Accept-Encoding (bodies are not decoded), no
        # User-Agent nor guessed Content-Type of aiohttp's own
        skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
    )


async def _read(raw: aiohttp.ClientResponse, cap: int, *, keep: bool) -> bytes | None:
    """The body, read as it comes (``keep=False``: dropped), or None once it is longer than
    ``cap``: the connection is then closed rather than read to its end (unless all of it had
    arrived already, and aiohttp has put the connection back in its pool)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in raw.content.iter_any():
        size += len(chunk)
        if size > cap:
            raw.close()
            return None
        if keep:
            chunks.append(chunk)
    return b"".join(chunks)


CHECKED_URLS = 1024
"""The asyncio client remembers this many URLs that passed :func:`parse_target` and the IP
literal check (a subscription posts to the same endpoint again and again; the checks parse IP
addresses, a tenth of a request's CPU time); name resolution is not remembered."""


class AsyncOutboundClient:
    """Requests from the event loop under the guard, on aiohttp; one session and its pool of
    keep-alive connections, made on the first request (aiohttp wants a running event loop) and
    closed by :meth:`aclose`. The whole exchange is bounded by the policy's timeout too."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        resolver: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy
        self._resolver = resolver
        self._tls = ssl_context or httpcore2.default_ssl_context()
        self._session: aiohttp.ClientSession | None = None
        self._checked: dict[str, URL] = {}  # URLs that passed the static checks (no DNS)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        read_body: bool = True,
    ) -> OutboundResponse:
        parsed = self._checked.get(url)
        if parsed is None:  # the checks depend on the URL and the policy only: done once
            parsed = _aiohttp_url(url, parse_target(url, self.policy), self.policy)
            if len(self._checked) >= CHECKED_URLS:
                self._checked.clear()
            self._checked[url] = parsed
        if self._session is None:
            self._session = _new_session(self.policy, self._resolver, self._tls)
        try:
            async with asyncio.timeout(self.policy.timeout_s):
                return await self._exchange(
                    self._session, method, parsed, headers, content, read_body
                )
        except OutboundError:
            raise
        except Exception as exc:  # aiohttp's network and protocol errors, the deadline
            if isinstance(exc.__cause__, OutboundError):  # the resolver's, should aiohttp wrap it
                raise exc.__cause__ from None
            raise _failure(exc) from exc

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        headers: Mapping[str, str] | None,
        content: bytes | None,
        read_body: bool,
    ) -> OutboundResponse:
        async with session.request(
            method, url, headers=headers, data=content, allow_redirects=False
        ) as raw:
            answered = {name.lower(): value for name, value in raw.headers.items()}
            if read_body:
                body = await _read(raw, self.policy.max_bytes, keep=True)
                if body is None:
                    raise OutboundTooLarge("the response is larger than the size limit")
                return OutboundResponse(raw.status, answered, body)
            # read to its end all the same, so that the connection is reused; when longer than
            # DRAIN_BYTES (announced, or as read so far), it is closed instead (unless all of
            # it came with the headers: then aiohttp has read it and reuses the connection)
            if (raw.content_length or 0) > DRAIN_BYTES:
                raw.close()
            else:
                await _read(raw, DRAIN_BYTES, keep=False)
            return OutboundResponse(raw.status, answered)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
