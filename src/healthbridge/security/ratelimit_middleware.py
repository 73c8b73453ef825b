"""The per-address rate limit on every HTTP request, as one pure ASGI middleware.

Each request is put in a category by method and path (:func:`classify`) and spends that
category's units from its address's budget (security/ratelimit.py). A spent budget is answered
here with 429, ``Retry-After`` and the RateLimit fields, before the app runs:

- under ``/auth/``: an OAuth error object (RFC 6749 section 5.2 shape): ``slow_down`` on the
  token, revocation and introspection endpoints (the token-endpoint error registered by RFC 8628
  section 3.5: "increase the interval"), ``temporarily_unavailable`` on the others (login and
  authorization pages: RFC 6749 section 4.1.2.1);
- everywhere else: a FHIR OperationOutcome (``throttled``), ``application/fhir+json``.

``/healthz``, ``/readyz`` and ``/metrics`` are never limited. The address is the ASGI client
address; ``X-Forwarded-For`` counts only when the connection comes from a trusted proxy, and then
the client is the nearest address in it that is not itself a trusted proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import TooManyRequests
from healthbridge.fhir.outcome import operation_outcome
from healthbridge.security.ratelimit import RateLimiter

EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})
AUTH_TOKEN_PATHS = frozenset({"/auth/token", "/auth/revoke", "/auth/introspect"})
"""POSTs that spend the ``token`` budget (client credentials are checked there)."""
AUTH_LOGIN_PATHS = frozenset({"/auth/login", "/auth/login/totp", "/auth/authorize"})
"""POSTs that spend the strict ``login`` budget (passwords, second factors, consent). Other
requests under ``/auth/`` (logout, registration, pages, JWKS) spend the general budget."""

_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_FHIR_JSON = b"application/fhir+json; charset=utf-8"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def classify(method: str, path: str) -> str | None:
    """The rate-limit category of a request, or None when it is never limited."""
    if path.startswith("/fhir"):
        if method in _SAFE:
            return _fhir_read(path)
        return _fhir_write(method, path)
    if method == "POST" and path.startswith("/auth/"):
        if path in AUTH_TOKEN_PATHS:
            return "token"
        if path in AUTH_LOGIN_PATHS:
            return "login"
    if path in EXEMPT:
        return None
    return "read" if method in _SAFE else "write"


def _fhir_read(path: str) -> str:
    rest = path[6:]  # after "/fhir/"
    if "$" in rest:
        return "operation"
    parts = rest.split("/")
    if len(parts) == 2:  # [type]/[id] (the common case), [type]/_history, [type]/_search
        second = parts[1]
        if second == "_history":
            return "history"
        return "search" if second == "_search" else "read"
    if len(parts) == 1:  # system search, [type] search, metadata, _history
        first = parts[0]
        if first == "metadata":
            return "read"
        return "history" if first == "_history" else "search"
    if len(parts) >= 3 and parts[2] == "_history":
        return "read" if len(parts) == 4 else "history"  # vread, or an instance's history
    return "search"  # compartment searches


def _fhir_write(method: str, path: str) -> str:
    rest = path[6:]
    if "$" in rest:
        return "operation"
    if method == "POST":
        if rest in ("", "/"):
            return "transaction"
        if rest == "_search" or rest.endswith("/_search"):
            return "search"
    return "write"


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDR ranges (``10.0.0.0/8``, ``::1``) as networks."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


class RateLimitMiddleware:
    def __init__(
        self, app: ASGIApp, limiter: RateLimiter, trusted_proxies: Iterable[Network] = ()
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.trusted = tuple(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, self._closing(send))
            else:
                await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        category = classify(scope["method"], path)
        if category is not None:
            client = scope.get("client")
            address = client[0] if client else "unknown"
            if self.trusted:
                address = self._forwarded_for(scope, address)
            try:
                await self.limiter.check_ip(address, category)
            except TooManyRequests as refused:
                await _reject(send, path, refused)
                return
        await self.app(scope, receive, send)

    def _closing(self, send: Send) -> Send:
        """Close the limiter's storage connections when the server shuts down."""

        async def wrapped(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.limiter.close()
            await send(message)

        return wrapped

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    def _forwarded_for(self, scope: Scope, peer: str) -> str:
        if not self._is_trusted(peer):
            return peer
        hops: list[str] = []
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                hops.extend(h.strip() for h in value.decode("latin-1").split(","))
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop if _valid_ip(hop) else peer
        return hops[0] if hops and _valid_ip(hops[0]) else peer


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


async def _reject(send: Send, path: str, refused: TooManyRequests) -> None:
    text = refused.issues[0].diagnostics
    if path.startswith("/auth/"):
        error = "slow_down" if path in AUTH_TOKEN_PATHS else "temporarily_unavailable"
        body = jsonformat.dumps({"error": error, "error_description": text})
        content_type = b"application/json"
    else:
        body = jsonformat.dumps(operation_outcome(refused.issues))
        content_type = _FHIR_JSON
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *((k.lower().encode(), v.encode()) for k, v in refused.headers.items()),
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})
