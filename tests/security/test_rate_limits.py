"""Weighted rate limits (SECURITY.md "Resource limits": reads cheap, writes dear, 429 +
``Retry-After`` + RateLimit headers; "Login and token endpoints are rate limited per IP and per
client"). Headers: draft-ietf-httpapi-ratelimit-headers-09 (``RateLimit``, ``RateLimit-Policy``);
``Retry-After``: RFC 9110 section 10.2.3; OAuth errors: RFC 6749 section 5.2, RFC 8628 section
3.5. Unit tests drive the limiter on a fake clock; HTTP tests go through the real app; the Redis
tests use the server at 127.0.0.1:6379 (skipped with the reason when it does not answer)."""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from healthbridge.app import build_rate_limiter, create_app
from healthbridge.fhir.errors import TooManyRequests
from healthbridge.rest.errors import error_response
from healthbridge.security.ratelimit import (
    CATEGORIES,
    COSTS,
    RateLimitConfig,
    RateLimiter,
    bundle_cost,
    category_of,
)
from healthbridge.security.ratelimit_memory import LocalWindows
from healthbridge.security.ratelimit_middleware import classify
from healthbridge.settings import Settings
from healthbridge.store.memory import MemoryRepository
from healthbridge.store.repository import Repository

REDIS_URL = "redis://127.0.0.1:6379/15"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
PATIENT = {"resourceType": "Patient", "gender": "female"}


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(clock: FakeClock, **budgets: str) -> RateLimiter:
    return RateLimiter(RateLimitConfig(**budgets), storage=LocalWindows(clock=clock))


async def refused(check: object) -> TooManyRequests:
    with pytest.raises(TooManyRequests) as raised:
        await check  # type: ignore[misc]
    return raised.value


# -- the limiter ------------------------------------------------------------------------------
async def test_reads_are_cheap_and_writes_dear() -> None:
    clock = FakeClock()
    rl = limiter(clock, client="30/minute")
    for _ in range(2):
        await rl.check_client("app", "create")  # 10 units each
    for _ in range(10):
        await rl.check_client("app", "read")  # 1 unit each
    error = await refused(rl.check_client("app", "read"))
    assert error.issues[0].code == "throttled"
    assert (await rl.check_client("other-app", "update")).remaining == 20  # budgets per client


async def test_429_carries_retry_after_and_ratelimit_fields() -> None:
    clock = FakeClock(1_000_000.0)  # on a window boundary
    rl = limiter(clock, client="10/minute")
    state = await rl.check_client("app", "search")
    assert (state.policy, state.limit, state.window, state.remaining) == ("client", 10, 60, 5)
    assert state.headers() == {
        "RateLimit-Policy": '"client";q=10;w=60',
        "RateLimit": f'"client";r=5;t={state.reset}',
    }
    await rl.check_client("app", "search")
    error = await refused(rl.check_client("app", "read"))
    headers = error.headers
    assert re.fullmatch(r"[1-9][0-9]*", headers["Retry-After"])
    assert headers["RateLimit-Policy"] == '"client";q=10;w=60'
    assert re.fullmatch(r'"client";r=0;t=[0-9]+', headers["RateLimit"])
    text = error.issues[0].diagnostics
    assert "Retry after" in text and "10 units per 60 s" in text
    # The one FhirError mapping gives 429 with those headers (what the FHIR router returns).
    response = error_response(error)
    assert response.status_code == 429
    assert response.headers["retry-after"] == headers["Retry-After"]


async def test_retry_after_is_when_the_request_fits_again() -> None:
    """The sliding window: the previous window's count weighs by the share still inside."""
    clock = FakeClock(1_000_000.0)
    rl = limiter(clock, client="10/minute")
    for _ in range(10):
        await rl.check_client("app", "read")
    clock.now += 30  # half way through the window: still 10 spent
    error = await refused(rl.check_client("app", "create"))
    wait = int(error.headers["Retry-After"])
    clock.now += wait - 1
    await refused(rl.check_client("app", "create"))
    clock.now += 1
    await rl.check_client("app", "create")


