"""Bundle assembly from stored bytes: https://hl7.org/fhir/R4/bundle.html.

Entries embed the stored resource bytes unchanged (``msgspec.Raw``), so a history or search page
is never decoded and re-encoded. Search results are ``searchset`` bundles
(https://hl7.org/fhir/R4/search.html#return): ``entry.search.mode`` says whether an entry is a
match, was added by ``_include``/``_revinclude``, or is an OperationOutcome about the search.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import msgspec

from healthbridge.fhir.meta import format_instant
from healthbridge.fhir.types import Resource

_STATUS = {"create": "201 Created", "update": "200 OK", "delete": "204 No Content"}
_METHOD = {"create": "POST", "update": "PUT", "delete": "DELETE"}


def history_entry(
    base: str,
    resource_type: str,
    id: str,
    version_id: int,
    method: str,
    last_updated: datetime,
    content: bytes,
) -> dict[str, Any]:
    """One ``Bundle.entry`` of a history bundle (http.html#history)."""
    entry: dict[str, Any] = {"fullUrl": f"{base}/{resource_type}/{id}"}
    if content:
        entry["resource"] = msgspec.Raw(content)
    entry["request"] = {
        "method": _METHOD[method],
        "url": resource_type if method == "create" else f"{resource_type}/{id}",
    }
    entry["response"] = {
        "status": _STATUS[method],
        "etag": f'W/"{version_id}"',
        "lastModified": format_instant(last_updated),
    }
    return entry


def search_entry(
    base: str, resource_type: str, id: str, content: bytes, mode: str
) -> dict[str, Any]:
    """One ``Bundle.entry`` of a searchset: ``mode`` is ``match`` or ``include``."""
    return {
        "fullUrl": f"{base}/{resource_type}/{id}",
        "resource": msgspec.Raw(content),
        "search": {"mode": mode},
    }


def outcome_entry(outcome: Resource) -> dict[str, Any]:
    """A searchset entry carrying an OperationOutcome about the search (``mode`` outcome)."""
    return {"fullUrl": f"urn:uuid:{uuid4()}", "resource": outcome, "search": {"mode": "outcome"}}


def bundle(
    bundle_type: str,
    entries: list[dict[str, Any]],
    links: list[tuple[str, str]],
    total: int | None = None,
) -> dict[str, Any]:
    """A Bundle with a fresh id and ``meta.lastUpdated`` = now."""
    out: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid4()),
        "meta": {"lastUpdated": format_instant(datetime.now(UTC))},
        "type": bundle_type,
    }
    if total is not None:
        out["total"] = total
    if links:
        out["link"] = [{"relation": rel, "url": url} for rel, url in links]
    if entries:
        out["entry"] = entries
    return out
