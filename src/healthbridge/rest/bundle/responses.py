"""Entries of a ``transaction-response`` or ``batch-response`` Bundle
(https://hl7.org/fhir/R4/http.html#transaction-response, bundle.html#Bundle.entry.response).

Each entry's ``response`` carries the status, ``location`` (``Type/id/_history/n``), ``etag`` and
``lastModified`` of what was written. The resource itself is included only when the request
asked for it with ``Prefer: return=representation``; ``return=OperationOutcome`` puts an
OperationOutcome in ``response.outcome`` instead (http.html#ops).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import msgspec

from healthbridge.fhir.errors import FhirError
from healthbridge.fhir.meta import format_instant
from healthbridge.fhir.outcome import information, operation_outcome
from healthbridge.rest.errors import status_of
from healthbridge.store.repository import Applied, StoredResource


def status_line(code: int) -> str:
    """``201`` -> ``201 Created``."""
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def stored_entry(
    stored: StoredResource, status: int, prefer: str, base_url: str = ""
) -> dict[str, Any]:
    """The entry answering a write (or a conditional create's match) of ``stored``;
    ``fullUrl`` is absolute when the base URL is known."""
    response: dict[str, Any] = {"status": status_line(status)}
    if not stored.deleted:
        response["location"] = f"{stored.resource_type}/{stored.id}/_history/{stored.version_id}"
    response["etag"] = stored.etag
    response["lastModified"] = format_instant(stored.last_updated)
    entry: dict[str, Any] = {}
    if not stored.deleted:
        base = f"{base_url.rstrip('/')}/" if base_url else ""
        entry["fullUrl"] = f"{base}{stored.resource_type}/{stored.id}"
        if prefer == "representation":
            entry["resource"] = msgspec.Raw(stored.content)
        elif prefer == "OperationOutcome":
            response["outcome"] = information(
                f"{stored.resource_type}/{stored.id} is at version {stored.version_id}"
            )
    entry["response"] = response
    return entry


def write_entry(
    found: StoredResource | None, applied: Applied | None, prefer: str, base_url: str = ""
) -> dict[str, Any]:
    """The entry answering one write of a transaction (``found``: what an ifNoneExist
    matched, when nothing was written)."""
    if found is not None:  # http.html#ccreate: the match, as is
        return stored_entry(found, 200, prefer, base_url)
    if applied is None or applied.stored is None:  # a delete of nothing
        return {"response": {"status": status_line(204)}}
    stored = applied.stored
    if stored.deleted:
        return stored_entry(stored, 204, prefer, base_url)
    return stored_entry(stored, 201 if applied.created else 200, prefer, base_url)


def error_entry(error: FhirError) -> dict[str, Any]:
    """A batch entry that failed: its status and OperationOutcome (http.html#brules)."""
    return {
        "response": {
            "status": status_line(status_of(error)),
            "outcome": operation_outcome(error.issues),
        }
    }
