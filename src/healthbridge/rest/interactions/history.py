"""history: ``GET [base]/[type]/[id]/_history``, ``[base]/[type]/_history``, ``[base]/_history``
(https://hl7.org/fhir/R4/http.html#history) with ``_count``, ``_since``, ``_at`` and keyset
paging (the ``next`` link carries an opaque ``_cursor``; pages stay stable under concurrent writes).
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.fhir import jsonformat
from healthbridge.fhir.bundles import bundle, history_entry
from healthbridge.fhir.datetimes import parse_period
from healthbridge.fhir.errors import Gone, InvalidRequest
from healthbridge.rest.context import RestContext
from healthbridge.rest.http import base_url, json_response
from healthbridge.store.repository import HistoryQuery


def page_size(ctx: RestContext, raw: str | None) -> int:
    """``_count``: a non-negative integer, capped at the server maximum."""
    if raw is None:
        return ctx.limits.default_page_size
    if not raw.isdigit():
        raise InvalidRequest(
            f"_count={raw!r} must be a non-negative integer", code="value", expression="_count"
        )
    return min(int(raw[:9]), ctx.limits.max_page_size)


def _query(ctx: RestContext, request: Request) -> HistoryQuery:
    params = request.query_params
    since = at = None
    try:
        if "_since" in params:
            since = parse_period(params["_since"])[0]
        if "_at" in params:
            at = parse_period(params["_at"])[1]
    except ValueError as exc:
        name = "_since" if "_since" in params and since is None else "_at"
        raise InvalidRequest(f"{name}: {exc}", code="value", expression=name) from None
    return HistoryQuery(
        resource_type=request.path_params.get("type"),
        id=request.path_params.get("id"),
        since=since,
        at=at,
        count=page_size(ctx, params.get("_count")),
        cursor=params.get("_cursor"),
    )


async def _check_exists(ctx: RestContext, resource_type: str, id: str) -> None:
    """An empty instance history is 404 only when the resource never existed."""
    try:
        await ctx.service.read(resource_type, id)
    except Gone:
        return


async def handle(ctx: RestContext, request: Request) -> Response:
    query = _query(ctx, request)
    page = await ctx.service.history(query)
    if query.id is not None and query.resource_type and not page.entries:
        await _check_exists(ctx, query.resource_type, query.id)
    base = base_url(request, ctx.limits)
    entries = [
        history_entry(
            base, s.resource_type, s.id, s.version_id, s.method, s.last_updated, s.content
        )
        for s in page.entries
    ]
    path = base + request.scope["path"].removeprefix("/fhir")
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "_cursor"]
    self_query = urlencode(list(request.query_params.multi_items()))
    links = [("self", f"{path}?{self_query}" if self_query else path)]
    if page.next_cursor:
        links.append(("next", f"{path}?{urlencode([*kept, ('_cursor', page.next_cursor)])}"))
    body = bundle("history", entries, links, page.total)
    return json_response(jsonformat.dumps(body), request)