async def test_a_cost_over_the_whole_budget_waits_for_an_empty_window() -> None:
    clock = FakeClock()
    rl = limiter(clock, client="100/second")
    state = await rl.check_client("loader", "transaction", cost=bundle_cost(5000))
    assert state.remaining == 0
    error = await refused(rl.check_client("loader", "read"))
    assert int(error.headers["Retry-After"]) >= 1
    clock.now += 2
    await rl.check_client("loader", "transaction", cost=bundle_cost(5000))


async def test_token_budgets_are_separate_and_strict() -> None:
    clock = FakeClock()
    rl = limiter(clock, client="1000/minute", token_client="3/minute", token="5/minute")
    for _ in range(3):
        await rl.check_client("app", "token")
    error = await refused(rl.check_client("app", "token"))
    assert error.headers["RateLimit-Policy"] == '"client-token";q=3;w=60'
    assert "Too many token requests" in error.issues[0].diagnostics
    assert "the limit is 3 per 60 s" in error.issues[0].diagnostics
    await rl.check_client("app", "read")  # the FHIR budget is untouched
    for _ in range(5):
        await rl.check_ip("192.0.2.1", "token")
    await refused(rl.check_ip("192.0.2.1", "token"))
    await rl.check_ip("192.0.2.1", "read")
    with pytest.raises(ValueError, match="not limited per client"):
        await rl.check_client("app", "login")


async def test_several_windows_all_apply() -> None:
    clock = FakeClock(1_000_000.0)
    rl = limiter(clock, client="3/second;5/minute")
    for _ in range(3):
        await rl.check_client("app", "read")
    error = await refused(rl.check_client("app", "read"))
    assert error.headers["RateLimit-Policy"] == '"client-1s";q=3;w=1'
    clock.now += 2
    for _ in range(2):
        await rl.check_client("app", "read")
    error = await refused(rl.check_client("app", "read"))
    assert error.headers["RateLimit-Policy"] == '"client-60s";q=5;w=60'


async def test_ipv6_addresses_count_per_64() -> None:
    clock = FakeClock()
    rl = limiter(clock, ip="2/minute")
    await rl.check_ip("2001:db8:1:2::1", "read")
    await rl.check_ip("2001:db8:1:2:ffff::9", "read")
    await refused(rl.check_ip("2001:db8:1:2::77", "read"))
    await rl.check_ip("2001:db8:1:3::1", "read")  # another /64
    await rl.check_ip("::ffff:192.0.2.7", "read")  # IPv4-mapped counts as the IPv4 address
    await rl.check_ip("192.0.2.7", "read")
    await refused(rl.check_ip("192.0.2.7", "read"))


async def test_idle_keys_are_swept() -> None:
    clock = FakeClock()
    storage = LocalWindows(sweep_seconds=10, clock=clock)
    rl = RateLimiter(RateLimitConfig(ip="5/second"), storage=storage)
    for n in range(100):
        await rl.check_ip(f"198.51.100.{n}", "read")
    assert len(storage.windows) == 100
    clock.now += 11
    await rl.check_ip("203.0.113.1", "read")
    assert list(storage.windows) == ["ip/5/1:203.0.113.1"]


def test_interaction_codes_map_to_categories() -> None:
    expected = {
        "read": "read",
        "vread": "read",
        "capabilities": "read",
        "search-type": "search",
        "search-system": "search",
        "history-instance": "history",
        "create": "write",
        "update": "write",
        "patch": "write",
        "delete": "write",
        "transaction": "transaction",
        "batch": "transaction",
        "$validate": "operation",
        "$everything": "operation",
        "$export": "bulk",
        "write": "write",
    }
    for interaction, category in expected.items():
        assert category_of(interaction) == category, interaction
    assert set(CATEGORIES.values()) <= set(COSTS)
    assert COSTS["read"] < COSTS["search"] < COSTS["write"]
    assert bundle_cost(20) == COSTS["transaction"] + 20
    with pytest.raises(ValueError, match="unknown"):
        category_of("teleport")


