"""Weighted rate limits per client and per network address, over the ``limits`` library.

SECURITY.md "Resource limits": per-client weighted limits (reads cheap, writes dear) answer 429
with ``Retry-After`` and RateLimit headers; login and token endpoints are limited per address and
per client. Every request spends *units* from a budget: the cost of its category (the
:data:`COSTS` table; FHIR interaction codes map to categories through :data:`CATEGORIES`).
Login and token requests spend from budgets of their own, one unit each.

Strategy: ``limits``' sliding-window counter
(https://limits.readthedocs.io/en/stable/strategies.html#sliding-window-counter). It keeps two
counters per key, so a budget of thousands of units per second costs the same memory and time as
one of ten per minute (the moving window keeps one timestamp per unit), and unlike a fixed window
it does not let a client spend two budgets across a window boundary. It approximates: the
previous window's count is assumed evenly spread.

Storage: ``memory://`` (this process: each worker counts on its own) or a Redis URL (shared by
every worker and host). With Redis the general per-address budget, checked on every request,
still counts in process memory unless ``shared_ip``: it guards each process's capacity, and a
Redis round trip costs more than the cached read it would guard. If Redis fails, the limiter
counts in memory for a few seconds and tries again: limits stay on, per process, rather than
failing the request or turning limits off.

Headers: the RateLimit fields of draft-ietf-httpapi-ratelimit-headers-09
(``RateLimit-Policy: "client";q=5000;w=1`` and ``RateLimit: "client";r=4990;t=1``, where ``t`` is
the seconds until the whole quota is back) and, on a 429, ``Retry-After`` in whole seconds: when
this request would fit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

import limits
from limits.aio.storage import SlidingWindowCounterSupport, Storage
from limits.storage import storage_from_string

from healthbridge.fhir.errors import TooManyRequests
from healthbridge.infra.logging import get_logger
from healthbridge.security.ratelimit_memory import LocalWindows, WindowInfo

COSTS: Mapping[str, int] = {
    "read": 1,
    "search": 5,
    "history": 5,
    "write": 10,
    "transaction": 10,
    "operation": 10,
    "bulk": 100,
    "login": 1,
    "token": 1,
}
"""Units each category spends. ``login`` and ``token`` spend from their own budgets."""

ENTRY_COST = 1
"""Extra units per entry of a transaction or batch Bundle (see :func:`bundle_cost`)."""

CATEGORIES: Mapping[str, str] = {
    # https://hl7.org/fhir/R4/valueset-type-restful-interaction.html and system-restful-interaction
    "read": "read",
    "vread": "read",
    "capabilities": "read",
    "search": "search",
    "search-type": "search",
    "search-system": "search",
    "search-compartment": "search",
    "history": "history",
    "history-instance": "history",
    "history-type": "history",
    "history-system": "history",
    "create": "write",
    "update": "write",
    "patch": "write",
    "delete": "write",
    "conditional-create": "write",
    "conditional-update": "write",
    "conditional-patch": "write",
    "conditional-delete": "write",
    "transaction": "transaction",
    "batch": "transaction",
    "operation": "operation",
    # operations by name; any other $name is an "operation"
    "$export": "bulk",
    "$import": "bulk",
    # the authorization server (auth/): their own budgets
    "login": "login",
    "token": "token",
}
"""FHIR interaction codes (and operation names) -> rate-limit category: the one table."""

FALLBACK_SECONDS = 5.0
"""How long the limiter counts in memory after the shared storage failed."""

_log = get_logger("healthbridge.ratelimit")


def category_of(interaction: str) -> str:
    """The category of an interaction code, an operation name (``$validate``) or a category."""
    category = CATEGORIES.get(interaction)
    if category is not None:
        return category
    if interaction in COSTS:
        return interaction
    if interaction.startswith("$"):
        return "operation"
    raise ValueError(f"unknown rate-limit category or interaction {interaction!r}")


def bundle_cost(entries: int) -> int:
    """Units a transaction or batch of ``entries`` entries spends."""
    return COSTS["transaction"] + ENTRY_COST * max(0, entries)


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Budgets in ``limits`` notation (``"5000/second"``, ``"10/minute;100/hour"``): weighted
    units per window."""

    storage: str = "memory://"
    ip: str = "20000/second"
    client: str = "5000/second"
    login: str = "10/minute"
    token: str = "60/minute"  # noqa: S105 (a rate, not a secret)
    token_client: str = "30/minute"  # noqa: S105
    shared_ip: bool = False
    """Count the general per-address budget in ``storage`` too. Off: it is counted in each
    process (it guards that process's capacity), and only the login, token and per-client
    budgets pay a Redis round trip."""


