"""PostgreSQL connection lost or unreachable: 503 with an OperationOutcome, nothing half-written,
and the server recovers (https://hl7.org/fhir/R4/http.html#2.21.0.4: 503 when the server cannot
serve the request now; http.html#transaction: all or nothing).

The app runs in process (the ``create_app`` the server runs, with its own pool of connections
named ``healthbridge``). The test kills those connections from the database side
(``pg_terminate_backend``), makes the database refuse or lose them, or relays them through a
TCP proxy that it cuts or freezes. Every request is bounded: a hang fails the test.

* mid-request: a write waits on a table lock the test holds, its connection is terminated: the
  answer is 503 and not one row of it exists; the same request then succeeds;
* a storm of terminations while creates, conditional creates, updates, transactions and
  searches run concurrently: every answer is 2xx or 503, and every resource is either wholly
  there (resource, history, outbox and index rows; found by search) or absent;
* unreachable: a database that refuses connections, a dropped database, a cut or a frozen
  network: 503, never 500 and never a hang; once the database is back, requests succeed.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from healthbridge.app import create_app
from healthbridge.settings import Settings
from healthbridge.store.sql import asyncpg_engine, asyncpg_pool, migrate
from healthbridge.store.sql.compiled import Statement
from healthbridge.store.sql.tables import metadata
from healthbridge.store.sql.text_index import TABLE as TEXT_TABLE
from healthbridge.store.sql.urls import parse_url
from tests.durability.proxy import Proxy
from tests.durability.server import (
    APPLICATION_NAME,
    admin_sql,
    database_name,
    terminate_server_connections,
)

REQUEST_S = 30.0
"""Bound on every request: a longer wait counts as a hang."""
KEY = "urn:connection-loss"
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
NOT_DATA = {"job", "audit_event", "audit_head", "record", "subscription_cursor"}
"""Jobs, the audit trail (which rightly records the failed request), auth state and the
subscription dispatcher's position in the outbox (it moves in the background as committed
events are read; the deliveries themselves are counted: a failed write must queue none)."""
COUNTED = [t.name for t in metadata.sorted_tables if t.name not in NOT_DATA] + [TEXT_TABLE]
Response = Any


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Api:
    """The in-process app; each request runs on a worker thread and must be answered within
    ``bound`` seconds."""

    def __init__(self, client: TestClient, bound: float = REQUEST_S) -> None:
        self.client = client
        self.bound = bound
        self.pool = ThreadPoolExecutor(16)

    def __call__(self, method: str, url: str, **options: Any) -> Response:
        started = time.monotonic()
        future = self.pool.submit(self.client.request, method, url, **options)
        try:
            return future.result(timeout=self.bound)
        except TimeoutError:
            elapsed = time.monotonic() - started
            raise AssertionError(f"{method} {url} hung: no answer in {elapsed:.0f} s") from None

    def ids(self, resource_type: str, identifier: str) -> list[str]:
        response = self("GET", f"/fhir/{resource_type}", params={"identifier": identifier})
        assert response.status_code == 200, response.text
        return [e["resource"]["id"] for e in response.json().get("entry", [])]


@contextmanager
def running_app(url: str, tmp_path: Path, bound: float = REQUEST_S) -> Iterator[Api]:
    settings = Settings(
        data_dir=tmp_path, access_log=False, database=url, log_level="error", no_auth=True
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        api = Api(client, bound)
        try:
            yield api
        finally:
            api.pool.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
def migrated(scratch_url: str) -> str:
    migrate(scratch_url)
    return scratch_url


@pytest.fixture
def api(migrated: str, tmp_path: Path) -> Iterator[Api]:
    with running_app(migrated, tmp_path) as running:
        yield running


# --- requests --------------------------------------------------------------------------------


def patient(tag: str, id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": KEY, "value": tag}],
    }
    if id is not None:
        body["id"] = id
    return body


def transaction(tag: str) -> dict[str, Any]:
    """Two Patients and an Observation about the first (http.html#transaction)."""
    first = f"urn:uuid:{uuid.uuid4()}"
    observation = {
        "resourceType": "Observation",
        "identifier": [{"system": KEY, "value": tag}],
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": first},
    }
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": first,
                "resource": patient(tag),
                "request": {"method": "POST", "url": "Patient"},
            },
            {"resource": patient(tag), "request": {"method": "POST", "url": "Patient"}},
            {"resource": observation, "request": {"method": "POST", "url": "Observation"}},
        ],
    }


