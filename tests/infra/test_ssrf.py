"""The outbound-URL guard (SECURITY.md, "Server-side request forgery"): every refused target
makes no connection (the loopback receiver sees nothing), the address is checked when the
connection is made and the connection goes to that address (DNS rebinding), redirects are not
followed, and the operator's allow-list lifts the rules for the hosts it names.
https://cheatsheetseries.owasp.org/cheatsheets/Server_Side_Request_Forgery_Prevention_Cheat_Sheet.html
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from healthbridge.infra.ssrf import (
    DRAIN_BYTES,
    AsyncOutboundClient,
    OutboundClient,
    OutboundError,
    OutboundPolicy,
    OutboundRefused,
    OutboundTooLarge,
    check_url,
    is_public,
    parse_allowed_hosts,
)
from healthbridge.settings import Settings
from tests.support.http_receiver import Answer, Receiver, self_signed

PUBLIC = "93.184.215.14"  # a global address; never connected to by these tests


class FakeDns:
    """A resolver the test controls: each name answers its list of answers in turn (the last
    one repeats), and every question is counted."""

    def __init__(self, **answers: list[list[str]]) -> None:
        self.answers = {name.replace("_", "."): list(a) for name, a in answers.items()}
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        queue = self.answers.get(host)
        if not queue:
            return []
        return queue.pop(0) if len(queue) > 1 else queue[0]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver(Answer(200, body=b"ok"))
    yield running
    running.close()


def _forbidden(port: int) -> list[str]:
    return [
        f"https://127.0.0.1:{port}/",
        f"https://localhost:{port}/",
        f"https://169.254.169.254:{port}/latest/meta-data/",
        f"https://10.0.0.1:{port}/",
        f"https://172.16.5.4:{port}/",
        f"https://192.168.1.1:{port}/",
        f"https://100.64.0.1:{port}/",  # carrier-grade NAT
        f"https://0.0.0.0:{port}/",
        f"https://2130706433:{port}/",  # decimal 127.0.0.1
        f"https://0x7f000001:{port}/",  # hex 127.0.0.1
        f"https://0177.0.0.1:{port}/",  # octal
        f"https://127.1:{port}/",
        f"https://[::1]:{port}/",
        f"https://[::ffff:127.0.0.1]:{port}/",
        f"https://[::ffff:7f00:1]:{port}/",
        f"https://[0:0:0:0:0:0:0:1]:{port}/",
        f"https://[fe80::1]:{port}/",
        f"https://[fc00::1]:{port}/",
        f"https://224.0.0.1:{port}/",  # multicast
        f"https://240.0.0.1:{port}/",  # reserved
        f"https://255.255.255.255:{port}/",
        f"http://example.com:{port}/",  # plain http
        f"ftp://127.0.0.1:{port}/",
        "file:///etc/passwd",
        f"gopher://127.0.0.1:{port}/_",
        f"https://user:pw@127.0.0.1:{port}/",
        f"https://user@example.com:{port}/",
        "https:///no-host",
        "https://[::1/",
    ]


def test_forbidden_targets_make_no_connection(receiver: Receiver) -> None:
    client = OutboundClient(OutboundPolicy())
    for url in _forbidden(receiver.port):
        with pytest.raises(OutboundRefused):
            client.request("GET", url)
        with pytest.raises(OutboundRefused):
            check_url(url, OutboundPolicy())
    assert receiver.connections == 0


async def test_forbidden_targets_make_no_connection_async(receiver: Receiver) -> None:
    client = AsyncOutboundClient(OutboundPolicy())
    try:
        for url in _forbidden(receiver.port):
            with pytest.raises(OutboundRefused):
                await client.request("POST", url, content=b"{}")
    finally:
        await client.aclose()
    assert receiver.connections == 0


@pytest.mark.parametrize(
    "answers",
    [["10.1.2.3"], ["127.0.0.1"], ["169.254.169.254"], [PUBLIC, "192.168.0.7"], ["::1"], []],
)
async def test_names_resolving_to_refused_addresses(receiver: Receiver, answers: list[str]) -> None:
    """Every address a name resolves to must be public; a name that resolves to nothing fails."""
    dns = FakeDns(hooks_example_test=[answers])
    client = AsyncOutboundClient(OutboundPolicy(), resolver=dns)
    try:
        with pytest.raises(OutboundRefused):
            await client.request(
                "POST", f"https://hooks.example.test:{receiver.port}/", content=b""
            )
    finally:
        await client.aclose()
    assert dns.asked == ["hooks.example.test"]
    assert receiver.connections == 0


async def test_dns_rebinding_the_connect_time_answer_is_checked(receiver: Receiver) -> None:
    """The name answers a public address when the subscription is checked, then loopback: the
    check made when connecting refuses it."""
    dns = FakeDns(hooks_example_test=[[PUBLIC], ["127.0.0.1"]])
    url = f"https://hooks.example.test:{receiver.port}/hook"
    check_url(url, OutboundPolicy(), dns)  # accepted at subscription time
    client = AsyncOutboundClient(OutboundPolicy(), resolver=dns)
    try:
        with pytest.raises(OutboundRefused, match="loopback, private or reserved"):
            await client.request("POST", url, content=b"{}")
    finally:
        await client.aclose()
    assert receiver.connections == 0


async def test_the_connection_goes_to_the_checked_address_with_the_original_host(
    receiver: Receiver,
) -> None:
    """Resolved once per connection; the TCP connection goes to the checked address and the
    Host header keeps the name (the second answer, which would point elsewhere, is never used)."""
    dns = FakeDns(hooks_example_test=[["127.0.0.1"], [PUBLIC]])
    name = f"hooks.example.test:{receiver.port}"
    client = AsyncOutboundClient(OutboundPolicy(frozenset({name})), resolver=dns)
    try:
        response = await client.request("POST", f"http://{name}/hook", content=b"{}")
    finally:
        await client.aclose()
    assert response.status == 200
    assert dns.asked == ["hooks.example.test"]
    assert receiver.received[0].headers["host"] == name


async def test_tls_to_the_checked_address_verifies_the_name(tmp_path: Path) -> None:
    """https to a name pinned to its checked address: SNI and certificate checks use the name."""
    server_tls, client_tls = self_signed("hooks.example.test", tmp_path)
    running = Receiver(Answer(204), tls=server_tls)
    dns = FakeDns(hooks_example_test=[["127.0.0.1"]])
    name = f"hooks.example.test:{running.port}"
    policy = OutboundPolicy(frozenset({name}))
    client = AsyncOutboundClient(policy, resolver=dns, ssl_context=client_tls)
    other = AsyncOutboundClient(
        policy, resolver=FakeDns(other_example_test=[["127.0.0.1"]]), ssl_context=client_tls
    )
    try:
        assert (await client.request("POST", f"https://{name}/", content=b"")).status == 204
        with pytest.raises(OutboundError):  # the certificate does not name other.example.test
            await other.request("POST", f"https://other.example.test:{running.port}/")
    finally:
        await client.aclose()
        await other.aclose()
        running.close()
    assert len(running.received) == 1


def test_redirects_are_not_followed(receiver: Receiver) -> None:
    redirecting = Receiver(Answer(302, {"Location": receiver.url()}))
    try:
        policy = OutboundPolicy(frozenset({redirecting.host, receiver.host}))
        response = OutboundClient(policy).request("GET", redirecting.url())
    finally:
        redirecting.close()
    assert response.status == 302
    assert receiver.connections == 0


def test_the_allow_list_lifts_the_rules_for_the_named_host_only(receiver: Receiver) -> None:
    for allowed in ({receiver.host}, {"127.0.0.1"}):
        response = OutboundClient(OutboundPolicy(frozenset(allowed))).request("GET", receiver.url())
        assert (response.status, response.body) == (200, b"ok")
    with pytest.raises(OutboundRefused):
        OutboundClient(OutboundPolicy(frozenset({"127.0.0.1:1"}))).request("GET", receiver.url())
    with pytest.raises(OutboundRefused):  # allow-listing a name does not allow an alias of it
        OutboundClient(OutboundPolicy(frozenset({"localhost"}))).request("GET", receiver.url())
    assert len(receiver.received) == 2


async def test_size_cap_and_the_body_is_not_in_errors() -> None:
    running = Receiver(Answer(200, body=b"secret " * 1000))
    client = AsyncOutboundClient(OutboundPolicy(frozenset({running.host}), max_bytes=1024))
    try:
        with pytest.raises(OutboundTooLarge) as raised:
            await client.request("GET", running.url())
    finally:
        await client.aclose()
        running.close()
    assert "secret" not in str(raised.value)


async def test_connections_are_kept_alive_even_when_the_body_is_not_wanted() -> None:
    """A webhook's answer body is not wanted (never shown), but it is read to its end so that
    the next request reuses the connection (a new connection per notification cost a tenth of
    the sending CPU); an answer body too long to be worth reading closes it instead, and an
    idle connection the server closed is noticed, not written to (aiohttp's pool drops it)."""
    connections = 0
    size: dict[str, int] = {"body": 10}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                body = b"x" * size["body"]
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
                if size.get("close"):
                    break  # the server closes the idle kept-alive connection
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook"
    client = AsyncOutboundClient(OutboundPolicy(frozenset({"127.0.0.1"})))
    try:
        for _ in range(5):
            answer = await client.request("POST", url, content=b"{}", read_body=False)
            assert answer.status == 200 and answer.body == b""
        assert connections == 1
        # a long answer, more than one read of the socket (256 KiB) could bring with the
        # headers: not read to its end but closed
        size["body"] = 16 * DRAIN_BYTES
        for _ in range(2):
            assert (await client.request("POST", url, content=b"{}", read_body=False)).status == 200
        assert connections == 2  # the kept one closed after the first long answer
        size.update(body=10, close=1)
        assert (await client.request("POST", url, content=b"{}", read_body=False)).status == 200
        await asyncio.sleep(0.05)  # the server has closed it by now: the pool sees that
        assert (await client.request("POST", url, content=b"{}", read_body=False)).status == 200
        assert connections == 4
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


async def test_a_slow_drip_is_cut_by_the_overall_deadline() -> None:
    """Each byte arrives well within the read timeout; the whole exchange is still bounded."""
    running = Receiver(Answer(200, body=b"x" * 100, drip_s=0.05))
    client = AsyncOutboundClient(OutboundPolicy(frozenset({running.host}), timeout_s=0.5))
    started = time.monotonic()
    try:
        with pytest.raises(OutboundError, match="timed out"):
            await client.request("GET", running.url())
    finally:
        await client.aclose()
        running.close()
    assert time.monotonic() - started < 2


def test_a_connection_refused_is_an_error_that_names_no_details() -> None:
    with pytest.raises(OutboundError, match=r"failed \(ConnectError\)"):
        OutboundClient(OutboundPolicy(frozenset({"127.0.0.1"}))).request(
            "GET", "http://127.0.0.1:9/"
        )


@pytest.mark.parametrize(
    ("address", "public"),
    [
        (PUBLIC, True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("fe80::1%eth0", False),
        ("198.18.0.1", False),  # benchmarking
        ("192.0.2.1", False),  # documentation
    ],
)
def test_is_public(address: str, public: bool) -> None:
    assert is_public(address) is public


def test_the_allow_list_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHBRIDGE_OUTBOUND_ALLOWED_HOSTS", " Hooks.Internal:8443, 10.0.0.5 ,")
    settings = Settings()
    assert settings.outbound_allowed_hosts == ["hooks.internal:8443", "10.0.0.5"]
    allowed = parse_allowed_hosts(settings.outbound_allowed_hosts, "a.example")
    assert OutboundPolicy(allowed).allows("hooks.internal", 8443)
    assert not OutboundPolicy(allowed).allows("hooks.internal", 443)
    assert OutboundPolicy(allowed).allows("a.example", 1)
