"""Token index values: https://hl7.org/fhir/R4/search.html#token.

Per the token table: a code/string/uri/id is a bare code; a Coding gives ``system|code`` with its
``display`` as text; a CodeableConcept one row per coding plus its ``text``; an Identifier
``system|value`` with ``type.text`` as text and each ``type.coding`` for ``:of-type``
(https://hl7.org/fhir/R4/search.html#modifiers); a ContactPoint its ``value``; a boolean
``true``/``false``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from healthbridge.fhir.search.values import TokenValue

_CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def coding_value(coding: dict[str, Any], text: str | None = None) -> TokenValue | None:
    code, system = _str(coding.get("code")), _str(coding.get("system"))
    if code is None and system is None:
        return None
    return TokenValue(system, code, text or _str(coding.get("display")))


def codeable_concept_values(concept: dict[str, Any]) -> list[TokenValue]:
    out = [
        value
        for coding in concept.get("coding", ())
        if isinstance(coding, dict) and (value := coding_value(coding)) is not None
    ]
    text = _str(concept.get("text"))
    if text is not None:
        out.append(TokenValue(None, None, text))
    return out


def identifier_values(identifier: dict[str, Any]) -> list[TokenValue]:
    system, value = _str(identifier.get("system")), _str(identifier.get("value"))
    if value is None and system is None:
        return []
    kind = identifier.get("type")
    kind = kind if isinstance(kind, dict) else {}
    text = _str(kind.get("text"))
    codings = [c for c in kind.get("coding", ()) if isinstance(c, dict)]
    if not codings:
        return [TokenValue(system, value, text)]
    return [
        TokenValue(system, value, text, _str(c.get("system")), _str(c.get("code"))) for c in codings
    ]


def _shape(node: dict[str, Any], hint: str | None) -> str:
    if hint in ("CodeableConcept", "Coding", "Identifier", "ContactPoint"):
        return hint
    if "coding" in node or set(node) <= {"text", "id", "extension"}:
        return "CodeableConcept"
    if "code" in node:
        return "Coding"
    if node.get("system") in _CONTACT_SYSTEMS or "rank" in node:
        return "ContactPoint"
    return "Identifier"


def token_values(node: Any, hint: str | None = None) -> list[TokenValue]:
    """Token rows of one selected element (``hint``: its FHIR type when known)."""
    if isinstance(node, bool):
        return [TokenValue(None, "true" if node else "false")]
    if isinstance(node, str):
        return [TokenValue(None, node)]
    if isinstance(node, int | Decimal):
        return [TokenValue(None, str(node))]
    if not isinstance(node, dict):
        return []
    shape = _shape(node, hint)
    if shape == "CodeableConcept":
        return codeable_concept_values(node)
    if shape == "Coding":
        value = coding_value(node)
        return [value] if value else []
    if shape == "ContactPoint":
        contact = _str(node.get("value"))
        return [TokenValue(None, contact)] if contact is not None else []
    return identifier_values(node)