@dataclass(frozen=True, slots=True)
class RateState:
    """One budget after a request: what the RateLimit headers report."""

    policy: str
    limit: int
    window: int
    remaining: int
    reset: int
    retry_after: int | None = None

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Policy": f'"{self.policy}";q={self.limit};w={self.window}',
            "RateLimit": f'"{self.policy}";r={self.remaining};t={self.reset}',
        }
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers


@dataclass(frozen=True, slots=True)
class _Window:
    policy: str
    prefix: str
    amount: int
    expiry: int


@dataclass(frozen=True, slots=True)
class _Budget:
    name: str
    windows: tuple[_Window, ...]


def _budget(name: str, spec: str) -> _Budget:
    items = limits.parse_many(spec)
    windows = []
    for item in items:
        expiry = item.get_expiry()
        policy = name if len(items) == 1 else f"{name}-{expiry}s"
        windows.append(_Window(policy, f"{name}/{item.amount}/{expiry}:", item.amount, expiry))
    return _Budget(name, tuple(windows))


def open_storage(url: str) -> Storage:
    """``memory://`` or a Redis URL (``redis://host:6379/0``, ``rediss://`` for TLS), through
    ``limits``' async Redis storage on the redis-py client."""
    if url in ("memory://", "async+memory://"):
        return LocalWindows()
    if not url.startswith("redis"):
        raise ValueError("rate_limit_storage must be memory:// or a redis:// URL")
    storage = storage_from_string(
        f"async+{url}",
        implementation="redispy",
        key_prefix="healthbridge-rl",
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
    )
    assert isinstance(storage, Storage) and isinstance(storage, SlidingWindowCounterSupport)
    return storage


