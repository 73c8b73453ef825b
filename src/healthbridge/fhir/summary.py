"""``_summary`` and ``_elements``: https://hl7.org/fhir/R4/search.html#summary and
https://hl7.org/fhir/R4/search.html#elements.

Both return a subset of the resource and mark it with the ``SUBSETTED`` tag
(http://terminology.hl7.org/CodeSystem/v3-ObservationValue) so that nobody mistakes it for the
whole resource. ``resourceType``, ``id`` and ``meta`` are always kept, and so are mandatory
top-level elements where the spec asks for them.
"""

from __future__ import annotations

from collections.abc import Iterable

from healthbridge.fhir.types import Resource

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
SUMMARY_MODES = frozenset({"true", "false", "text", "data", "count"})
_ALWAYS = frozenset({"resourceType", "id", "meta"})


def _base_name(key: str) -> str:
    return key[1:] if key.startswith("_") else key


def _keep(resource: Resource, wanted: Iterable[str]) -> Resource:
    names = set(wanted)
    out: Resource = {}
    for key, value in resource.items():
        base = _base_name(key)
        if key in _ALWAYS or base in names or _is_choice_of(base, names):
            out[key] = value
    return _tag_subsetted(out)


def _is_choice_of(key: str, names: set[str]) -> bool:
    """``valueQuantity`` is kept when ``value`` (or ``value[x]``) is asked for."""
    for name in names:
        stem = name[:-3] if name.endswith("[x]") else name
        if key.startswith(stem) and key[len(stem) : len(stem) + 1].isupper():
            return True
    return False


def _tag_subsetted(resource: Resource) -> Resource:
    meta = dict(resource.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if t.get("code") != "SUBSETTED"]
    meta["tag"] = [*tags, SUBSETTED]
    resource["meta"] = meta
    return resource


def summarize(
    resource: Resource,
    mode: str,
    summary_elements: frozenset[str],
    mandatory_elements: frozenset[str],
) -> Resource:
    """Apply ``_summary=mode`` (``true``, ``text``, ``data``; ``false`` returns it unchanged)."""
    if mode == "false":
        return resource
    if mode == "true":
        return _keep(resource, summary_elements | mandatory_elements)
    if mode == "text":
        return _keep(resource, {"text"} | mandatory_elements)
    if mode == "data":
        return _keep(resource, (_base_name(k) for k in resource if _base_name(k) != "text"))
    raise ValueError(f"unknown _summary mode {mode!r}")


def select_elements(
    resource: Resource, elements: Iterable[str], mandatory_elements: frozenset[str]
) -> Resource:
    """Apply ``_elements=a,b``: listed top-level elements plus mandatory ones."""
    names = set()
    for raw in elements:
        name = raw.strip()
        if "." in name:  # accept the R5 form "Patient.name"
            name = name.split(".", 1)[1]
        if name:
            names.add(name)
    return _keep(resource, names | mandatory_elements)
