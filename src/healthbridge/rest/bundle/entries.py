"""The entries of a transaction or batch Bundle, read and checked before any of them runs
(https://hl7.org/fhir/R4/http.html#transaction, https://hl7.org/fhir/R4/bundle.html).

Each ``Bundle.entry.request`` names an interaction by method and a URL relative to the base
(``Patient``, ``Patient/123``, ``Patient?identifier=x``, ``Patient/123/_history/2``); an absolute
URL must start with this server's base. Problems are reported with the entry's path
(``Bundle.entry[3].request.url``) so that a client can find the entry at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from healthbridge.fhir.errors import FhirError, InvalidRequest, Issue, PayloadTooLarge
from healthbridge.rest import negotiation

Method = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]
METHODS: frozenset[str] = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"))
WRITES: frozenset[str] = frozenset(("POST", "PUT", "DELETE", "PATCH"))
ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
"""http.html#trules: deletes, then creates, then updates and patches, then reads."""


@dataclass(slots=True)
class Entry:
    """One ``Bundle.entry`` and what its request asks for."""

    index: int
    method: Method
    url: str  # relative to the base, as given (path and query)
    path: str  # the part before "?"
    query: str  # the part after "?", "" when none
    resource_type: str
    id: str | None  # from the URL (``Patient/123``)
    resource: Any  # the entry's resource, if any
    full_url: str | None
    if_match: int | None
    if_none_match: str | None
    if_modified_since: str | None
    if_none_exist: str | None

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"

    @property
    def conditional(self) -> bool:
        """A write decided by a search (If-None-Exist or ``[type]?criteria``)."""
        if self.method == "POST":
            return self.if_none_exist is not None
        return self.method in WRITES and self.id is None


def read_entries(bundle: Any, kind: str, base_url: str, max_entries: int) -> list[Entry]:
    """The entries of a ``transaction`` or ``batch`` Bundle, each checked."""
    raw = bundle.get("entry", [])
    if not isinstance(raw, list):
        raise InvalidRequest("Bundle.entry must be a list", expression="Bundle.entry")
    if len(raw) > max_entries:
        raise PayloadTooLarge(
            f"The {kind} has {len(raw)} entries; this server takes at most {max_entries} in "
            "one Bundle: split it (or ask the operator to raise HEALTHBRIDGE_MAX_BUNDLE_ENTRIES)"
        )
    return [_entry(index, item, base_url) for index, item in enumerate(raw)]


def _entry(index: int, item: Any, base_url: str) -> Entry:
    where = f"Bundle.entry[{index}]"
    if not isinstance(item, dict):
        raise InvalidRequest(f"{where} must be an object", expression=where)
    request = item.get("request")
    if not isinstance(request, dict):
        raise InvalidRequest(
            f"{where} has no request: every entry of a transaction or batch needs "
            "request.method and request.url",
            code="required",
            expression=f"{where}.request",
        )
    method = request.get("method")
    if method not in METHODS:
        raise InvalidRequest(
            f"{where}.request.method must be one of {', '.join(sorted(METHODS))}",
            code="value",
            expression=f"{where}.request.method",
        )
    url = _relative_url(request.get("url"), base_url, f"{where}.request.url")
    path, _, query = url.partition("?")
    segments = path.split("/")
    resource = item.get("resource")
    full_url = item.get("fullUrl")
    if full_url is not None and not isinstance(full_url, str):
        raise InvalidRequest(f"{where}.fullUrl must be a string", expression=f"{where}.fullUrl")
    entry = Entry(
        index=index,
        method=method,
        url=url,
        path=path,
        query=query,
        resource_type=segments[0],
        id=segments[1] if len(segments) == 2 and not segments[1].startswith(("_", "$")) else None,
        resource=resource,
        full_url=full_url,
        if_match=_if_match(request.get("ifMatch"), where),
        if_none_match=_text(request, "ifNoneMatch", where),
        if_modified_since=_text(request, "ifModifiedSince", where),
        if_none_exist=_text(request, "ifNoneExist", where),
    )
    if method in WRITES:
        _check_write(entry, segments)
    return entry


def _relative_url(url: Any, base_url: str, where: str) -> str:
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequest(f"{where} is required", code="required", expression=where)
    text = url.strip()
    if "://" in text:
        base = base_url.rstrip("/") + "/"
        if not base_url or not text.startswith(base):
            raise InvalidRequest(
                f"{where} {text!r} is not on this server; use a URL relative to the base "
                "(e.g. Patient/123)",
                code="not-supported",
                expression=where,
            )
        text = text[len(base) :]
    return text.lstrip("/")


def _text(request: dict[str, Any], name: str, where: str) -> str | None:
    value = request.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(
            f"{where}.request.{name} must be a string", expression=f"{where}.request.{name}"
        )
    return value


def _if_match(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(
            f'{where}.request.ifMatch must be a string such as W/"3"',
            expression=f"{where}.request.ifMatch",
        )
    return negotiation.parse_etag(value, f"{where}.request.ifMatch")


def _check_write(entry: Entry, segments: list[str]) -> None:
    """The URL shapes a write may have (http.html#transaction)."""
    where = entry.where
    shape_ok = (
        (entry.method == "POST" and len(segments) == 1 and not entry.query)
        or (entry.method != "POST" and len(segments) == 2 and entry.id is not None)
        or (entry.method != "POST" and len(segments) == 1 and bool(entry.query))
    )
    if not shape_ok or not entry.resource_type:
        expected = {
            "POST": "[type]",
            "PUT": "[type]/[id] or [type]?criteria",
            "DELETE": "[type]/[id] or [type]?criteria",
            "PATCH": "[type]/[id] or [type]?criteria",
        }[entry.method]
        raise InvalidRequest(
            f"{where}.request.url {entry.url!r} does not fit {entry.method}: expected {expected}",
            code="value",
            expression=f"{where}.request.url",
        )
    if entry.method in ("POST", "PUT", "PATCH") and not isinstance(entry.resource, dict):
        raise InvalidRequest(
            f"{where} needs a resource for {entry.method}",
            code="required",
            expression=f"{where}.resource",
        )
    if entry.method == "DELETE" and entry.resource is not None:
        raise InvalidRequest(
            f"{where} is a DELETE and must not carry a resource", expression=f"{where}.resource"
        )


def at(entry: Entry, error: FhirError) -> FhirError:
    """``error`` as the answer to a whole transaction: the same category (status), its
    messages prefixed with the entry, and its locations made relative to the Bundle."""
    where = entry.where
    issues = [
        Issue(
            issue.severity,
            issue.code,
            f"{where} ({entry.method} {entry.url}): {issue.diagnostics}",
            tuple(_within(where, entry.resource_type, e) for e in issue.expression) or (where,),
        )
        for issue in error.issues
    ]
    located = type(error)(issues=issues, headers=error.headers)
    located.__cause__ = error
    return located


def _within(where: str, resource_type: str, expression: str) -> str:
    """``Patient.name[0]`` in entry 3 -> ``Bundle.entry[3].resource.name[0]``."""
    if expression == resource_type or expression.startswith(f"{resource_type}."):
        return f"{where}.resource{expression[len(resource_type) :]}"
    return f"{where}: {expression}"