class RateLimiter:
    """Per-address and per-client budgets. One instance per process, shared by the ASGI
    middleware (per address) and the FHIR router (per client)."""

    def __init__(self, config: RateLimitConfig, storage: Storage | None = None) -> None:
        self.config = config
        self.storage = storage if storage is not None else open_storage(config.storage)
        self._local = self.storage if isinstance(self.storage, LocalWindows) else None
        self._ip_local = self._local
        if self._ip_local is None and not config.shared_ip:
            self._ip_local = LocalWindows()
        self._fallback = LocalWindows()
        self._fallback_until = 0.0
        self._errors: tuple[type[Exception], ...] = (
            OSError,
            TimeoutError,
            *_base_exceptions(self.storage),
        )
        ip = _budget("ip", config.ip)
        client = _budget("client", config.client)
        self._ip = dict.fromkeys(COSTS, ip) | {
            "login": _budget("ip-login", config.login),
            "token": _budget("ip-token", config.token),
        }
        self._client = {c: client for c in COSTS if c != "login"} | {
            "token": _budget("client-token", config.token_client),
        }
        self._ipv6: dict[str, str] = {}

    async def check_ip(self, address: str, category: str, cost: int | None = None) -> None:
        """Spend from the address's budget; TooManyRequests (429) when it is spent. IPv6
        addresses count per /64 (one host usually holds a whole /64)."""
        budget = self._ip.get(category)
        if budget is None:
            category = category_of(category)
            budget = self._ip[category]
        if ":" in address:
            address = self._ipv6_key(address)
        units = COSTS[category] if cost is None else cost
        local = self._ip_local if budget.name == "ip" else self._local
        if local is not None and len(budget.windows) == 1:  # the hot path
            window = budget.windows[0]
            units = min(units, window.amount)
            allowed, info = local.consume(
                window.prefix + address, window.amount, window.expiry, units
            )
            if not allowed:
                raise self._refusal(window, info, units, category, "this address")
            return
        await self._spend(budget, address, category, units, "this address", local=local)

    async def check_client(
        self, client_id: str, category: str, cost: int | None = None
    ) -> RateState:
        """Spend ``cost`` units (default: the category's, :data:`COSTS`) from the client's
        budget. ``category`` is a category, a FHIR interaction code or an operation name (see
        :data:`CATEGORIES`). Returns the budget's state for the RateLimit headers; raises
        TooManyRequests (429, with ``Retry-After`` and RateLimit headers) when it is spent."""
        category = category_of(category)
        budget = self._client.get(category)
        if budget is None:
            raise ValueError(f"{category!r} is not limited per client")
        units = COSTS[category] if cost is None else cost
        state = await self._spend(
            budget, client_id, category, units, "this client", local=self._local, report=True
        )
        assert state is not None
        return state

    async def close(self) -> None:
        """Release the storage's connections (Redis)."""
        bridge = getattr(self.storage, "bridge", None)
        client = getattr(bridge, "storage", None)
        close = getattr(client, "aclose", None)
        if close is not None:
            await close()

    # -- internals ---------------------------------------------------------------------------
    async def _spend(
        self,
        budget: _Budget,
        who: str,
        category: str,
        units: int,
        whose: str,
        *,
        local: LocalWindows | None,
        report: bool = False,
    ) -> RateState | None:
        best: RateState | None = None
        for window in budget.windows:
            cost = min(units, window.amount)
            key = window.prefix + who
            if local is not None:
                allowed, info = local.consume(key, window.amount, window.expiry, cost)
            else:
                allowed, info = await self._shared(key, window, cost, report)
            if not allowed:
                raise self._refusal(window, info, cost, category, whose)
            if report:
                state = _state(window, info)
                if best is None or state.remaining * best.limit < best.remaining * state.limit:
                    best = state
        return best

    async def _shared(
        self, key: str, window: _Window, cost: int, report: bool
    ) -> tuple[bool, WindowInfo]:
        """Spend from one window in the shared storage; the window's counters come back when
        refused or ``report`` (a second round trip, which per-address checks skip)."""
        if time.monotonic() < self._fallback_until:
            return self._fallback.consume(key, window.amount, window.expiry, cost)
        storage = self.storage
        assert isinstance(storage, SlidingWindowCounterSupport)
        info: WindowInfo = (0, 0.0, 0, 0.0)
        try:
            allowed = await storage.acquire_sliding_window_entry(
                key, window.amount, window.expiry, cost
            )
            if report or not allowed:
                info = await storage.get_sliding_window(key, window.expiry)
        except self._errors as exc:  # the shared storage is down: count locally for a while
            _log.warning("rate limit storage failed; counting in memory", error=str(exc))
            self._fallback_until = time.monotonic() + FALLBACK_SECONDS
            return self._fallback.consume(key, window.amount, window.expiry, cost)
        return allowed, info

    def _refusal(
        self, window: _Window, info: WindowInfo, cost: int, category: str, whose: str
    ) -> TooManyRequests:
        retry = max(1, math.ceil(_wait(info, window.amount, window.expiry, cost)))
        state = _state(window, info, retry)
        if category in ("login", "token"):
            text = (
                f"Too many {category} requests from {whose}: the limit is {window.amount} per "
                f"{window.expiry} s. Retry after {retry} s (Retry-After)."
            )
        else:
            text = (
                f"Too many requests from {whose}: the limit is {window.amount} units per "
                f"{window.expiry} s and this {category} request costs {cost}. Retry after "
                f"{retry} s (Retry-After); spread requests out, and prefer fewer, larger pages "
                "and bundles (reads cost 1 unit, searches 5, writes and operations 10)."
            )
        return TooManyRequests(
            text,
            code="throttled",
            headers=state.headers(),
        )

    def _ipv6_key(self, address: str) -> str:
        key = self._ipv6.get(address)
        if key is None:
            key = _ipv6_network(address)
            if len(self._ipv6) > 10_000:
                self._ipv6.clear()
            self._ipv6[address] = key
        return key


def _ipv6_network(address: str) -> str:
    import ipaddress

    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _base_exceptions(storage: Storage) -> tuple[type[Exception], ...]:
    base = storage.base_exceptions
    return base if isinstance(base, tuple) else (base,)


def _weighted(info: WindowInfo, expiry: int) -> float:
    previous, previous_ttl, current, _ = info
    return previous * previous_ttl / expiry + current


def _wait(info: WindowInfo, limit: int, expiry: int, cost: int) -> float:
    """Seconds until ``cost`` more units fit. The previous window's share decays linearly and
    a request fits while ``floor(previous share) + current + cost <= limit`` (as ``limits``
    counts), i.e. while the share stays under ``limit - cost + 1 - current``."""
    previous, previous_ttl, current, current_ttl = info
    if current + cost <= limit:
        room = limit - cost + 1 - current
        wait = 0.0 if previous == 0 else previous_ttl - room * expiry / previous
    else:  # wait for the current window to become the previous one, then for it to decay
        shift = max(0.0, current_ttl - expiry)
        wait = shift + expiry - (limit - cost + 1) * expiry / current
    return max(0.0, wait) + 1e-6


def _state(window: _Window, info: WindowInfo, retry_after: int | None = None) -> RateState:
    previous, previous_ttl, current, current_ttl = info
    remaining = max(0, window.amount - math.floor(_weighted(info, window.expiry)))
    if current:
        reset = current_ttl
    elif previous:
        reset = previous_ttl
    else:
        reset = 0.0
    return RateState(
        window.policy, window.amount, window.expiry, remaining, math.ceil(reset), retry_after
    )
