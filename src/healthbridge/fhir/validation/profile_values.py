"""The checks of one value against the element that describes it: https://hl7.org/fhir/R4/elementdefinition.html.

``fixed[x]`` and ``pattern[x]`` (https://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.fixed_x_),
the binding of any strength and its ``maxValueSet`` extension
(https://hl7.org/fhir/R4/extension-elementdefinition-maxvalueset.html), ``minValue[x]`` /
``maxValue[x]`` and ``maxLength`` (element_limits.py). A primitive's limits may be stated on its
``value`` child (``Coding.display.value``, as snapshots of the string type do); they apply to the
primitive. ``minValueSet`` states what a system must support, not what an instance may hold: it
is not checked here.
"""

from __future__ import annotations

from collections.abc import Callable

from healthbridge.fhir.errors import Severity
from healthbridge.fhir.validation.element_limits import problems
from healthbridge.fhir.validation.elements import Node
from healthbridge.fhir.validation.instance import Loc
from healthbridge.fhir.validation.patterns import matches_fixed, matches_pattern, show
from healthbridge.fhir.validation.profile_bindings import (
    Membership,
    binding_issue,
    max_value_set_issue,
)
from healthbridge.fhir.validation.profile_items import Item

Report = Callable[[Severity, str, str, Loc], None]


def check_value(report: Report, member: Membership, item: Item, node: Node, title: str) -> None:
    """Report what ``item`` breaks of ``node``'s value rules (``title`` names the profile)."""
    fixed_pattern(report, item, node, title)
    type_code = item.type or (node.types[0].code if node.types else "")
    if node.binding is not None and not node.inherited_binding:
        strength, value_set = node.binding
        found = binding_issue(item.value, type_code, strength, value_set, member)
        if found is not None:
            report(found[0], found[1], f"{node.id}: {found[2]}", item.loc)
    if node.max_value_set is not None and (node.binding or ("", ""))[0] != "required":
        found = max_value_set_issue(item.value, type_code, node.max_value_set, member)
        if found is not None:
            report(found[0], found[1], f"{node.id}: {found[2]}", item.loc)
    limits(report, item, node, type_code, title)


def fixed_pattern(report: Report, item: Item, node: Node, title: str) -> None:
    if node.fixed is not None and not matches_fixed(item.value, node.fixed[1]):
        message = (
            f"value {show(item.value)} does not equal the fixed value {show(node.fixed[1])} "
            f"required by {node.id} (profile {title})"
        )
        report("error", "value", message, item.loc)
    if node.pattern is not None and not matches_pattern(item.value, node.pattern[1]):
        message = (
            f"value {show(item.value)} does not match the pattern {show(node.pattern[1])} "
            f"required by {node.id} (profile {title})"
        )
        report("error", "value", message, item.loc)


def limits(report: Report, item: Item, node: Node, type_code: str, title: str) -> None:
    """``minValue[x]``, ``maxValue[x]`` and ``maxLength`` of the element (and of its primitive
    ``value`` child)."""
    owners = [node]
    inner = node.children.get("value") if not isinstance(item.value, dict) else None
    if inner is not None and inner.limits is not None:
        owners.append(inner)
    for owner in owners:
        if owner.limits is None:
            continue
        for problem in problems(item.value, type_code, owner.limits):
            message = f"{owner.id}: the value {problem} (profile {title})"
            report("error", "value", message, item.loc)
