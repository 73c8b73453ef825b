"""The asyncio outbound client on aiohttp (:class:`healthbridge.infra.ssrf.AsyncOutboundClient`):
what aiohttp would do by default and the guard turns off (decompressing, following redirects,
cookies, proxies from the environment), the guarded resolver (a name is resolved once per
connection and its answer checked; an IP literal, which aiohttp connects to without asking the
resolver, is checked all the same) and keep-alive connection reuse. SECURITY.md, "Server-side
request forgery";
https://cheatsheetseries.owasp.org/cheatsheets/Server_Side_Request_Forgery_Prevention_Cheat_Sheet.html
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Sequence

import pytest

from healthbridge.infra.ssrf import (
    AsyncOutboundClient,
    OutboundError,
    OutboundPolicy,
    OutboundRefused,
)
from tests.support.http_receiver import Answer, Receiver


class CountingDns:
    """Every name answers ``address``; every question is counted."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        return [self.address]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    running = Receiver(Answer(200, body=b"ok"))
    yield running
    running.close()


async def test_a_gzip_answer_comes_back_as_sent(receiver: Receiver) -> None:
    """No content decoding (a small gzip body can inflate to gigabytes), and none is asked for."""
    packed = gzip.compress(b'{"resourceType":"Bundle"}' * 100)
    receiver.answer = Answer(200, {"Content-Encoding": "gzip"}, body=packed)
    client = AsyncOutboundClient(OutboundPolicy(frozenset({receiver.host})))
    try:
        response = await client.request("GET", receiver.url())
    finally:
        await client.aclose()
    assert response.headers["content-encoding"] == "gzip"
    assert response.body == packed
    assert "accept-encoding" not in receiver.received[0].headers


async def test_a_redirect_comes_back_as_is(receiver: Receiver) -> None:
    redirecting = Receiver(Answer(302, {"Location": receiver.url("/elsewhere")}))
    client = AsyncOutboundClient(OutboundPolicy(frozenset({redirecting.host, receiver.host})))
    try:
        response = await client.request("POST", redirecting.url(), content=b"{}")
    finally:
        await client.aclose()
        redirecting.close()
    assert response.status == 302
    assert response.headers["location"] == receiver.url("/elsewhere")
    assert receiver.connections == 0


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.7", "169.254.169.254", "::1"])
async def test_a_name_that_resolves_to_a_private_address_is_refused(
    receiver: Receiver, address: str
) -> None:
    """The refusal made in aiohttp's resolver comes out as such (a permanent failure), not as a
    connection error, and the client still works afterwards."""
    dns = CountingDns(address)
    client = AsyncOutboundClient(OutboundPolicy(frozenset({receiver.host})), resolver=dns)
    try:
        with pytest.raises(OutboundRefused, match="loopback, private or reserved"):
            await client.request(
                "POST", f"https://hooks.example.test:{receiver.port}/", content=b""
            )
        assert (await client.request("GET", receiver.url())).status == 200
    finally:
        await client.aclose()
    assert dns.asked == ["hooks.example.test"]
    assert receiver.connections == 1  # the allow-listed one only


async def test_ip_literals_are_checked_without_the_resolver(receiver: Receiver) -> None:
    """aiohttp connects to an IP literal without asking its resolver: the literal is checked
    when the request is made."""
    dns = CountingDns("93.184.215.14")
    client = AsyncOutboundClient(OutboundPolicy(), resolver=dns)
    allowed = AsyncOutboundClient(OutboundPolicy(frozenset({receiver.host})), resolver=dns)
    try:
        for host in ("127.0.0.1", "[::1]", "[::ffff:7f00:1]", "10.0.0.1"):
            with pytest.raises(OutboundRefused):
                await client.request("GET", f"https://{host}:{receiver.port}/")
        assert (await allowed.request("GET", receiver.url())).status == 200
    finally:
        await client.aclose()
        await allowed.aclose()
    assert dns.asked == []
    assert receiver.connections == 1


async def test_urls_the_parsers_read_differently_are_refused(receiver: Receiver) -> None:
    """The URL is checked as Python's parser reads it and sent as aiohttp's (yarl) reads it:
    when they disagree on the host, nothing is sent."""
    dns = CountingDns("93.184.215.14")
    client = AsyncOutboundClient(OutboundPolicy(), resolver=dns)
    try:
        for url in ("https://bücher.example/", "https://example.com\\@127.0.0.1/"):
            with pytest.raises(OutboundRefused):
                await client.request("GET", url)
    finally:
        await client.aclose()
    assert dns.asked == []


async def test_two_requests_share_one_connection_and_one_resolution(receiver: Receiver) -> None:
    dns = CountingDns("127.0.0.1")
    name = f"hooks.example.test:{receiver.port}"
    client = AsyncOutboundClient(OutboundPolicy(frozenset({name})), resolver=dns)
    try:
        for _ in range(2):
            answer = await client.request("POST", f"http://{name}/hook", content=b"{}")
            assert (answer.status, answer.body) == (200, b"ok")
    finally:
        await client.aclose()
    assert receiver.connections == 1
    assert dns.asked == ["hooks.example.test"]
    assert [r.headers["host"] for r in receiver.received] == [name, name]


async def test_each_new_connection_asks_the_resolver_again(receiver: Receiver) -> None:
    """No DNS cache: an answer is used for the one connection it was checked for."""
    receiver.answer = Answer(200, {"Connection": "close"}, body=b"ok")
    dns = CountingDns("127.0.0.1")
    name = f"hooks.example.test:{receiver.port}"
    client = AsyncOutboundClient(OutboundPolicy(frozenset({name})), resolver=dns)
    try:
        for _ in range(2):
            assert (await client.request("GET", f"http://{name}/")).status == 200
    finally:
        await client.aclose()
    assert receiver.connections == 2
    assert dns.asked == ["hooks.example.test", "hooks.example.test"]


async def test_only_the_callers_headers_are_sent_and_no_cookies_are_kept(
    receiver: Receiver,
) -> None:
    receiver.answer = Answer(200, {"Set-Cookie": "session=abc; Path=/"}, body=b"ok")
    name = f"hooks.example.test:{receiver.port}"  # a name: cookies are kept for names only
    client = AsyncOutboundClient(
        OutboundPolicy(frozenset({name})), resolver=CountingDns("127.0.0.1")
    )
    try:
        for _ in range(2):
            await client.request("POST", f"http://{name}/", headers={"X-Sig": "1"}, content=b"{}")
    finally:
        await client.aclose()
    for received in receiver.received:
        assert set(received.headers) == {"host", "x-sig", "content-length"}


async def test_proxies_from_the_environment_are_not_used(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = AsyncOutboundClient(OutboundPolicy(frozenset({receiver.host})))
    try:
        assert (await client.request("GET", receiver.url())).status == 200
    finally:
        await client.aclose()


async def test_failures_name_their_category_only() -> None:
    client = AsyncOutboundClient(OutboundPolicy(frozenset({"127.0.0.1"})))
    try:
        with pytest.raises(OutboundError, match=r"^the request failed \(\w+\)$"):
            await client.request("GET", "http://127.0.0.1:9/")
    finally:
        await client.aclose()


async def test_closing_an_unused_client_is_safe() -> None:
    client = AsyncOutboundClient(OutboundPolicy())
    await client.aclose()
    await client.aclose()
