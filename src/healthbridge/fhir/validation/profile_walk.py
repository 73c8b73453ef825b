"""One walk of an instance against a compiled profile: https://hl7.org/fhir/R4/profiling.html.

For every element the profile describes: cardinality (elements and slices), allowed types, the
value rules (fixed, pattern, bindings, limits: profile_values.py), reference targets,
invariants, the profiles of its type and must-support coverage; repeating elements are
partitioned into slices (slicing.py) first. Locations are FHIRPath expressions
(``Composition.section[2].entry[0]``), rendered only when an issue is reported. Results of
validating one value against one profile are memoised per run, so a Bundle entry matched by a
profile discriminator is not validated twice; so are invariant results per expression and node,
so profiles that share a base (the genomics Observations) do not re-run its invariants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from healthbridge.fhir.errors import Issue, Severity
from healthbridge.fhir.validation import slicing
from healthbridge.fhir.validation.elements import Node, Profile
from healthbridge.fhir.validation.fhirpath_invariants import Evaluations
from healthbridge.fhir.validation.instance import Loc, render
from healthbridge.fhir.validation.profile_bindings import Membership, binding_issue
from healthbridge.fhir.validation.profile_items import Item, collect
from healthbridge.fhir.validation.profile_values import check_value
from healthbridge.fhir.validation.resolution import Scope, literal_type


class Engine(Protocol):
    """What the walk needs from :class:`~healthbridge.fhir.validation.profiles.ProfileValidator`."""

    member: Membership

    def compiled(self, url: str) -> Profile | None: ...

    def profile_type(self, url: str) -> str | None: ...

    def is_base(self, url: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Ctx:
    """Where the walk is: the profile, the resolvable resources, %resource and %rootResource."""

    profile: Profile
    scope: Scope
    resource: Any
    root: Any


class Run:
    """The issues of validating one resource against one or more profiles."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.issues: list[Issue] = []
        self._memo: dict[tuple[int, str], list[Issue] | None] = {}
        self._where: dict[int, Loc] = {}
        self.evaluations = Evaluations()

    def report(self, severity: Severity, code: str, message: str, loc: Loc) -> None:
        self.issues.append(Issue(severity, code, message, (render(loc),)))

    # -- profiles ----------------------------------------------------------------------------

    def against(self, value: Any, loc: Loc, ctx: Ctx, profile: Profile) -> list[Issue]:
        """The issues of ``value`` against ``profile`` (memoised; cycles count as conforming)."""
        key = (id(value), profile.title)
        if key in self._memo:
            return self._memo[key] or []
        self._memo[key] = None
        saved, self.issues = self.issues, []
        try:
            self.root(value, loc, ctx, profile)
        finally:
            found, self.issues = self.issues, saved
        self._memo[key] = found
        return found

    def root(self, value: Any, loc: Loc, ctx: Ctx, profile: Profile) -> None:
        actual = value.get("resourceType") if isinstance(value, dict) else None
        is_resource = isinstance(actual, str)
        if (
            is_resource
            and actual != profile.type
            and profile.type not in ("Resource", "DomainResource")
        ):
            message = f"is a {actual}, but profile {profile.title} constrains {profile.type}"
            self.report("error", "invalid", message, loc)
            return
        here = Ctx(profile, ctx.scope, ctx.resource, ctx.root)
        self.item(Item(value, str(actual or profile.type), loc), profile.root, None, here)

    def conforms(self, value: object, type_code: str, url: str, ctx: Ctx) -> bool | None:
        """Whether ``value`` conforms to the profile ``url`` (None: the profile is unknown)."""
        wanted = self.engine.profile_type(url)
        if wanted is None:
            return None
        if (
            type_code
            and wanted.lower() != type_code.lower()
            and wanted not in ("Resource", "Element")
        ):
            return False
        if self.engine.is_base(url):
            return True
        profile = self.engine.compiled(url)
        if profile is None:
            return None
        loc = self._where.get(id(value), (None, type_code or wanted, -1))
        issues = self.against(value, loc, ctx, profile)
        return not any(i.severity in ("error", "fatal") for i in issues)

    def matcher(self, ctx: Ctx) -> slicing.Matcher:
        def resolve(reference: object) -> dict[str, Any] | None:
            target = ctx.scope.resolve(reference)
            if target is None:
                return None
            self._where[id(target[0])] = target[1]
            return target[0]

        def root(url: str) -> Node | None:
            profile = None if self.engine.is_base(url) else self.engine.compiled(url)
            return profile.root if profile is not None else None

        def bound(value: object, type_code: str, value_set: str) -> bool | None:
            found = binding_issue(value, type_code, "required", value_set, self.engine.member)
            return None if found is not None and found[0] != "error" else found is None

        return slicing.Matcher(resolve, lambda v, t, u: self.conforms(v, t, u, ctx), root, bound)

    # -- elements ----------------------------------------------------------------------------

    def item(self, item: Item, node: Node, fallback: Node | None, ctx: Ctx) -> None:
        value = item.value
        if isinstance(value, dict) and isinstance(value.get("resourceType"), str):
            ctx = self.enter(value, item.loc, ctx)
        if not self.check_type(item, node, ctx):
            return  # a value of the wrong type says nothing about the rest
        check_value(self.report, self.engine.member, item, node, ctx.profile.title)
        self.reference(item, node, ctx)
        self.invariants(item, node, ctx)
        self.type_profiles(item, node, ctx)
        if isinstance(value, dict) and (node.children or (fallback and fallback.children)):
            self.children(value, node, fallback, item.loc, ctx)

    def enter(self, resource: dict[str, Any], loc: Loc, ctx: Ctx) -> Ctx:
        scope = ctx.scope
        if resource.get("resourceType") == "Bundle":
            scope = scope.with_bundle(resource, loc)
        scope = scope.with_resource(resource, loc)
        root = ctx.root if loc[1] == "contained" and ctx.root is not None else resource
        return Ctx(ctx.profile, scope, resource, root)

    def children(
        self, obj: dict[str, Any], node: Node, fallback: Node | None, loc: Loc, ctx: Ctx
    ) -> None:
        names = list(node.children)
        if fallback is not None:
            names += [n for n in fallback.children if n not in node.children]
        for name in names:
            own = node.children.get(name)
            child = own if own is not None else fallback.children[name]  # type: ignore[union-attr]
            below = (
                fallback.children.get(name) if fallback is not None and own is not None else None
            )
            items = collect(obj, child, loc)
            for found in items:
                if isinstance(found.value, dict):
                    self._where[id(found.value)] = found.loc
            self.element(items, child, below, (loc, child.name.removesuffix("[x]"), -1), ctx)

    def element(
        self, items: list[Item], node: Node, fallback: Node | None, loc: Loc, ctx: Ctx
    ) -> None:
        self.cardinality(len(items), node, loc, ctx, unknown=0)
        if not items:
            if node.must_support:
                self.must_support(node, loc, ctx)
            return
        if node.slices:
            self.sliced(items, node, loc, ctx)
            return
        for found in items:
            self.item(found, node, fallback, ctx)

    def sliced(self, items: list[Item], node: Node, loc: Loc, ctx: Ctx) -> None:
        matcher = self.matcher(ctx)
        chosen = slicing.assign([(i.value, i.type) for i in items], node, matcher)
        unknown = chosen.count(slicing.UNKNOWN)
        for index, slice_node in enumerate(node.slices):
            count = chosen.count(index)
            self.cardinality(count, slice_node, loc, ctx, unknown)
            if count == 0 and slice_node.must_support:
                self.must_support(slice_node, loc, ctx)
        for found, index in zip(items, chosen, strict=True):
            if index >= 0:
                self.item(found, node.slices[index], node, ctx)
            else:
                self.item(found, node, None, ctx)
        self.slicing_rules(items, chosen, node, ctx)

    def slicing_rules(self, items: list[Item], chosen: list[int], node: Node, ctx: Ctx) -> None:
        rules = node.slicing.rules if node.slicing else "open"
        ordered = bool(node.slicing and node.slicing.ordered)
        seen_unmatched, last = False, -1
        for found, index in zip(items, chosen, strict=True):
            if index == slicing.NONE and rules == "closed":
                message = (
                    f"matches none of the slices of {node.id}, and the slicing is closed (profile "
                    f"{ctx.profile.title})"
                )
                self.report("error", "structure", message, found.loc)
            if index >= 0 and seen_unmatched and rules == "openAtEnd":
                message = (
                    f"slice {node.slices[index].slice_name} follows an element that matches no "
                    f"slice, but {node.id} is sliced openAtEnd"
                )
                self.report("error", "structure", message, found.loc)
            if index >= 0 and ordered and index < last:
                message = (
                    f"slice {node.slices[index].slice_name} is out of order: the slicing of "
                    f"{node.id} is ordered"
                )
                self.report("error", "structure", message, found.loc)
            seen_unmatched = seen_unmatched or index == slicing.NONE
            last = max(last, index)

    # -- checks ------------------------------------------------------------------------------

    def cardinality(self, count: int, node: Node, loc: Loc, ctx: Ctx, unknown: int) -> None:
        if node.inherited_cardinality and node.slice_name is None:
            return
        what = f"slice {node.slice_name!r} of {node.path}" if node.slice_name else node.path
        where = f"(profile {ctx.profile.title})"
        if count < node.min:
            if unknown:
                message = (
                    f"{what} needs at least {node.min} but {count} matched; {unknown} could not "
                    f"be matched (unresolvable references) {where}"
                )
                self.report("information", "informational", message, loc)
            else:
                message = f"{what} requires at least {node.min}, found {count} {where}"
                self.report("error", "required", message, loc)
        if node.max is not None and count > node.max:
            message = f"{what} allows at most {node.max}, found {count} {where}"
            self.report("error", "structure", message, loc)

    def must_support(self, node: Node, loc: Loc, ctx: Ctx) -> None:
        message = f"must-support element {node.id} is absent (profile {ctx.profile.title})"
        self.report("information", "informational", message, loc)

    def check_type(self, item: Item, node: Node, ctx: Ctx) -> bool:
        """False (and an error) when the value's type is not one the profile allows."""
        codes = node.type_codes()
        if not codes or not item.type or "Resource" in codes or "DomainResource" in codes:
            return True
        is_resource = isinstance(item.value, dict) and "resourceType" in item.value
        if not (node.name.endswith("[x]") or is_resource) or item.type in codes:
            return True
        message = (
            f"type {item.type} is not allowed for {node.id}: expected "
            f"{' or '.join(sorted(codes))} (profile {ctx.profile.title})"
        )
        self.report("error", "invalid", message, item.loc)
        return False

    def reference(self, item: Item, node: Node, ctx: Ctx) -> None:
        urls = [t for rule in node.types if rule.code == "Reference" for t in rule.targets]
        if not urls or not isinstance(item.value, dict):
            return
        types = {url: self.engine.profile_type(url) for url in urls}
        target = ctx.scope.resolve(item.value)
        actual = target[0].get("resourceType") if target else literal_type(item.value)
        if not isinstance(actual, str) or None in types.values():
            return
        allowed = sorted({t for t in types.values() if t})
        if actual not in allowed and "Resource" not in allowed:
            message = (
                f"a reference to a {actual} is not allowed by {node.id}: expected "
                f"{' or '.join(allowed)} (profile {ctx.profile.title})"
            )
            self.report("error", "invalid", message, item.loc)
            return
        candidates = [u for u, t in types.items() if t == actual]
        if target is None or any(self.engine.is_base(u) for u in candidates):
            return
        self.target_profiles(item, target[0], target[1], candidates, ctx)

    def target_profiles(
        self, item: Item, target: dict[str, Any], where: Loc, urls: list[str], ctx: Ctx
    ) -> None:
        first: Issue | None = None
        for url in urls:
            profile = self.engine.compiled(url)
            if profile is None:
                return
            errors = [i for i in self.against(target, where, ctx, profile) if i.severity == "error"]
            if not errors:
                return
            first = first or errors[0]
        if first is not None:
            message = (
                f"the target at {render(where)} conforms to none of {', '.join(urls)}: "
                f"{first.expression[0]}: {first.diagnostics}"
            )
            self.report("error", "invalid", message, item.loc)

    def invariants(self, item: Item, node: Node, ctx: Ctx) -> None:
        if not node.constraints:
            return
        value = item.value
        base = (
            value["resourceType"]
            if isinstance(value, dict) and "resourceType" in value
            else node.base_path
        )
        for constraint in node.constraints:
            outcome = self.evaluations.outcome(constraint, value, base, ctx.resource, ctx.root)
            if outcome.passed is False:
                message = f"{constraint.key}: {constraint.human}"
                self.report(constraint.severity, "invariant", message, item.loc)
            elif outcome.passed is None:
                message = (
                    f"invariant {constraint.key} could not be evaluated ({outcome.problem}); "
                    f"expression: {constraint.expression}"
                )
                self.report("warning", "invariant", message, item.loc)

    def type_profiles(self, item: Item, node: Node, ctx: Ctx) -> None:
        for rule in node.types:
            if not rule.profiles or rule.code == "Extension":
                continue
            if len(node.types) > 1 and rule.code != item.type:
                continue
            urls = [u for u in rule.profiles if not self.engine.is_base(u)]
            self.any_profile(item, urls, ctx)

    def any_profile(self, item: Item, urls: list[str], ctx: Ctx) -> None:
        results: list[list[Issue]] = []
        for url in urls:
            profile = self.engine.compiled(url)
            if profile is None:
                self.report(
                    "warning", "not-found", f"profile {url} is unknown: not checked", item.loc
                )
                return
            found = self.against(item.value, item.loc, ctx, profile)
            if not any(i.severity in ("error", "fatal") for i in found):
                self.issues.extend(found)
                return
            results.append(found)
        if results:
            self.issues.extend(results[0])
