"""Base validation of R4 resources: https://hl7.org/fhir/R4/validation.html.

Checks structure and cardinality from the StructureDefinitions, the JSON representation rules
(https://hl7.org/fhir/R4/json.html), primitive datatypes, required bindings and the invariants
that need no FHIRPath engine. Profiles are not evaluated here.
"""

from __future__ import annotations

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import InvalidRequest, Issue
from healthbridge.fhir.validation.instance import InstanceWalk, NestingTooDeep
from healthbridge.fhir.validation.narrative import narrative_problem
from healthbridge.fhir.validation.primitives import (
    DEFAULT_MAX_NARRATIVE_LENGTH,
    DEFAULT_MAX_STRING_LENGTH,
    PrimitiveCheck,
    build_primitive_checks,
)
from healthbridge.fhir.validation.structure import Compiler

DEFAULT_MAX_DEPTH = 64


def _xhtml_check(string_check: PrimitiveCheck) -> PrimitiveCheck:
    def check(value: object) -> str | None:
        message = string_check(value)
        if message is not None:
            return message
        assert isinstance(value, str)
        problem = narrative_problem(value)
        return None if problem is None else f"{problem[0]}: {problem[1]}"

    return check


class Validator:
    """Validates resources (decoded by ``jsonformat.loads``) against the R4 base definitions.

    ``max_string_length`` bounds every string value (default 1 MB, datatypes.html);
    ``max_narrative_length`` bounds ``Narrative.div`` (xhtml is not a string type; default 4 MB,
    the spec's largest example narrative is 1.8 MB);
    ``max_depth`` bounds JSON object nesting, counted through contained resources, extensions and
    Bundle entries (the spec examples peak at 12).
    The structures are compiled once, in the constructor, and only read afterwards: share one
    validator across calls and threads.
    """

    def __init__(
        self,
        definitions: Definitions,
        *,
        max_string_length: int = DEFAULT_MAX_STRING_LENGTH,
        max_narrative_length: int = DEFAULT_MAX_NARRATIVE_LENGTH,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self.definitions = definitions
        self.max_depth = max_depth
        regexes = {
            name: t.regex for name, t in definitions.types.items() if t.kind == "primitive-type"
        }
        checks = build_primitive_checks(regexes, max_string_length, max_narrative_length)
        checks["xhtml"] = _xhtml_check(checks["xhtml"])
        self._compiler = Compiler(definitions, checks)

    def validate(self, resource: object, expected_type: str | None = None) -> list[Issue]:
        """Every issue (errors and warnings), each with severity, code and a FHIRPath
        ``expression`` like ``Patient.name[0].given[1]``. An empty list means valid."""
        walk = InstanceWalk(self.definitions, self._compiler, self.max_depth)
        try:
            walk.resource(resource, None, 1, expected_type, contained=False)
        except NestingTooDeep as deep:
            message = f"the resource nests objects more than {self.max_depth} levels deep"
            walk.issues.append(Issue("error", "structure", message, (deep.expression,)))
        except RecursionError:
            message = "the resource is nested too deeply to validate"
            root = resource.get("resourceType") if isinstance(resource, dict) else None
            where = root if isinstance(root, str) else "resourceType"
            walk.issues.append(Issue("error", "structure", message, (where,)))
        return walk.issues

    def check(self, resource: object, expected_type: str | None = None) -> None:
        """Raise InvalidRequest carrying every issue when at least one is an error."""
        issues = self.validate(resource, expected_type)
        errors = [issue for issue in issues if issue.severity in ("error", "fatal")]
        if errors:
            count = f"{len(errors)} error{'s' if len(errors) > 1 else ''}"
            raise InvalidRequest(f"The resource is not valid R4 ({count})", issues=issues)
