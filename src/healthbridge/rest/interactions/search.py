"""search: https://hl7.org/fhir/R4/http.html#search and https://hl7.org/fhir/R4/search.html.

``GET [base]/[type]?params``, ``GET [base]?params`` (system level, ``_type``), the compartment
search ``GET [base]/[Compartment]/[id]/[type]?params`` (compartmentdefinition.html), and POST on
each of those URLs followed by ``/_search`` with ``application/x-www-form-urlencoded`` parameters
(query-string parameters count too); POST and GET give the same results.

The answer is a ``searchset`` Bundle: ``total`` when known, a ``self`` link holding only the
parameters the server understood (``_count`` normalised to the page size used) and a ``next``
link carrying the opaque keyset ``_cursor``. Entries embed the stored bytes (search mode
``match`` or ``include``) unless ``_summary``/``_elements`` ask for a subset, which is tagged
SUBSETTED. Parameters the server does not know or support are ignored with a warning
OperationOutcome entry (mode ``outcome``), or rejected with 400 under ``Prefer: handling=strict``
(search.html#errors).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.fhir import jsonformat
from healthbridge.fhir.bundles import bundle, outcome_entry, search_entry
from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import InvalidRequest, Issue, NotFound, UnsupportedMediaType
from healthbridge.fhir.outcome import operation_outcome
from healthbridge.fhir.search.query import Clause, SearchQuery
from healthbridge.fhir.search.text import DESCRIPTIONS
from healthbridge.fhir.summary import select_elements, summarize
from healthbridge.rest.context import RestContext
from healthbridge.rest.http import base_url, json_response, read_body
from healthbridge.rest.search_terminology import expand_terminology
from healthbridge.rest.terminology.sources import Resolver
from healthbridge.store.repository import MAX_INCLUDED, SearchPage, StoredResource

FORM = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 2000
_LINK_SAFE = ":/|,$*"  # kept readable in links; they mean the same encoded or not

Params = list[tuple[str, str]]
FULL_TEXT = DESCRIPTIONS
"""Parameters without an expression that the server evaluates (search.html#text)."""


def handling_strict(prefer: str | None) -> bool:
    """``Prefer: handling=strict`` (search.html#errors); ``lenient`` is the default."""
    for token in (prefer or "").replace(";", ",").split(","):
        name, _, value = token.strip().partition("=")
        if name.strip().lower() == "handling":
            return value.strip().strip('"').lower() == "strict"
    return False


async def _form(ctx: RestContext, request: Request) -> Params:
    """The parameters of a ``POST .../_search`` body (http.html#search)."""
    body = await read_body(request, ctx.limits)
    if not body.strip():
        return []
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media != FORM:
        raise UnsupportedMediaType(
            f"POST _search takes its parameters as {FORM}, not {media or 'an unlabelled body'}"
        )
    try:
        return parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(f"The search form cannot be read: {exc}", code="structure") from None


async def request_params(ctx: RestContext, request: Request) -> Params:
    """Query-string parameters, then (for POST) the form body's, in order."""
    params = list(request.query_params.multi_items()) if request.scope["query_string"] else []
    if request.method == "POST":
        params += await _form(ctx, request)
    return params


def _compartment(ctx: RestContext, request: Request, resource_type: str) -> tuple[str, str] | None:
    owner = request.path_params.get("compartment")
    if owner is None:
        return None
    definitions = ctx.service.definitions
    if owner not in definitions.compartments:
        raise NotFound(
            f"{owner} is not a compartment; compartments are "
            f"{', '.join(sorted(definitions.compartments))}",
            code="not-supported",
        )
    id = request.path_params["id"]
    ctx.service.check_id(id)
    if not definitions.compartment_params(owner, resource_type):
        raise InvalidRequest(
            f"{resource_type} resources are not in the {owner} compartment "
            f"(https://hl7.org/fhir/R4/compartmentdefinition-{owner.lower()}.html)",
            code="not-supported",
        )
    return (owner, id)


def searchable(definitions: Definitions, clause: Clause) -> bool:
    """False for parameters the server cannot evaluate yet (``near``)."""
    if clause.param in FULL_TEXT:
        return True
    definition = definitions.search_parameters(clause.resource_type).get(clause.param)
    if definition is None or not definition.expression:
        return False
    return definition.type != "special" or definition.code == "near"


def _supported_only(definitions: Definitions, query: SearchQuery, strict: bool) -> SearchQuery:
    unsupported = [c for c in query.clauses if not searchable(definitions, c)]
    if not unsupported:
        return query
    if strict:
        name = unsupported[0].name
        raise InvalidRequest(
            f"Search parameter {name!r} is not supported by this server (Prefer: handling=strict)",
            code="not-supported",
            expression=name,
        )
    kept = tuple(c for c in query.clauses if c not in unsupported)
    return replace(query, clauses=kept, unknown=(*query.unknown, *(c.name for c in unsupported)))


def parse_query(ctx: RestContext, request: Request, params: Params) -> SearchQuery:
    """The checked query: type, compartment, parameters (strict or lenient)."""
    resource_type = request.path_params.get("type")
    compartment = _compartment(ctx, request, resource_type) if resource_type else None
    strict = handling_strict(request.headers.get("prefer"))
    query = ctx.search.parse(resource_type, params, strict=strict)
    query = _supported_only(ctx.search.definitions, query, strict)
    return replace(query, compartment=compartment)


def _link(path: str, params: Params) -> str:
    encoded = urlencode(params, quote_via=quote, safe=_LINK_SAFE)
    return f"{path}?{encoded}" if encoded else path


def links(
    path: str, query: SearchQuery, params: Params, cursor: str | None, page: SearchPage
) -> list[tuple[str, str]]:
    """``self`` (this page) and ``next``; unknown parameters are left out and ``_count`` is
    the page size actually used."""
    return page_links(path, params, query.count, cursor, page.next_cursor, query.unknown)


def page_links(
    path: str,
    params: Params,
    count: int,
    cursor: str | None,
    next_cursor: str | None,
    dropped: tuple[str, ...] = (),
) -> list[tuple[str, str]]:
    """The ``self`` and ``next`` links of a keyset-paged page: ``params`` less ``dropped``
    and the paging ones, ``_count`` the page size used, ``_cursor`` the page's position."""
    skip = {*dropped, "_cursor", "_count"}
    kept = [(k, v) for k, v in params if k not in skip] + [("_count", str(count))]
    out = [("self", _link(path, kept + ([("_cursor", cursor)] if cursor else [])))]
    if next_cursor:
        out.append(("next", _link(path, [*kept, ("_cursor", next_cursor)])))
    return out


def subset(definitions: Definitions, stored: StoredResource, query: SearchQuery) -> bytes:
    """The stored bytes, or the ``_summary``/``_elements`` subset (tagged SUBSETTED)."""
    mode = query.summary if query.summary != "false" else None
    if mode is None and not query.elements:
        return stored.content
    mandatory = definitions.mandatory_elements(stored.resource_type)
    resource = jsonformat.loads(stored.content)
    if mode is not None:
        summary = definitions.summary_elements(stored.resource_type)
        resource = summarize(resource, mode, summary, mandatory)
    else:
        resource = select_elements(resource, query.elements, mandatory)
    return jsonformat.dumps(resource)


def warnings(query: SearchQuery, page: SearchPage) -> list[Issue]:
    issues = [
        Issue(
            "warning",
            "not-supported",
            f"The search parameter {name!r} is unknown or not supported here and was ignored",
            (name,),
        )
        for name in dict.fromkeys(query.unknown)
    ]
    if page.included_truncated:
        issues.append(
            Issue(
                "warning",
                "incomplete",
                f"Only the first {MAX_INCLUDED} resources that _include/_revinclude add are "
                "returned; narrow the search or lower _count to get the rest",
            )
        )
    return issues


def _entries(
    ctx: RestContext, base: str, query: SearchQuery, page: SearchPage
) -> list[dict[str, Any]]:
    definitions = ctx.service.definitions
    entries = [
        search_entry(base, s.resource_type, s.id, subset(definitions, s, query), "match")
        for s in page.matches
    ]
    entries += [
        search_entry(base, s.resource_type, s.id, s.content, "include") for s in page.included
    ]
    issues = warnings(query, page)
    if issues:
        entries.append(outcome_entry(operation_outcome(issues)))
    return entries


async def handle(ctx: RestContext, request: Request) -> Response:
    resource_type = request.path_params.get("type")
    if resource_type is not None:
        ctx.service.check_type(resource_type)  # 404 before reading a body
    params = await request_params(ctx, request)
    try:
        query = parse_query(ctx, request, params)
        unknown = bool(query.unknown)
    except InvalidRequest:
        unknown = True
    if unknown and ctx.refresh_search is not None and await ctx.refresh_search():
        # A custom SearchParameter may have become searchable in another server process.
        query = parse_query(ctx, request, params)
    elif unknown:
        query = parse_query(ctx, request, params)
    cursor = next((v for k, v in reversed(params) if k == "_cursor"), None)
    terminology = ctx.terminology or Resolver(ctx.service.unrestricted, ctx.search)
    query = await expand_terminology(query, terminology)
    page = await ctx.service.repository.search(query, cursor)
    base = base_url(request, ctx.limits)
    path = base + request.scope["path"].removeprefix("/fhir").rstrip("/").removesuffix("/_search")
    body = bundle(
        "searchset",
        _entries(ctx, base, query, page),
        links(path, query, params, cursor, page),
        page.total,
    )
    return json_response(jsonformat.dumps(body), request)
