"""Fetching client JWKS URLs under SECURITY.md's server-side request forgery rules: only
http(s), no loopback/private/link-local/0.0.0.0/decimal or hex IP forms or names resolving to
them unless allow-listed, no redirects, size cap, timeout, bounded cache; refused fetches make
no connection."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from healthbridge.auth import client_jwks
from healthbridge.auth.client_jwks import JwksFetcher, JwksFetchError, JwksPolicy

JWKS = {"keys": [{"kty": "EC", "kid": "k", "crv": "P-384", "x": "AA", "y": "AA"}]}


class Server:
    def __init__(self, handler: Any) -> None:
        self.hits = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits += 1
                handler(self)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/jwks.json") -> str:
        return f"http://{self.host}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _answer(body: bytes, status: int = 200, **headers: str) -> Any:
    def handle(request: BaseHTTPRequestHandler) -> None:
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name.replace("_", "-"), value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    return handle


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server(_answer(json.dumps(JWKS).encode()))
    yield running
    running.close()


def test_an_allow_listed_host_is_fetched(server: Server) -> None:
    fetcher = JwksFetcher(JwksPolicy(frozenset({server.host})))
    assert fetcher.get(server.url()) == JWKS
    assert fetcher.get(server.url()) == JWKS
    assert server.hits == 1


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.1/jwks",
        "https://192.168.1.1/jwks",
        "https://169.254.169.254/latest/meta-data",
        "https://0.0.0.0/jwks",
        "https://127.0.0.1/jwks",
        "https://2130706433/jwks",
        "https://0x7f000001/jwks",
        "https://0177.0.0.1/jwks",
        "https://127.1/jwks",
        "https://[::1]/jwks",
        "https://[::ffff:127.0.0.1]/jwks",
        "https://[0:0:0:0:0:0:0:1]/jwks",
        "https://localhost/jwks",
        "http://example.com/jwks",
        "ftp://example.com/jwks",
        "file:///etc/passwd",
        "https://user:pw@example.com/jwks",
        "gopher://127.0.0.1:70/",
    ],
)
def test_forbidden_targets(url: str) -> None:
    with pytest.raises(JwksFetchError):
        JwksFetcher(JwksPolicy()).fetch(url)


def test_loopback_not_allow_listed_makes_no_connection(server: Server) -> None:
    fetcher = JwksFetcher(JwksPolicy(frozenset({"127.0.0.1:1"})))  # another port
    with pytest.raises(JwksFetchError):
        fetcher.get(server.url())
    with pytest.raises(JwksFetchError):
        fetcher.get(f"https://localhost:{server.port}/jwks.json")
    assert server.hits == 0


def test_redirects_are_not_followed(server: Server) -> None:
    redirecting = Server(_answer(b"", 302, Location=server.url()))
    try:
        fetcher = JwksFetcher(JwksPolicy(frozenset({redirecting.host, server.host})))
        with pytest.raises(JwksFetchError, match="302"):
            fetcher.get(redirecting.url())
        assert server.hits == 0
    finally:
        redirecting.close()


def test_size_cap() -> None:
    big = json.dumps({"keys": [], "pad": "x" * 5000}).encode()
    running = Server(_answer(big))
    try:
        fetcher = JwksFetcher(JwksPolicy(frozenset({running.host}), max_bytes=1024))
        with pytest.raises(JwksFetchError, match="size"):
            fetcher.get(running.url())
    finally:
        running.close()


def test_timeout() -> None:
    def slow(request: BaseHTTPRequestHandler) -> None:
        time.sleep(3)
        _answer(json.dumps(JWKS).encode())(request)

    running = Server(slow)
    try:
        fetcher = JwksFetcher(JwksPolicy(frozenset({running.host}), timeout_s=0.3))
        started = time.monotonic()
        with pytest.raises(JwksFetchError):
            fetcher.get(running.url())
        assert time.monotonic() - started < 2.5
    finally:
        running.close()


@pytest.mark.parametrize("body", [b"<html>secret page</html>", b"[1, 2]", b'{"no": "keys"}'])
def test_not_a_key_set_and_the_body_is_not_echoed(body: bytes) -> None:
    running = Server(_answer(body))
    try:
        fetcher = JwksFetcher(JwksPolicy(frozenset({running.host})))
        with pytest.raises(JwksFetchError) as raised:
            fetcher.get(running.url())
        assert "secret" not in str(raised.value)
    finally:
        running.close()


def test_the_cache_is_bounded(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_jwks, "MAX_CACHED", 2)
    fetcher = JwksFetcher(JwksPolicy(frozenset({server.host})))
    for path in ("/a", "/b", "/c"):
        fetcher.get(server.url(path))
    assert len(fetcher._cache) == 2
    fetcher.get(server.url("/a"))  # evicted: fetched again
    assert server.hits == 4


def test_cache_lifetime(server: Server) -> None:
    fetcher = JwksFetcher(JwksPolicy(frozenset({server.host}), cache_s=0))
    fetcher.get(server.url())
    fetcher.get(server.url())
    assert server.hits == 2