def send(api: Api, kind: str, tag: str) -> Response:
    """One write of ``kind`` carrying the identifier ``KEY|tag``."""
    if kind == "create":
        return api("POST", "/fhir/Patient", json=patient(tag))
    if kind == "conditional-create":
        criteria = {"If-None-Exist": f"identifier={KEY}|{tag}"}
        return api("POST", "/fhir/Patient", json=patient(tag), headers=criteria)
    if kind == "update":
        return api("PUT", "/fhir/Patient/u", json=patient(tag, "u"))
    if kind == "patch":
        operation = {"op": "add", "path": "/identifier/-", "value": {"system": KEY, "value": tag}}
        return api("PATCH", "/fhir/Patient/u", content=json.dumps([operation]), headers=JSON_PATCH)
    if kind == "read":
        return api("GET", "/fhir/Patient/u")
    if kind == "search":
        return api("GET", "/fhir/Patient", params={"identifier": f"{KEY}|{tag}"})
    assert kind == "transaction"
    return api("POST", "/fhir", json=transaction(tag))


WRITES = ["create", "conditional-create", "update", "patch", "transaction"]
EXPECTED = {"transaction": {"Patient": 2, "Observation": 1}}
"""What a write of each kind stores under its tag (default: one Patient)."""


def stored_under(api: Api, kind: str, tag: str) -> dict[str, int]:
    kinds = EXPECTED.get(kind, {"Patient": 1})
    return {t: len(api.ids(t, f"{KEY}|{tag}")) for t in kinds}


def assert_unavailable(response: Response, what: str) -> None:
    assert response.status_code == 503, f"{what}: {response.status_code} {response.text}"
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome", what
    assert outcome["issue"][0]["code"] == "transient", what


# --- the database seen from outside ------------------------------------------------------------


def table_counts(url: str) -> dict[str, int]:
    selects = ", ".join(f"(SELECT count(*) FROM {name}) AS {name}" for name in COUNTED)
    return dict(admin_sql(f"SELECT {selects}", url=url)[0])


CONSISTENCY = """
SELECT
  (SELECT count(*) FROM resource r WHERE NOT EXISTS (SELECT 1 FROM resource_history h
     WHERE h.type = r.type AND h.id = r.id AND h.version_id = r.version_id)) AS without_history,
  (SELECT count(*) FROM resource_history h WHERE NOT EXISTS (SELECT 1 FROM resource r
     WHERE r.type = h.type AND r.id = h.id AND r.version_id >= h.version_id)) AS stray_history,
  (SELECT count(*) FROM resource_history h WHERE NOT EXISTS (SELECT 1 FROM outbox o
     WHERE o.type = h.type AND o.id = h.id AND o.version_id = h.version_id)) AS without_event,
  (SELECT count(*) FROM outbox) - (SELECT count(*) FROM resource_history) AS stray_events,
  (SELECT count(*) FROM resource r WHERE NOT r.deleted AND NOT EXISTS (SELECT 1
     FROM search_token t WHERE t.rkey = r.rkey)) AS unindexed,
  (SELECT count(*) FROM search_token t WHERE NOT EXISTS (SELECT 1 FROM resource r
     WHERE r.rkey = t.rkey AND NOT r.deleted)) AS stray_index
"""


def assert_consistent(url: str) -> None:
    """Each resource is whole: its current version has its history row and outbox event and
    its index rows, and no row belongs to a version that does not exist (every resource these
    tests write has an identifier, so a token index row)."""
    found = dict(admin_sql(CONSISTENCY, url=url)[0])
    assert found == dict.fromkeys(found, 0), found


