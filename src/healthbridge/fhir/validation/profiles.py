"""Validation against profiles (constraining StructureDefinitions): https://hl7.org/fhir/R4/profiling.html.

``ProfileValidator(definitions, structures).validate(resource, profiles)`` checks a resource
against implementation-guide profiles, on top of the base validation
(:class:`~healthbridge.fhir.validation.Validator`), which it does not repeat. What is checked, with
which severity, is listed in ``docs/validation.md`` ("Profile validation"); in short: cardinality
of elements and slices, fixed and pattern values, value limits (``minValue[x]``, ``maxValue[x]``,
``maxLength``), slicing, types and reference targets, extensions against their definitions,
bindings of every strength and their ``maxValueSet``, must-support coverage
(information), FHIRPath invariants, UCUM codes, and the profiles of contained and bundled
resources that claim them in ``meta.profile``.

The validator is pure: StructureDefinitions come from the ``structures`` lookup, value set
membership from ``codes``, UCUM validity from ``units``. Each profile is compiled once (cached by
``url|version``) under a lock; compiled profiles are only read afterwards, so one validator may
be shared across threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import Issue
from healthbridge.fhir.types import Resource
from healthbridge.fhir.validation.elements import ANY_RESOURCE, Profile, build_tree
from healthbridge.fhir.validation.extensions import ExtensionPass
from healthbridge.fhir.validation.instance import Loc
from healthbridge.fhir.validation.profile_bindings import CodeCheck, Membership
from healthbridge.fhir.validation.profile_walk import Ctx, Run
from healthbridge.fhir.validation.resolution import Scope
from healthbridge.fhir.validation.snapshot import CORE, SnapshotError, snapshot_elements

StructureLookup = Callable[[str], Resource | None]
"""Canonical url (optionally ``url|version``) -> StructureDefinition, or None when unknown."""

_MISSING: Final = object()

__all__ = ["CodeCheck", "ProfileValidator", "StructureLookup"]


def _dedupe(issues: list[Issue]) -> list[Issue]:
    seen: set[Issue] = set()
    kept: list[Issue] = []
    for issue in issues:
        if issue not in seen:
            seen.add(issue)
            kept.append(issue)
    return kept


def claimed_profiles(resource: object) -> list[str]:
    """The canonical urls in ``meta.profile``."""
    meta = resource.get("meta") if isinstance(resource, dict) else None
    raw = meta.get("profile") if isinstance(meta, dict) else None
    return [p for p in raw if isinstance(p, str)] if isinstance(raw, list) else []


class ProfileValidator:
    """Validates resources against profiles looked up by canonical url.

    ``codes`` answers value set membership for value sets the R4 expansions do not cover (None:
    cannot tell); ``units`` says whether a UCUM code is valid.
    """

    def __init__(
        self,
        definitions: Definitions,
        structures: StructureLookup,
        codes: CodeCheck | None = None,
        *,
        units: Callable[[str], bool] | None = None,
    ) -> None:
        self.definitions = definitions
        self.member = Membership(definitions, codes)
        self.units = units
        self._structures = structures
        self._compiled: dict[str, Profile | None] = {}
        self._problems: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- definitions -------------------------------------------------------------------------

    def structure(self, url: str) -> dict[str, Any] | None:
        """The StructureDefinition for ``url`` (``url|version`` falls back to ``url``)."""
        for candidate in (url, url.partition("|")[0]):
            try:
                found = self._structures(candidate)
            except Exception:
                found = None
            if isinstance(found, dict) and found.get("resourceType") == "StructureDefinition":
                return found
        return None

    def is_base(self, url: str) -> bool:
        """True for the core definition of a type (``.../StructureDefinition/Patient``)."""
        plain = url.partition("|")[0]
        return plain.startswith(CORE) and plain[len(CORE) :] in self.definitions.types

    def profile_type(self, url: str) -> str | None:
        """The type a profile constrains (None when the profile is unknown)."""
        if self.is_base(url):
            return url.partition("|")[0][len(CORE) :]
        definition = self.structure(url)
        found = definition.get("type") if definition is not None else None
        return found if isinstance(found, str) else None

    def compiled(self, url: str) -> Profile | None:
        """The compiled profile (built once); None when unknown or it cannot be compiled."""
        found = self._compiled.get(url, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[return-value]
        with self._lock:
            if url not in self._compiled:
                self._compiled[url] = self._compile(url)
            return self._compiled[url]

    def problem(self, url: str) -> str:
        """Why ``url`` cannot be used to validate (after ``compiled`` returned None)."""
        return self._problems.get(url, "the profile is unknown")

    def _compile(self, url: str) -> Profile | None:
        definition = self.structure(url)
        if definition is None:
            self._problems[url] = "the profile is unknown"
            return None
        try:
            elements = snapshot_elements(definition, self.structure)
            root = build_tree(elements, self.definitions)
        except (SnapshotError, ValueError, KeyError, TypeError) as exc:
            self._problems[url] = f"it has no usable snapshot and none could be generated: {exc}"
            return None
        version = definition.get("version")
        return Profile(
            url=str(definition.get("url", url)),
            version=version if isinstance(version, str) else None,
            name=str(definition.get("name", url)),
            type=str(definition.get("type", root.path)),
            root=root,
        )

    # -- validation --------------------------------------------------------------------------

    def validate(self, resource: Resource, profiles: Sequence[str]) -> list[Issue]:
        """Every issue of ``resource`` against ``profiles`` and against the profiles claimed by
        the resources it contains or bundles. The resource's own ``meta.profile`` is not added
        implicitly: pass ``claimed_profiles(resource)`` for that."""
        rtype = resource.get("resourceType") if isinstance(resource, dict) else None
        loc: Loc = (None, rtype if isinstance(rtype, str) else "Resource", -1)
        run = Run(self)
        for url in profiles:
            profile = self.compiled(url)
            if profile is None:
                message = f"cannot validate against {url}: {self.problem(url)}"
                run.report("error", "not-supported", message, loc)
                continue
            ctx = Ctx(profile, Scope(), resource, resource)
            run.issues.extend(run.against(resource, loc, ctx, profile))
        if isinstance(resource, dict):
            self._nested(run, resource, loc, Scope(), 0)
            anchor = self.compiled(profiles[0]) if profiles else None
            ctx = Ctx(anchor or ANY_RESOURCE, Scope(), resource, resource)
            ExtensionPass(self, run, ctx).resource(resource, loc)
        return _dedupe(run.issues)

    def _nested(
        self, run: Run, resource: dict[str, Any], loc: Loc, scope: Scope, depth: int
    ) -> None:
        """Validate bundled and contained resources against the profiles they claim."""
        if depth > 16:
            return
        if resource.get("resourceType") == "Bundle":
            scope = scope.with_bundle(resource, loc)
        scope = scope.with_resource(resource, loc)
        for child, where in _members(resource, loc):
            for url in claimed_profiles(child):
                profile = self.compiled(url)
                if profile is None:
                    message = f"claimed profile {url} is not checked: {self.problem(url)}"
                    run.report("warning", "not-found", message, where)
                    continue
                ctx = Ctx(profile, scope, child, resource if where[1] == "contained" else child)
                run.issues.extend(run.against(child, where, ctx, profile))
            self._nested(run, child, where, scope, depth + 1)


def _members(resource: dict[str, Any], loc: Loc) -> list[tuple[dict[str, Any], Loc]]:
    """Contained resources and Bundle entry resources, with their locations."""
    found: list[tuple[dict[str, Any], Loc]] = []
    contained = resource.get("contained")
    for index, item in enumerate(contained if isinstance(contained, list) else ()):
        if isinstance(item, dict):
            found.append((item, (loc, "contained", index)))
    entries = resource.get("entry") if resource.get("resourceType") == "Bundle" else None
    for index, entry in enumerate(entries if isinstance(entries, list) else ()):
        inner = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(inner, dict):
            found.append((inner, ((loc, "entry", index), "resource", -1)))
    return found