def test_requests_are_classified_by_method_and_path() -> None:
    cases = {
        ("GET", "/fhir/Patient/1"): "read",
        ("HEAD", "/fhir/Patient/1"): "read",
        ("GET", "/fhir/metadata"): "read",
        ("GET", "/fhir/Patient/1/_history/2"): "read",
        ("GET", "/fhir/Patient"): "search",
        ("GET", "/fhir"): "search",
        ("GET", "/fhir/Patient/1/Observation"): "search",
        ("POST", "/fhir/Patient/_search"): "search",
        ("GET", "/fhir/Patient/1/_history"): "history",
        ("GET", "/fhir/Patient/_history"): "history",
        ("GET", "/fhir/_history"): "history",
        ("POST", "/fhir/Patient"): "write",
        ("PUT", "/fhir/Patient/1"): "write",
        ("PATCH", "/fhir/Patient/1"): "write",
        ("DELETE", "/fhir/Patient/1"): "write",
        ("POST", "/fhir"): "transaction",
        ("POST", "/fhir/"): "transaction",
        ("POST", "/fhir/Patient/$validate"): "operation",
        ("GET", "/fhir/Patient/1/$everything"): "operation",
        ("POST", "/auth/token"): "token",
        ("POST", "/auth/revoke"): "token",
        ("POST", "/auth/introspect"): "token",
        ("POST", "/auth/login"): "login",
        ("POST", "/auth/authorize"): "login",
        ("POST", "/auth/login/totp"): "login",
        ("POST", "/auth/logout"): "write",
        ("POST", "/auth/register"): "write",
        ("GET", "/auth/jwks"): "read",
        ("GET", "/auth/authorize"): "read",
        ("GET", "/.well-known/smart-configuration"): "read",
        ("GET", "/healthz"): None,
        ("GET", "/readyz"): None,
        ("GET", "/metrics"): None,
    }
    for (method, path), category in cases.items():
        assert classify(method, path) == category, (method, path)


# -- over the app -----------------------------------------------------------------------------
def app_client(tmp_path: Path, address: str = "192.0.2.10", **overrides: object) -> TestClient:
    settings = Settings(
        data_dir=tmp_path,
        access_log=False,
        **{"no_auth": True, **overrides},  # type: ignore[arg-type]
    )

    async def factory() -> Repository:
        return MemoryRepository()

    app = create_app(settings, repository_factory=factory)
    return TestClient(app, raise_server_exceptions=False, client=(address, 40000))


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[TestClient]:
    """Budgets of 30 units a minute per address, 2 login and 3 token POSTs."""
    with app_client(
        tmp_path,
        rate_limit_ip="30/minute",
        rate_limit_login="2/minute",
        rate_limit_token="3/minute",
    ) as client:
        yield client


def test_defaults_do_not_throttle_a_normal_client(tmp_path: Path) -> None:
    with app_client(tmp_path) as client:
        created = client.post("/fhir/Patient", json=PATIENT, headers=FHIR_JSON)
        assert created.status_code == 201
        url = f"/fhir/Patient/{created.json()['id']}"
        for _ in range(300):
            assert client.get(url).status_code == 200
        for _ in range(50):
            assert client.get("/fhir/Patient?gender=female").status_code == 200
            assert client.post("/fhir/Patient", json=PATIENT, headers=FHIR_JSON).status_code == 201