@contextmanager
def outbox_locked(url: str) -> Iterator[None]:
    """Hold a lock that makes every write wait (EXCLUSIVE on the outbox: reads go on)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

    connection = run(asyncpg.connect(url, timeout=10))
    try:
        run(connection.execute("BEGIN; LOCK TABLE outbox IN EXCLUSIVE MODE"))
        yield
    finally:
        run(connection.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def wait_for_a_blocked_write(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        blocked = admin_sql(
            "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE NOT l.granted AND l.relation = 'outbox'::regclass "
            "AND a.application_name = $1",
            APPLICATION_NAME,
            url=url,
        )
        if blocked:
            return
        time.sleep(0.02)  # polling for the write to reach the lock, not a timing assertion
    raise AssertionError("the write never reached the outbox lock")


# --- mid-request -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", WRITES)
def test_connection_terminated_mid_write_gives_503_and_writes_nothing(
    api: Api, migrated: str, kind: str
) -> None:
    """A write whose connection is terminated while it runs (it waits on a lock, so it cannot
    have committed) is answered 503 with an OperationOutcome, and leaves not one row: no
    resource, history, outbox or index row, and a conditional create's named lock is gone
    with its transaction. The same request then succeeds, wholly."""
    assert api("PUT", "/fhir/Patient/u", json=patient("before", "u")).status_code == 201
    before = table_counts(migrated)
    tag = f"{kind}-{uuid.uuid4().hex[:8]}"
    with outbox_locked(migrated):
        pending = api.pool.submit(send, api, kind, tag)
        wait_for_a_blocked_write(migrated)
        assert terminate_server_connections(database_name(migrated)) >= 1
        response = pending.result(timeout=REQUEST_S)  # answered while the lock is still held
    assert_unavailable(response, kind)
    assert table_counts(migrated) == before
    assert stored_under(api, kind, tag) == dict.fromkeys(EXPECTED.get(kind, {"Patient": 1}), 0)

    again = send(api, kind, tag)
    assert again.is_success, again.text
    assert stored_under(api, kind, tag) == EXPECTED.get(kind, {"Patient": 1})
    assert_consistent(migrated)


def recovered(api: Api) -> None:
    """Wait (bounded) until ``/readyz`` says the database answers again."""
    for _ in range(50):
        if api("GET", "/readyz").status_code == 200:
            return
        time.sleep(0.05)  # polling for readiness, not a timing assertion
    raise AssertionError("the server did not recover")


def test_connections_terminated_right_before_requests(api: Api, migrated: str) -> None:
    """Connections the database dropped while idle: the next request is 2xx, or 503 when it
    took a dead connection (never 500, never a hang), and its write is whole or absent; the
    server then recovers and the same kind of request succeeds (http.html: a read, a search
    and each kind of write)."""
    assert api("PUT", "/fhir/Patient/u", json=patient("before", "u")).status_code == 201
    database = database_name(migrated)
    for kind in [*WRITES, "read", "search"]:
        assert terminate_server_connections(database) >= 1
        first = send(api, kind, f"{kind}-first")
        if first.status_code == 503:
            assert_unavailable(first, kind)
        else:
            assert first.is_success, f"{kind}: {first.status_code} {first.text}"
        if kind in WRITES and kind not in ("update", "patch"):
            whole = EXPECTED.get(kind, {"Patient": 1})
            stored = stored_under(api, kind, f"{kind}-first")
            assert (
                stored == whole if first.is_success else stored in (whole, dict.fromkeys(whole, 0))
            )
        recovered(api)
        again = send(api, kind, f"{kind}-again")
        assert again.is_success, f"{kind}: {again.status_code} {again.text}"
    assert_consistent(migrated)


def test_storm_of_terminations_during_concurrent_writes(api: Api, migrated: str) -> None:
    """Connections terminated again and again while writes and searches run: every answer is
    2xx or 503 (never 500, never a hang); afterwards every write answered 2xx is wholly there,
    every other one wholly there or wholly absent, and the server serves requests again."""
    database = database_name(migrated)
    for n in range(6):
        assert api("PUT", f"/fhir/Patient/s{n}", json=patient(f"s{n}-0", f"s{n}")).is_success
    done = threading.Event()
    terminated = 0

    def terminate() -> None:
        nonlocal terminated
        rng = random.Random()
        while not done.is_set():
            terminated += terminate_server_connections(database)
            time.sleep(rng.uniform(0.05, 0.25))  # spreads the terminations over the load

    def client(n: int) -> list[tuple[str, str, Response]]:
        results = []
        for step in range(15):
            kind = ["create", "conditional-create", "update", "transaction", "search"][step % 5]
            tag = f"c{n}-{step}"
            if kind == "update":
                response = api("PUT", f"/fhir/Patient/s{n}", json=patient(tag, f"s{n}"))
            else:
                response = send(api, kind, tag)
            results.append((kind, tag, response))
        return results

    killer = threading.Thread(target=terminate, daemon=True)
    killer.start()
    try:
        with ThreadPoolExecutor(6) as clients:
            outcomes = [
                r for f in [clients.submit(client, n) for n in range(6)] for r in f.result()
            ]
    finally:
        done.set()
        killer.join(timeout=30)
    statuses = [response.status_code for _, _, response in outcomes]
    assert terminated > 0 and 503 in statuses, "the terminations never hit a request"

    assert set(statuses) <= {200, 201, 503}, [
        (kind, r.status_code, r.text[:300])
        for kind, _, r in outcomes
        if r.status_code >= 500 and r.status_code != 503
    ]
    for kind, _, response in outcomes:
        if response.status_code == 503:
            assert_unavailable(response, kind)

    for kind in ("create", "conditional-create", "transaction"):  # the server recovered
        assert send(api, kind, f"after-{kind}").is_success
    for kind, tag, response in outcomes:
        if kind in ("search", "update"):
            continue
        stored = stored_under(api, kind, tag)
        whole, none = EXPECTED.get(kind, {"Patient": 1}), dict.fromkeys(stored, 0)
        if response.is_success:
            assert stored == whole, (kind, tag)
        else:
            assert stored in (whole, none), (kind, tag, stored)
    for n in range(6):  # updates: consecutive versions, each one a body that was sent
        history = api("GET", f"/fhir/Patient/s{n}/_history", params={"_count": "100"}).json()
        versions = [int(e["resource"]["meta"]["versionId"]) for e in history["entry"]]
        assert versions == list(range(len(versions), 0, -1))
        acknowledged = {
            tag
            for kind, tag, r in outcomes
            if kind == "update" and r.is_success and tag.startswith(f"c{n}-")
        }
        tags = [e["resource"]["identifier"][0]["value"] for e in history["entry"]]
        assert acknowledged <= set(tags)
        assert len(tags) == len(set(tags))
    assert_consistent(migrated)


# --- unreachable -----------------------------------------------------------------------------


def all_requests(api: Api, tag: str) -> dict[str, Response]:
    return {kind: send(api, kind, f"{tag}-{kind}") for kind in [*WRITES, "read", "search"]}


def test_a_database_refusing_connections_gives_503_then_recovers(api: Api, migrated: str) -> None:
    """PostgreSQL up but the database not accepting connections (``ALLOW_CONNECTIONS false``,
    as during maintenance): every request is 503 with an OperationOutcome, ``/readyz`` 503;
    when it accepts them again, the same requests succeed."""
    assert api("PUT", "/fhir/Patient/u", json=patient("before", "u")).status_code == 201
    database = database_name(migrated)
    admin_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    try:
        terminate_server_connections(database)
        for what, response in all_requests(api, "refused").items():
            assert_unavailable(response, what)
        assert api("GET", "/readyz").status_code == 503
    finally:
        admin_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    for what, response in all_requests(api, "back").items():
        assert response.is_success, f"{what}: {response.status_code} {response.text}"
    assert api("GET", "/readyz").status_code == 200
    assert_consistent(migrated)


def test_a_dropped_database_gives_503(api: Api, migrated: str) -> None:
    """The database dropped under the running server (its connections terminated with it):
    every request is 503 with an OperationOutcome, quickly, and ``/readyz`` says 503."""
    assert api("PUT", "/fhir/Patient/u", json=patient("before", "u")).status_code == 201
    admin_sql(f'DROP DATABASE "{database_name(migrated)}" WITH (FORCE)')
    for what, response in all_requests(api, "dropped").items():
        assert_unavailable(response, what)
    assert api("GET", "/readyz").status_code == 503


@pytest.fixture
def proxy(migrated: str) -> Iterator[Proxy]:
    url = make_url(migrated)
    relay = Proxy((url.host or "127.0.0.1", url.port or 5432))
    relay.start()
    yield relay
    relay.close()


def through(proxy: Proxy, url: str) -> str:
    return make_url(url).set(port=proxy.port).render_as_string(hide_password=False)


def test_a_cut_network_gives_503_then_recovers(proxy: Proxy, migrated: str, tmp_path: Path) -> None:
    """PostgreSQL unreachable: the connections in use reset without a word and new ones
    refused: 503 for every request; once it is reachable again, requests succeed."""
    with running_app(through(proxy, migrated), tmp_path) as api:
        assert api("PUT", "/fhir/Patient/u", json=patient("before", "u")).status_code == 201
        proxy.cut()
        for what, response in all_requests(api, "cut").items():
            assert_unavailable(response, what)
        assert api("GET", "/readyz").status_code == 503
        proxy.restore()
        for what, response in all_requests(api, "back").items():
            assert response.is_success, f"{what}: {response.status_code} {response.text}"
    assert_consistent(migrated)


FROZEN_TIMEOUT_S = 1.0


def test_a_frozen_network_gives_503_not_a_hang(
    proxy: Proxy, migrated: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL unreachable the worst way: packets vanish, nothing is refused or reset. A
    statement on a connection that was open must not wait forever: the pool's command timeout
    (here shortened, as the connect timeout) turns it into 503, the connection is dropped, and
    requests succeed again once the network is back."""
    monkeypatch.setattr(asyncpg_pool, "COMMAND_TIMEOUT_S", FROZEN_TIMEOUT_S)
    monkeypatch.setattr(asyncpg_engine, "CONNECT_TIMEOUT_S", FROZEN_TIMEOUT_S)
    bound = 10 * FROZEN_TIMEOUT_S + 5
    with running_app(through(proxy, migrated), tmp_path, bound) as api:
        try:
            assert api("PUT", "/fhir/Patient/u", json=patient("before", "u")).status_code == 201
            proxy.freeze()
            for kind in ["transaction", "read", "create"]:  # the first on the open connection
                assert_unavailable(send(api, kind, f"frozen-{kind}"), kind)
            assert api("GET", "/readyz").status_code == 503
        finally:
            proxy.restore()
        for what, response in all_requests(api, "back").items():
            assert response.is_success, f"{what}: {response.status_code} {response.text}"
    assert_consistent(migrated)


