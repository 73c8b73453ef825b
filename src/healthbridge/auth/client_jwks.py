"""Fetching a client's JWKS from its registered ``jwks_uri``
(https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html#registering-a-client-communicating-public-keys),
under the server-side request forgery rules of SECURITY.md:

* only ``https`` URLs (``http`` only for hosts the operator allow-lists);
* IP literals must be written canonically (no ``2130706433``, ``0x7f.1``, ``0177.0.0.1``);
* the host is resolved once and every address must be public (no loopback, private,
  link-local, ``0.0.0.0``, multicast or reserved ranges) unless the operator allow-lists the
  host (``HEALTHBRIDGE_AUTH_JWKS_ALLOWED_HOSTS``); the connection goes to the address that was
  checked, so a DNS answer that changes in between (rebinding) cannot redirect it;
* no redirects, a timeout on connect and read, and a size cap; the body is never echoed back;
* results are cached for a while in a bounded LRU; a forced refetch (unknown ``kid``) happens
  at most every :data:`MIN_REFETCH_S` seconds per URL.

It runs in a worker thread (the client authentication of :mod:`.client_auth` does), so the
blocking standard-library client never holds up the event loop.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MIN_REFETCH_S = 30.0
MAX_CACHED = 256
_NUMBER = re.compile(r"0x[0-9a-f]*|[0-9]+", re.IGNORECASE)


class JwksFetchError(Exception):
    """The JWKS URL may not be fetched, or did not answer with a key set."""


@dataclass(frozen=True, slots=True)
class JwksPolicy:
    allowed_hosts: frozenset[str] = frozenset()  # "host" or "host:port", lower case
    timeout_s: float = 5.0
    max_bytes: int = 64 * 1024
    cache_s: float = 300.0


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def _check_host(host: str) -> None:
    """Refuse IP literals in any but their canonical form, and names ending in a number
    (which URL parsers and ``inet_aton`` take for IPv4 addresses: ``127.1``, ``0x7f000001``)."""
    try:
        canonical = str(ipaddress.ip_address(host))
    except ValueError:
        labels = host.rstrip(".").split(".")
        if _NUMBER.fullmatch(labels[-1]):
            raise JwksFetchError(f"{host!r} is not a host name or a canonical IP address") from None
        return
    if canonical != host:
        raise JwksFetchError(f"{host!r} is not a canonical IP address")


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


class JwksFetcher:
    def __init__(self, policy: JwksPolicy) -> None:
        self.policy = policy
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

    def _target(self, url: str) -> tuple[str, str, int, str, str]:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host or parts.username or parts.password:
            raise JwksFetchError("a JWKS URL must be an http(s) URL with a host")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        allowed = host in self.policy.allowed_hosts or f"{host}:{port}" in self.policy.allowed_hosts
        if parts.scheme == "http" and not allowed:
            raise JwksFetchError("a JWKS URL must use https")
        _check_host(host)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise JwksFetchError(f"the JWKS host {host!r} does not resolve") from exc
        addresses = [str(info[4][0]) for info in infos]
        if not addresses:
            raise JwksFetchError(f"the JWKS host {host!r} does not resolve")
        if not allowed and not all(_public(a) for a in addresses):
            raise JwksFetchError(
                f"the JWKS host {host!r} is a loopback, private or reserved address; "
                "the operator may allow it with HEALTHBRIDGE_AUTH_JWKS_ALLOWED_HOSTS"
            )
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return parts.scheme, host, port, addresses[0], path

    def fetch(self, url: str) -> dict[str, Any]:
        """Fetch and parse the key set at ``url`` under the rules above (no cache)."""
        scheme, host, port, address, path = self._target(url)
        kind = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
        connection = kind(host, port, address, self.policy.timeout_s)
        try:
            connection.request("GET", path, headers={"Accept": "application/json"})
            response = connection.getresponse()
            if response.status != 200:
                raise JwksFetchError(f"the JWKS URL answered {response.status} (no redirects)")
            declared = response.getheader("Content-Length")
            if (
                declared is not None
                and declared.isdigit()
                and int(declared) > self.policy.max_bytes
            ):
                raise JwksFetchError("the JWKS is larger than the size limit")
            body = response.read(self.policy.max_bytes + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise JwksFetchError(
                f"the JWKS URL could not be fetched ({type(exc).__name__})"
            ) from exc
        finally:
            connection.close()
        if len(body) > self.policy.max_bytes:
            raise JwksFetchError("the JWKS is larger than the size limit")
        try:
            jwks = json.loads(body)
        except ValueError:
            raise JwksFetchError("the JWKS URL did not answer with JSON") from None
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise JwksFetchError("the JWKS URL did not answer with a JSON Web Key Set")
        return jwks
