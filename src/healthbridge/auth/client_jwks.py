"""Fetching a client's JWKS from its registered ``jwks_uri``
(https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html#registering-a-client-communicating-public-keys),
under the server-side request forgery rules of SECURITY.md, which
:mod:`healthbridge.infra.ssrf` enforces for every outbound URL (https only unless allow-listed,
canonical IP literals, every resolved address public unless allow-listed, the connection made
to the checked address, no redirects, timeouts, a size cap, the body never echoed back). The
allow-list is ``HEALTHBRIDGE_AUTH_JWKS_ALLOWED_HOSTS`` plus ``HEALTHBRIDGE_OUTBOUND_ALLOWED_HOSTS``.

Results are cached for a while in a bounded LRU; a forced refetch (unknown ``kid``) happens at
most every :data:`MIN_REFETCH_S` seconds per URL. It runs in a worker thread (the client
authentication of :mod:`.client_auth` does), so the blocking client never holds up the event
loop.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from healthbridge.infra.ssrf import (
    OutboundClient,
    OutboundError,
    OutboundPolicy,
    OutboundTooLarge,
    Resolver,
    system_resolver,
)

MIN_REFETCH_S = 30.0
MAX_CACHED = 256


class JwksFetchError(Exception):
    """The JWKS URL may not be fetched, or did not answer with a key set."""


@dataclass(frozen=True, slots=True)
class JwksPolicy:
    allowed_hosts: frozenset[str] = frozenset()  # "host" or "host:port", lower case
    timeout_s: float = 5.0
    max_bytes: int = 64 * 1024
    cache_s: float = 300.0


class JwksFetcher:
    def __init__(self, policy: JwksPolicy, *, resolver: Resolver = system_resolver) -> None:
        self.policy = policy
        self._client = OutboundClient(
            OutboundPolicy(policy.allowed_hosts, policy.timeout_s, policy.max_bytes),
            resolver=resolver,
        )
        self._cache: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, url: str, *, force: bool = False) -> dict[str, Any]:
        """The key set at ``url`` (cached); ``force`` refetches unless fetched very recently."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(url)
            if cached is not None:
                fetched, jwks = cached
                age = now - fetched
                if age < (MIN_REFETCH_S if force else self.policy.cache_s):
                    self._cache.move_to_end(url)
                    return jwks
        jwks = self.fetch(url)
        with self._lock:
            self._cache[url] = (time.monotonic(), jwks)
            self._cache.move_to_end(url)
            while len(self._cache) > MAX_CACHED:
                self._cache.popitem(last=False)
        return jwks

    def fetch(self, url: str) -> dict[str, Any]:
        """Fetch and parse the key set at ``url`` under the rules above (no cache)."""
        try:
            response = self._client.request("GET", url, headers={"Accept": "application/json"})
        except OutboundTooLarge:
            raise JwksFetchError("the JWKS is larger than the size limit") from None
        except OutboundError as exc:
            raise JwksFetchError(f"the JWKS URL could not be fetched: {exc}") from exc
        if response.status != 200:
            raise JwksFetchError(f"the JWKS URL answered {response.status} (no redirects)")
        try:
            jwks = json.loads(response.body)
        except ValueError:
            raise JwksFetchError("the JWKS URL did not answer with JSON") from None
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise JwksFetchError("the JWKS URL did not answer with a JSON Web Key Set")
        return jwks