def termination_notice() -> bytes:
    """The ErrorResponse PostgreSQL sends before it closes a terminated backend's socket
    (https://www.postgresql.org/docs/current/protocol-message-formats.html, SQLSTATE 57P01)."""
    fields = b"".join(
        code + text.encode() + b"\0"
        for code, text in [
            (b"S", "FATAL"),
            (b"V", "FATAL"),
            (b"C", "57P01"),
            (b"M", "terminating connection due to administrator command"),
        ]
    )
    body = fields + b"\0"
    return b"E" + (len(body) + 4).to_bytes(4, "big") + body


def test_an_idle_connection_told_of_its_termination_is_not_used(migrated: str) -> None:
    """The server's termination notice reached an idle connection but its close has not yet:
    asyncpg then refuses every statement on it ("another operation is in progress") although
    it does not count as closed. The next read, write, snapshot and unit of work each send
    nothing on it and succeed on another connection (before, each answered 503 although the
    database was up: seen in CI right after recovery)."""
    select_one = Statement("SELECT 1", (), {})

    async def stale(engine: asyncpg_engine.AsyncpgEngine) -> None:
        connection = await engine._connections.checkout()
        await engine._connections.checkin(connection)  # idle, kept for the next task
        connection._protocol.data_received(termination_notice())  # its close is still to come

    async def scenario() -> None:
        engine = await asyncpg_engine.AsyncpgEngine.open(parse_url(migrated), 4)
        try:
            await stale(engine)
            assert await engine.fetch_one(select_one, ()) is not None
            await stale(engine)
            assert await engine.write_one(lambda held: held.fetch_one(select_one, ())) is not None
            await stale(engine)
            async with engine.snapshot() as reader:
                assert await reader.fetch_one(select_one, ()) is not None
            await stale(engine)
            async with engine.unit_of_work() as session:
                assert await session.fetch_one(select_one, ()) is not None
        finally:
            await engine.close()

    asyncio.run(scenario())
