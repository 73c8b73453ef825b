"""OperationOutcome construction: https://hl7.org/fhir/R4/operationoutcome.html."""

from __future__ import annotations

from collections.abc import Iterable

from healthbridge.fhir.errors import Issue
from healthbridge.fhir.types import Resource


def issue_json(issue: Issue) -> Resource:
    out: Resource = {"severity": issue.severity, "code": issue.code}
    if issue.diagnostics:
        out["diagnostics"] = issue.diagnostics
    if issue.expression:
        out["expression"] = list(issue.expression)
    return out


def operation_outcome(issues: Iterable[Issue]) -> Resource:
    """An OperationOutcome resource for ``issues``; an empty list yields an 'all OK' outcome."""
    rendered = [issue_json(i) for i in issues]
    if not rendered:
        rendered = [{"severity": "information", "code": "informational", "diagnostics": "All OK"}]
    return {"resourceType": "OperationOutcome", "issue": rendered}


def information(text: str) -> Resource:
    return operation_outcome([Issue("information", "informational", text)])