def test_fhir_429_is_an_operation_outcome_with_headers(tiny: TestClient) -> None:
    assert tiny.post("/fhir/Patient", json=PATIENT, headers=FHIR_JSON).status_code == 201
    assert tiny.post("/fhir/Patient", json=PATIENT, headers=FHIR_JSON).status_code == 201
    for _ in range(10):
        assert tiny.get("/fhir/Patient/nobody").status_code == 404
    response = tiny.get("/fhir/Patient/nobody")
    assert response.status_code == 429
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.headers["cache-control"] == "no-store"
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["ratelimit-policy"] == '"ip";q=30;w=60'
    assert response.headers["ratelimit"].startswith('"ip";r=0;t=')
    assert response.headers["x-request-id"]  # the observability layer saw it
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "throttled"
    assert "Retry after" in outcome["issue"][0]["diagnostics"]
    metrics = tiny.get("/metrics").text
    assert 'status="429"' in metrics


def test_health_and_metrics_are_never_limited(tiny: TestClient) -> None:
    for _ in range(4):
        tiny.post("/fhir/Patient", json=PATIENT, headers=FHIR_JSON)
    assert tiny.get("/fhir/metadata").status_code == 429
    for _ in range(50):
        assert tiny.get("/healthz").status_code == 200
    assert tiny.get("/readyz").status_code == 200
    assert tiny.get("/metrics").status_code == 200


def test_token_endpoint_429_is_an_oauth_error(tiny: TestClient) -> None:
    for _ in range(3):
        assert tiny.post("/auth/token", data={"grant_type": "x"}).status_code != 429
    response = tiny.post("/auth/token", data={"grant_type": "x"})
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["ratelimit-policy"] == '"ip-token";q=3;w=60'
    body = response.json()
    assert body["error"] == "slow_down"
    assert "Retry after" in body["error_description"]
    assert tiny.get("/fhir/metadata").status_code == 200  # other budgets are untouched


def test_login_posts_are_strict(tiny: TestClient) -> None:
    for _ in range(2):
        assert tiny.post("/auth/login", data={"user": "a", "password": "b"}).status_code != 429
    response = tiny.post("/auth/authorize", data={"user": "a", "password": "c"})
    assert response.status_code == 429
    assert response.json()["error"] == "temporarily_unavailable"
    assert response.headers["ratelimit-policy"] == '"ip-login";q=2;w=60'


def test_a_setting_turns_limits_off(tmp_path: Path) -> None:
    assert build_rate_limiter(Settings(rate_limits=False)) is None
    with app_client(tmp_path, rate_limits=False, rate_limit_ip="1/minute") as client:
        for _ in range(5):
            assert client.get("/fhir/metadata").status_code == 200


def test_forwarded_for_counts_only_from_trusted_proxies(tmp_path: Path) -> None:
    spoofed = {"X-Forwarded-For": "198.51.100.1"}
    with app_client(tmp_path / "direct", rate_limit_ip="2/minute") as client:
        for n in range(2):
            headers = {"X-Forwarded-For": f"198.51.100.{n}"}
            assert client.get("/fhir/metadata", headers=headers).status_code == 200
        assert client.get("/fhir/metadata", headers=spoofed).status_code == 429
    with app_client(
        tmp_path / "proxied",
        address="10.0.0.5",
        rate_limit_ip="2/minute",
        trusted_proxies="10.0.0.0/8",
    ) as client:
        for n in range(4):  # one address behind the proxy, then a chain through two proxies
            hop = {"X-Forwarded-For": f"198.51.100.{n + 10}, 10.1.1.1"}
            assert client.get("/fhir/metadata", headers=hop).status_code == 200
        for _ in range(2):
            assert client.get("/fhir/metadata", headers=spoofed).status_code == 200
        assert client.get("/fhir/metadata", headers=spoofed).status_code == 429
        forged = {"X-Forwarded-For": "198.51.100.1, 203.0.113.9"}  # the proxy appended .9
        assert client.get("/fhir/metadata", headers=forged).status_code == 200


