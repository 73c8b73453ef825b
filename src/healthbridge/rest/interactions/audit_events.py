"""AuditEvent search and read, served from the audit trail (auditors only; the router checks).

``GET [base]/AuditEvent?patient=&agent=&type=&subtype=&action=&outcome=&date=ge..&date=le..
&_sort=date|-date&_count=&_total=`` (and ``POST [base]/AuditEvent/_search``) answers a
``searchset`` Bundle (https://hl7.org/fhir/R4/search.html) keyset-paged with ``next`` links;
``GET [base]/AuditEvent/[id]`` one event (https://hl7.org/fhir/R4/http.html#read). The search
parameters are R4's for AuditEvent (https://hl7.org/fhir/R4/auditevent.html#search):
``patient`` (``Patient/123`` or ``123``), ``agent`` (the user's fhirUser reference, or their
account name when they have none), ``type``/``subtype``/``action``/``outcome`` (tokens, code or
``system|code``), ``date`` (``recorded``; prefixes eq, ge, gt, le, lt). Commas are OR, repeats
AND. Any other parameter is refused (400): an auditor's question answered only in part would be
answered wrongly. The trail cannot be written or deleted through the API at all.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.fhir import jsonformat
from healthbridge.fhir.bundles import bundle, search_entry
from healthbridge.fhir.datetimes import period_micros
from healthbridge.fhir.errors import InvalidRequest, NotFound
from healthbridge.rest.context import RestContext
from healthbridge.rest.http import base_url, json_response
from healthbridge.rest.interactions.search import Params, page_links, request_params
from healthbridge.store.audit import AuditLog, AuditQuery

TOKENS = ("type", "subtype", "action", "outcome")
PAGING = frozenset({"_sort", "_count", "_cursor", "_total", "_format", "_pretty"})
ALLOWED = frozenset({"patient", "agent", "date", *TOKENS, *PAGING})
MAX_VALUES = 100
"""Most comma-separated values of one parameter."""


def _audit(ctx: RestContext) -> AuditLog:
    if ctx.audit is None:
        raise NotFound("This server keeps no audit trail", code="not-supported")
    return ctx.audit


def _patient(value: str) -> str:
    """``Patient/123``, ``http://host/fhir/Patient/123`` or ``123``: the id."""
    head, _, id = value.rpartition("/")
    if head and not head.endswith("Patient"):
        raise InvalidRequest(
            f"patient={value!r} is not a Patient reference", code="value", expression="patient"
        )
    return id


def _values(name: str, value: str) -> set[str]:
    parts = [v.strip() for v in value.split(",")]
    if not all(parts) or len(parts) > MAX_VALUES:
        raise InvalidRequest(
            f"{name}={value!r}: give 1-{MAX_VALUES} non-empty comma-separated values",
            code="value",
            expression=name,
        )
    if name == "patient":
        return {_patient(p) for p in parts}
    if name in TOKENS:
        return {p.rpartition("|")[2] for p in parts}
    return set(parts)


def _date(query: AuditQuery, value: str) -> AuditQuery:
    prefix, rest = (value[:2], value[2:]) if value[:2].isalpha() else ("eq", value)
    if prefix not in ("eq", "ge", "gt", "le", "lt"):
        raise InvalidRequest(
            f"date={value!r}: the prefix {prefix!r} is not supported (eq, ge, gt, le, lt)",
            code="not-supported",
            expression="date",
        )
    try:
        start, end = period_micros(rest)
    except ValueError:
        raise InvalidRequest(
            f"date={value!r} is not a FHIR date or dateTime", code="value", expression="date"
        ) from None
    since, before = query.since, query.before
    if prefix in ("eq", "ge", "gt"):
        low = end if prefix == "gt" else start
        since = low if since is None else max(since, low)
    if prefix in ("eq", "le", "lt"):
        high = start if prefix == "lt" else end
        before = high if before is None else min(before, high)
    return replace(query, since=since, before=before)


def _paging(ctx: RestContext, query: AuditQuery, name: str, value: str) -> AuditQuery:
    if name == "_sort":
        if value not in ("date", "-date"):
            raise InvalidRequest(
                f"_sort={value!r}: AuditEvents sort by date or -date", code="not-supported"
            )
        return replace(query, descending=value == "-date")
    if name == "_count":
        if not value.isdigit():
            raise InvalidRequest(f"_count={value!r} is not a count", code="value")
        count = min(int(value), ctx.limits.max_page_size)
        return replace(query, count=count, total=query.total or count == 0)
    if name == "_total":
        if value not in ("none", "estimate", "accurate"):
            raise InvalidRequest(f"_total={value!r}: none, estimate or accurate", code="value")
        return replace(query, total=value != "none")
    return query  # _cursor is read apart; _format and _pretty are the response's


def parse(ctx: RestContext, params: Params) -> AuditQuery | None:
    """The query of ``params``; None when repeats rule out every event."""
    query = AuditQuery(count=min(ctx.limits.default_page_size, ctx.limits.max_page_size))
    sets: dict[str, set[str]] = {}
    for name, value in params:
        if name not in ALLOWED:
            raise InvalidRequest(
                f"{name!r} is not an AuditEvent search parameter of this server (patient, "
                "agent, type, subtype, action, outcome, date, _sort, _count, _total)",
                code="not-supported",
                expression=name,
            )
        if name == "date":
            query = _date(query, value)
        elif name in PAGING:
            query = _paging(ctx, query, name, value)
        else:
            found = _values(name, value)
            sets[name] = sets[name] & found if name in sets else found
    if any(not values for values in sets.values()):
        return None
    chosen: dict[str, Any] = {name: tuple(sorted(values)) for name, values in sets.items()}
    return replace(query, **chosen)


async def search(ctx: RestContext, request: Request) -> Response:
    audit = _audit(ctx)
    params = await request_params(ctx, request)
    query = parse(ctx, params)
    cursor = next((v for k, v in reversed(params) if k == "_cursor"), None)
    base = base_url(request, ctx.limits)
    path = base + request.scope["path"].removeprefix("/fhir").rstrip("/").removesuffix("/_search")
    entries: list[dict[str, Any]] = []
    total: int | None = 0
    next_cursor = None
    if query is not None:
        page = await audit.search(query, cursor)
        entries = [
            search_entry(base, "AuditEvent", str(e.seq), e.content, "match") for e in page.events
        ]
        total, next_cursor = page.total, page.next_cursor
        if total is None and cursor is None and next_cursor is None:
            total = len(entries)  # the whole result is on this first page
    count = query.count if query is not None else 0
    links = page_links(path, params, count, cursor, next_cursor)
    return json_response(jsonformat.dumps(bundle("searchset", entries, links, total)), request)


async def read(ctx: RestContext, request: Request) -> Response:
    audit = _audit(ctx)
    id = request.path_params["id"]
    if not id.isdigit() or len(id) > 18:
        raise NotFound(f"AuditEvent {id} is not known")
    event = await audit.read(int(id))
    return json_response(event.content, request)
