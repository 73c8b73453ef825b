"""Server-managed resource metadata: https://hl7.org/fhir/R4/resource.html#Meta.

``meta.versionId`` and ``meta.lastUpdated`` belong to the server (http.html#versioning); any values
a client sends are replaced. The resource id is the one the server stores it under.
"""

from __future__ import annotations

from datetime import UTC, datetime

from healthbridge.fhir import jsonformat
from healthbridge.fhir.types import Resource


def format_instant(moment: datetime) -> str:
    """An R4 ``instant`` in UTC with microseconds, e.g. ``2026-11-25T21:45:06.123456Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def stamped(
    resource: Resource, resource_type: str, id: str, version_id: int, last_updated: datetime
) -> Resource:
    """A copy of ``resource`` with server id and meta, keys ordered resourceType, id, meta, rest."""
    meta = dict(resource.get("meta") or {})
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    out: Resource = {
        "resourceType": resource_type,
        "id": id,
        "meta": {"versionId": str(version_id), "lastUpdated": format_instant(last_updated), **meta},
    }
    for key, value in resource.items():
        if key not in ("resourceType", "id", "meta"):
            out[key] = value
    return out


def stamped_bytes(
    resource: Resource, resource_type: str, id: str, version_id: int, last_updated: datetime
) -> bytes:
    """The bytes a backend stores and every read returns verbatim."""
    return jsonformat.dumps(stamped(resource, resource_type, id, version_id, last_updated))