def test_rate_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="not a rate"):
        Settings(rate_limit_client="plenty")
    with pytest.raises(ValueError):
        Settings(trusted_proxies="10.0.0.0/33")
    assert Settings(trusted_proxies="10.0.0.0/8, ::1").trusted_proxies == ["10.0.0.0/8", "::1"]
    with pytest.raises(ValueError, match="memory:// or a redis"):
        build_rate_limiter(Settings(rate_limit_storage="memcached://x"))


# -- Redis: shared by every process -----------------------------------------------------------
def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


needs_redis = pytest.mark.skipif(not _redis_up(), reason="no Redis at 127.0.0.1:6379")


@needs_redis
async def test_redis_budgets_are_shared_between_processes() -> None:
    config = RateLimitConfig(storage=REDIS_URL, client="25/minute", ip="3/minute", login="2/hour")
    first, second = RateLimiter(config), RateLimiter(config)
    client, address = f"app-{uuid.uuid4().hex}", f"2001:db8:{uuid.uuid4().int % 65000:x}::1"
    try:
        await first.check_client(client, "write")
        state = await second.check_client(client, "write")
        assert state.remaining == 5 and state.policy == "client"
        error = await refused(first.check_client(client, "write"))
        assert int(error.headers["Retry-After"]) >= 1
        assert error.headers["RateLimit-Policy"] == '"client";q=25;w=60'
        await first.check_client(client, "search")  # 5 units still fit
        await first.check_ip(address, "login")  # login budgets are shared
        await second.check_ip(address, "login")
        error = await refused(first.check_ip(address, "login"))
        assert int(error.headers["Retry-After"]) > 60
        for _ in range(3):  # the general budget is counted per process by default
            await first.check_ip(address, "read")
            await second.check_ip(address, "read")
        await refused(first.check_ip(address, "read"))
    finally:
        await first.close()
        await second.close()


@needs_redis
async def test_the_address_budget_can_be_shared_too() -> None:
    config = RateLimitConfig(storage=REDIS_URL, ip="3/minute", shared_ip=True)
    first, second = RateLimiter(config), RateLimiter(config)
    address = f"2001:db8:{uuid.uuid4().int % 65000:x}::1"
    try:
        await first.check_ip(address, "read")
        await second.check_ip(address, "read")
        await first.check_ip(address, "read")
        error = await refused(second.check_ip(address, "read"))
        assert error.headers["RateLimit-Policy"] == '"ip";q=3;w=60'
    finally:
        await first.close()
        await second.close()


@needs_redis
def test_redis_over_the_app(tmp_path: Path) -> None:
    address = f"198.51.100.{uuid.uuid4().int % 250}"
    settings = {"rate_limit_storage": REDIS_URL, "rate_limit_login": "3/minute"}
    with (
        app_client(tmp_path / "a", address=address, **settings) as one,
        app_client(tmp_path / "b", address=address, **settings) as two,
    ):
        # Another test run may have used this address in the last minute: start clean.
        asyncio.run(_clear(f"ip-login/3/60:{address}"))
        assert one.post("/auth/login", data={"user": "a"}).status_code != 429
        assert two.post("/auth/login", data={"user": "a"}).status_code != 429
        assert one.post("/auth/login", data={"user": "a"}).status_code != 429
        response = two.post("/auth/login", data={"user": "a"})
        assert response.status_code == 429
        assert response.headers["ratelimit-policy"] == '"ip-login";q=3;w=60'
        assert one.get("/fhir/metadata").status_code == 200


async def _clear(key: str) -> None:
    shared = RateLimiter(RateLimitConfig(storage=REDIS_URL))
    try:
        await shared.storage.clear_sliding_window(key, 60)  # type: ignore[attr-defined]
    finally:
        await shared.close()


async def test_a_redis_outage_falls_back_to_counting_in_memory() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rl = RateLimiter(RateLimitConfig(storage=f"redis://127.0.0.1:{port}/0", client="2/minute"))
    try:
        await rl.check_client("app", "read")
        await rl.check_client("app", "read")
        await refused(rl.check_client("app", "read"))  # limits stay on, per process
    finally:
        await rl.close()
