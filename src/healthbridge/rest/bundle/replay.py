"""Read entries answered as requests of their own (https://hl7.org/fhir/R4/http.html#
transaction: "each entry ... is processed as if it were an individual interaction").

A GET or HEAD entry of a batch or transaction (read, vread, search, history, operations) is
turned into an HTTP request (URL, ``If-None-Match``/``If-Modified-Since`` from
``Bundle.entry.request``) and sent through the same router as any other request, so it gets
exactly the same checks and answers. Its response becomes
``Bundle.entry.response`` (status, location, etag, lastModified, the resource or an
OperationOutcome).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Scope

from healthbridge.fhir.errors import FhirError
from healthbridge.fhir.meta import format_instant
from healthbridge.rest import negotiation
from healthbridge.rest.bundle.entries import Entry
from healthbridge.rest.bundle.responses import status_line
from healthbridge.rest.errors import error_response
from healthbridge.rest.http import ACCESS, ENTRY, PREFIX

Dispatch = Callable[[Request], Awaitable[Response]]


def _scope(outer: Scope, entry: Entry) -> Scope:
    headers: list[tuple[bytes, bytes]] = [(b"accept", b"application/fhir+json")]
    for name, value in outer["headers"]:
        if name in (b"host", b"x-request-id"):
            headers.append((name, value))
    optional = {
        b"if-none-match": entry.if_none_match,
        b"if-modified-since": entry.if_modified_since,
    }
    headers += [(k, v.encode("latin-1")) for k, v in optional.items() if v is not None]
    path = PREFIX + entry.path
    return {
        "type": "http",
        "asgi": outer.get("asgi", {"version": "3.0"}),
        "http_version": outer.get("http_version", "1.1"),
        "scheme": outer.get("scheme", "http"),
        "server": outer.get("server"),
        "client": outer.get("client"),
        "root_path": "",
        "method": entry.method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": entry.query.encode(),
        "headers": headers,
        ACCESS: outer.get(ACCESS),  # the entry runs with the Bundle's sender's access
        ENTRY: True,
    }


async def replay(dispatch: Dispatch, outer: Request, entry: Entry) -> dict[str, Any]:
    """Send ``entry`` (a GET or HEAD) through the router; its response as a
    ``Bundle.entry``."""

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    request = Request(_scope(outer.scope, entry), receive)
    try:
        response = await dispatch(request)
    except FhirError as exc:
        response = error_response(exc)
    return _entry(response)


def _entry(response: Response) -> dict[str, Any]:
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in response.raw_headers}
    answer: dict[str, Any] = {"status": status_line(response.status_code)}
    if "location" in headers:
        answer["location"] = headers["location"]
    if "etag" in headers:
        answer["etag"] = headers["etag"]
    modified = negotiation.parse_http_date(headers.get("last-modified", ""))
    if modified is not None:
        answer["lastModified"] = format_instant(modified)
    entry: dict[str, Any] = {}
    content = bytes(getattr(response, "body", b"") or b"")
    if content and response.status_code >= 400:
        answer["outcome"] = msgspec.Raw(content)
    elif content:
        entry["resource"] = msgspec.Raw(content)
    entry["response"] = answer
    return entry
