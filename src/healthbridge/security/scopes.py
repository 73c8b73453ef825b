"""SMART on FHIR scopes: https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html.

A scope string is a space-separated list. Resource scopes grant interactions on a resource type
in a context:

* v2 (SMART 2.x): ``<patient|user|system>/<Type|*>.<cruds>[?param=value&...]``, the permission
  letters a non-empty subsequence of ``c r u d s`` in that order (create, read, update, delete,
  search), optionally narrowed by search parameters ("granular" scopes, e.g.
  ``patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory``);
* v1 (SMART 1.0): ``<context>/<Type|*>.<read|write|*>``, read being ``rs``, write ``cud`` and
  ``*`` all five.

The other scopes request launch context and identity: ``launch``, ``launch/patient``,
``launch/encounter``, ``openid``, ``fhirUser``, ``profile``, ``offline_access`` and
``online_access``. Scopes this server does not know are kept (an authorization server grants
only what it understands) but grant nothing.

Pure parsing and matching, no I/O; enforcement (the repository wrapper) uses :meth:`Scopes.grants`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl

Context = Literal["patient", "user", "system"]
Permission = Literal["c", "r", "u", "d", "s"]
PERMISSIONS = "cruds"
V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
IDENTITY_SCOPES = frozenset(("openid", "fhirUser", "profile", "offline_access", "online_access"))
LAUNCH_CONTEXTS = frozenset(("patient", "encounter"))
MAX_SCOPES = 100

_RESOURCE_SCOPE = re.compile(
    r"(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]{0,63})"
    r"\.(?P<permissions>[a-z]+|\*)(?:\?(?P<query>.+))?"
)


class InvalidScope(ValueError):
    """A scope that does not follow the SMART grammar (OAuth ``invalid_scope``)."""


@dataclass(frozen=True, slots=True)
class ResourceScope:
    """One resource scope: what it grants, on what, in which context."""

    context: Context
    resource_type: str  # a resource type, or "*" for every type
    permissions: frozenset[str]  # a subset of "cruds"
    filters: tuple[tuple[str, str], ...] = ()  # granular scope: search parameters that narrow
    text: str = ""
    v1: bool = False

    def covers(self, context: Context, resource_type: str, permission: str) -> bool:
        """True when this scope grants ``permission`` on ``resource_type`` in ``context``
        (before its filters, which the caller applies as search criteria)."""
        return (
            self.context == context
            and self.resource_type in ("*", resource_type)
            and permission in self.permissions
        )

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Scopes:
    """A parsed scope string."""

    resources: tuple[ResourceScope, ...] = ()
    launch: bool = False  # ``launch`` (EHR launch: context comes from the launch parameter)
    launch_contexts: frozenset[str] = frozenset()  # from ``launch/patient``, ``launch/encounter``
    identity: frozenset[str] = frozenset()  # openid, fhirUser, profile, offline/online access
    unknown: tuple[str, ...] = ()
    contexts: frozenset[str] = field(default=frozenset())  # contexts of the resource scopes

    def grants(self, context: Context, resource_type: str, permission: str) -> list[ResourceScope]:
        """The scopes that grant ``permission`` (one of ``cruds``) on ``resource_type`` in
        ``context``; empty when none does. Several granular scopes may grant it, each with its
        own filters (their union is what is granted)."""
        return [s for s in self.resources if s.covers(context, resource_type, permission)]

    def unrestricted(self, context: Context, resource_type: str, permission: str) -> bool:
        """True when a scope grants it without filters (not just on a subset)."""
        return any(not s.filters for s in self.grants(context, resource_type, permission))

    @property
    def offline(self) -> bool:
        return "offline_access" in self.identity

    def __str__(self) -> str:
        parts = [s.text for s in self.resources]
        parts += ["launch"] if self.launch else []
        parts += [f"launch/{c}" for c in sorted(self.launch_contexts)]
        parts += sorted(self.identity)
        parts += list(self.unknown)
        return " ".join(parts)


def parse_scopes(text: str, known_types: Collection[str] | None = None) -> Scopes:
    """The scopes of a space-separated scope string. ``known_types``, when given, are the
    resource types a resource scope may name. InvalidScope for a malformed resource scope."""
    words = [w for w in text.split(" ") if w]
    if len(words) > MAX_SCOPES:
        raise InvalidScope(f"at most {MAX_SCOPES} scopes may be requested at once")
    resources: list[ResourceScope] = []
    launch = False
    contexts: set[str] = set()
    identity: set[str] = set()
    unknown: list[str] = []
    for word in dict.fromkeys(words):  # repeats count once
        if word == "launch":
            launch = True
        elif word.startswith("launch/"):
            name = word.removeprefix("launch/")
            if name not in LAUNCH_CONTEXTS:
                raise InvalidScope(
                    f"{word!r}: launch context must be launch/patient or launch/encounter"
                )
            contexts.add(name)
        elif word in IDENTITY_SCOPES:
            identity.add(word)
        elif "/" in word and word.split("/", 1)[0] in ("patient", "user", "system"):
            resources.append(parse_resource_scope(word, known_types))
        else:
            unknown.append(word)
    return Scopes(
        tuple(resources),
        launch,
        frozenset(contexts),
        frozenset(identity),
        tuple(unknown),
        frozenset(s.context for s in resources),
    )


def parse_resource_scope(text: str, known_types: Collection[str] | None = None) -> ResourceScope:
    """One ``context/Type.permissions[?query]`` scope (v1 or v2)."""
    match = _RESOURCE_SCOPE.fullmatch(text)
    if match is None:
        raise InvalidScope(
            f"{text!r} is not a resource scope such as patient/Observation.rs or user/*.cruds"
        )
    resource_type = match["type"]
    if known_types is not None and resource_type != "*" and resource_type not in known_types:
        raise InvalidScope(f"{text!r}: {resource_type} is not a FHIR resource type")
    permissions, v1 = _permissions(match["permissions"], text)
    query = match["query"]
    if query is not None and v1:
        raise InvalidScope(f"{text!r}: only SMART v2 scopes (.rs, .cruds...) take parameters")
    filters = _filters(query, text) if query is not None else ()
    context: Context = match["context"]  # type: ignore[assignment]
    return ResourceScope(context, resource_type, permissions, filters, text, v1)


def _permissions(letters: str, text: str) -> tuple[frozenset[str], bool]:
    if letters in V1_PERMISSIONS:
        return frozenset(V1_PERMISSIONS[letters]), True
    position = 0
    for letter in letters:
        found = PERMISSIONS.find(letter, position)
        if found < 0:
            raise InvalidScope(
                f"{text!r}: permissions must be some of c, r, u, d, s in that order "
                "(e.g. .rs or .cruds), or read, write or * (SMART v1)"
            )
        position = found + 1
    return frozenset(letters), False


def _filters(query: str, text: str) -> tuple[tuple[str, str], ...]:
    try:
        pairs = parse_qsl(query, keep_blank_values=False, strict_parsing=True)
    except ValueError:
        pairs = []
    if not pairs or any(not name for name, _ in pairs):
        raise InvalidScope(f"{text!r}: the parameters after '?' are malformed")
    return tuple(pairs)


def narrowed(requested: Scopes, allowed: Iterable[str]) -> Scopes:
    """``requested`` without the resource scopes whose text is not in ``allowed`` (what a user
    deselected on the consent screen, or a client may not ask for)."""
    keep = set(allowed)
    resources = tuple(s for s in requested.resources if s.text in keep)
    return Scopes(
        resources,
        requested.launch,
        requested.launch_contexts,
        requested.identity,
        requested.unknown,
        frozenset(s.context for s in resources),
    )
