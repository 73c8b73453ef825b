"""``GET [base]/AuditEvent`` and ``GET [base]/AuditEvent/[id]`` served from the audit trail
(https://hl7.org/fhir/R4/auditevent.html#search, https://hl7.org/fhir/R4/search.html): searchset
Bundles by patient, agent, type, subtype and date, sorted and keyset-paged with next links;
unknown parameters refused. The handlers are mounted here on a bare app (the router adds the
auditor-only check)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from healthbridge.audit.events import AuditSource, change_entry, record_entries
from healthbridge.audit.records import AuditRecord, Who
from healthbridge.fhir.datetimes import from_micros
from healthbridge.fhir.errors import FhirError
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.rest.context import RestContext
from healthbridge.rest.errors import error_response
from healthbridge.rest.http import HttpLimits
from healthbridge.rest.interactions import audit_events
from healthbridge.store.repository import OutboxEvent, Repository
from tests.rest.conftest import fhir_service

KEY = b"k" * 32
SOURCE = AuditSource("http://testserver/fhir")
ALICE = Who(subject="alice", fhir_user="Practitioner/7", client_id="app", address="10.0.0.1")
BOB = Who(subject="bob", client_id="app")
T0 = 1_767_268_800_000_000  # 2026-01-01T12:00:00Z


def app_for(ctx: RestContext) -> Starlette:
    def route(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                response: Response = await handler(ctx, request)
            except FhirError as exc:
                return error_response(exc)
            return response

        return endpoint

    return Starlette(
        routes=[
            Route("/fhir/AuditEvent", route(audit_events.search), methods=["GET"]),
            Route("/fhir/AuditEvent/_search", route(audit_events.search), methods=["POST"]),
            Route("/fhir/AuditEvent/{id}", route(audit_events.read), methods=["GET"]),
        ]
    )


def context(repository: Repository, *, audit: bool = True) -> RestContext:
    service = fhir_service(repository)
    limits = HttpLimits(
        max_body_bytes=1 << 20, default_page_size=50, max_page_size=3, public_base_url=None
    )
    return RestContext(
        service=service,
        limits=limits,
        software_version="test",
        search=SearchParser(service.definitions),
        audit=repository.audit if audit else None,
    )


@pytest.fixture
async def client(repository: Repository) -> AsyncIterator[httpx2.AsyncClient]:
    ctx = context(repository)
    entries = []
    for n, (who, patient, interaction) in enumerate(
        [
            (ALICE, "p1", "read"),  # 1
            (ALICE, "p2", "search-type"),  # 2
            (BOB, "p1", "read"),  # 3
            (ALICE, None, "capabilities"),  # 4
            (ALICE, "p1", "vread"),  # 5
        ],
        start=1,
    ):
        record = AuditRecord(interaction=interaction, who=who, recorded=T0 + n * 60_000_000)
        entries += record_entries(record, SOURCE, [patient] if patient else [])
    change = OutboxEvent(
        1, "Patient", "p1", 1, "update", from_micros(T0 + 360_000_000), BOB.actor()
    )
    entries.append(change_entry(change, ["p1"], SOURCE))  # 6
    await repository.audit.append(entries, KEY)
    transport = httpx2.ASGITransport(app=app_for(ctx))
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


async def test_search_by_patient_pages_with_next_links(client: httpx2.AsyncClient) -> None:
    response = await client.get("/fhir/AuditEvent", params={"patient": "Patient/p1"})
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["type"] == "searchset"
    assert ids(bundle) == ["1", "3", "5"]  # _count capped at the server's page size, 3
    links = {link["relation"]: link["url"] for link in bundle["link"]}
    assert links["self"] == "http://testserver/fhir/AuditEvent?patient=Patient/p1&_count=3"
    assert bundle["entry"][0]["fullUrl"] == "http://testserver/fhir/AuditEvent/1"
    assert bundle["entry"][0]["search"] == {"mode": "match"}
    following = (await client.get(links["next"])).json()
    assert ids(following) == ["6"] and "total" not in following
    assert [link["relation"] for link in following["link"]] == ["self"]


async def test_search_by_agent_type_subtype_and_period(client: httpx2.AsyncClient) -> None:
    async def found(query: str) -> list[str]:
        response = await client.get(f"/fhir/AuditEvent?{query}")
        assert response.status_code == 200, response.text
        return ids(response.json())

    assert await found("agent=bob") == ["3", "6"]
    assert await found("agent=Practitioner/7&subtype=read,vread") == ["1", "5"]
    assert await found(
        "type=http://terminology.hl7.org/CodeSystem/audit-event-type|rest&_count=2"
    ) == ["1", "2"]
    assert await found("subtype=update&action=U") == ["6"]
    assert await found("date=ge2026-01-01T12:02:00Z&date=lt2026-01-01T12:04:00Z") == ["2", "3"]
    assert await found("date=2026-01-01T12:05") == ["5"]
    assert await found("date=gt2026-01-01T12:05:00Z") == ["6"]
    assert await found("patient=p1&patient=p2") == []  # repeats AND
    assert await found("patient=p1,p2&_sort=-date&_count=3") == ["6", "5", "3"]
    total = (await client.get("/fhir/AuditEvent?patient=p1&_total=accurate&_count=1")).json()
    assert total["total"] == 4 and ids(total) == ["1"]
    whole = (await client.get("/fhir/AuditEvent?agent=bob")).json()
    assert whole["total"] == 2  # the whole result fits on the first page


async def test_post_search_is_the_same(client: httpx2.AsyncClient) -> None:
    response = await client.post(
        "/fhir/AuditEvent/_search",
        content="agent=bob",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert ids(response.json()) == ["3", "6"]


@pytest.mark.parametrize(
    "query",
    [
        "name=x",
        "patient:missing=true",
        "_sort=recorded",
        "_count=-1",
        "_count=abc",
        "date=sa2026",
        "date=2026-13",
        "patient=Group/1",
        "agent=",
        "_cursor=garbage",
        "_total=maybe",
    ],
)
async def test_bad_parameters_are_refused(client: httpx2.AsyncClient, query: str) -> None:
    response = await client.get(f"/fhir/AuditEvent?{query}")
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_read_one_event(client: httpx2.AsyncClient) -> None:
    response = await client.get("/fhir/AuditEvent/6")
    assert response.status_code == 200
    event = response.json()
    assert (event["resourceType"], event["id"], event["action"]) == ("AuditEvent", "6", "U")
    assert response.headers["cache-control"] == "no-store"
    for missing in ("7", "abc", "0x1"):
        assert (await client.get(f"/fhir/AuditEvent/{missing}")).status_code == 404


async def test_a_server_without_a_trail_has_no_audit_events(repository: Repository) -> None:
    transport = httpx2.ASGITransport(app=app_for(context(repository, audit=False)))
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as http:
        assert (await http.get("/fhir/AuditEvent")).status_code == 404
        assert (await http.get("/fhir/AuditEvent/1")).status_code == 404
