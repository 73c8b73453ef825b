"""SubscriptionTopic carried by an R4 ``Basic`` resource with cross-version extensions.

R4 has no SubscriptionTopic resource; the Subscriptions Backport IG
(https://hl7.org/fhir/uv/subscriptions-backport/components.html#subscription-topics) represents
one as a ``Basic`` whose ``code`` is ``SubscriptionTopic`` (system
``http://hl7.org/fhir/fhir-types``), claiming the profile
http://hl7.org/fhir/5.0/StructureDefinition/profile-SubscriptionTopic, with one extension per
element: ``http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.<element>``
(the IG's own example, Basic-r4-encounter-complete, also uses the ``4.3`` prefix for the
backbone elements). Backbone elements (``resourceTrigger``, ``canFilterBy`` ...) are complex
extensions whose sub-extensions carry the child element names as relative URLs; ``status`` is a
modifier extension.

:func:`topic_json` turns such a Basic into the R5 SubscriptionTopic JSON shape, which
:func:`healthbridge.subscriptions.topics.parse_topic` then reads like any other topic.
"""

from __future__ import annotations

from typing import Any, Final

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.types import Resource

PROFILE: Final = "http://hl7.org/fhir/5.0/StructureDefinition/profile-SubscriptionTopic"
PREFIXES: Final = (
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.",
    "http://hl7.org/fhir/4.3/StructureDefinition/extension-SubscriptionTopic.",
)
FHIR_TYPES: Final = "http://hl7.org/fhir/fhir-types"

#: Elements of SubscriptionTopic (and its backbone elements) that repeat (0..*).
REPEATING: Final = frozenset(
    {
        "identifier",
        "derivedFrom",
        "contact",
        "useContext",
        "jurisdiction",
        "resourceTrigger",
        "eventTrigger",
        "canFilterBy",
        "notificationShape",
        "supportedInteraction",
        "include",
        "revInclude",
        "modifier",
        "comparator",
    }
)


def is_topic_basic(resource: Resource) -> bool:
    """True when ``resource`` is a Basic that represents a SubscriptionTopic."""
    if resource.get("resourceType") != "Basic":
        return False
    profiles = (resource.get("meta") or {}).get("profile") or []
    if PROFILE in profiles:
        return True
    codings = (resource.get("code") or {}).get("coding") or []
    return any(
        isinstance(c, dict)
        and c.get("system") == FHIR_TYPES
        and c.get("code") == "SubscriptionTopic"
        for c in codings
    )


def topic_json(basic: Resource) -> Resource:
    """The SubscriptionTopic JSON that ``basic`` carries in its cross-version extensions."""
    if not is_topic_basic(basic):
        raise InvalidRequest(
            "A Basic resource is a SubscriptionTopic only with code "
            f"{FHIR_TYPES}|SubscriptionTopic or the profile {PROFILE}",
            expression="Basic.code",
        )
    out: Resource = {"resourceType": "SubscriptionTopic"}
    if isinstance(basic.get("id"), str):
        out["id"] = basic["id"]
    extensions = [*_list(basic.get("extension")), *_list(basic.get("modifierExtension"))]
    elements = _collect(extensions, "SubscriptionTopic", top=True)
    out.update(elements)
    return out


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _element(url: object, top: bool) -> str | None:
    """The element name an extension URL stands for (None for unrelated extensions)."""
    if not isinstance(url, str):
        return None
    if not top:
        return url if url and "/" not in url and ":" not in url else None
    for prefix in PREFIXES:
        if url.startswith(prefix):
            name = url.removeprefix(prefix)
            return name if name and "." not in name else None
    return None


def _collect(extensions: list[Any], path: str, top: bool) -> dict[str, Any]:
    """Group ``extensions`` by element name into the JSON shape of the element at ``path``."""
    grouped: dict[str, list[Any]] = {}
    for ext in extensions:
        if not isinstance(ext, dict):
            continue
        name = _element(ext.get("url"), top)
        if name is None:
            continue  # another extension (e.g. backport-related-query): not part of the topic
        grouped.setdefault(name, []).append(_value(ext, f"{path}.{name}"))
    out: dict[str, Any] = {}
    for name, values in grouped.items():
        if name in REPEATING:
            out[name] = values
        elif len(values) > 1:
            raise InvalidRequest(
                f"{path}.{name} may appear once, but the Basic has {len(values)} extensions for it",
                expression=f"{path}.{name}",
            )
        else:
            out[name] = values[0]
    return out


def _value(ext: dict[str, Any], path: str) -> Any:
    """The value of one extension: its ``value[x]``, or the element its sub-extensions make."""
    values = [key for key in ext if key.startswith("value")]
    nested = _list(ext.get("extension"))
    if len(values) == 1 and not nested:
        return ext[values[0]]
    if nested and not values:
        return _collect(nested, path, top=False)
    raise InvalidRequest(
        f"The extension for {path} needs either one value[x] or sub-extensions (ext-1)",
        expression=path,
    )
