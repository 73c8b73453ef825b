"""The one error vocabulary of HealthBridge.

Every failure that a FHIR client may see is raised as a subclass of :class:`FhirError`. Each class
is a *category* (after Blaze's anomaly categories); ``rest/errors.py`` maps the category to exactly
one HTTP status and renders the carried issues as an OperationOutcome
(https://hl7.org/fhir/R4/operationoutcome.html). Nothing else maps errors to HTTP.

=====================  ======  =============================================================
class                  status  when
=====================  ======  =============================================================
InvalidRequest         400     malformed JSON, bad ids, bad parameters, failed base validation
TooCostly              400     a search or request stopped to protect the server (timeout, caps)
Unauthorized           401     no or bad credentials
Forbidden              403     authenticated but not allowed
NotFound               404     unknown type, id or version (and resources hidden by policy)
MethodNotAllowed       405     interaction not supported on this path
NotAcceptable          406     ``Accept``/``_format`` asks for a format we do not produce
Conflict               409     version conflict without If-Match, id clashes
Gone                   410     the resource is deleted
PreconditionFailed     412     ``If-Match`` mismatch, several conditional matches
PayloadTooLarge        413     body or bundle over the configured limit
UnsupportedMediaType   415     ``Content-Type`` we do not read
Unprocessable          422     valid FHIR that breaks a profile or a business rule
TooManyRequests        429     rate limited
Unavailable            503     the database is unreachable; nothing was written
=====================  ======  =============================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["fatal", "error", "warning", "information"]


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue: https://hl7.org/fhir/R4/operationoutcome.html.

    ``code`` is from http://hl7.org/fhir/ValueSet/issue-type (``invalid``, ``structure``,
    ``required``, ``value``, ``invariant``, ``not-found``, ``deleted``, ``conflict``, ...).
    ``expression`` holds FHIRPath locations such as ``Patient.name[0].given[1]``.
    """

    severity: Severity
    code: str
    diagnostics: str
    expression: tuple[str, ...] = field(default=())


class FhirError(Exception):
    """Base of all client-visible errors; carries the OperationOutcome issues."""

    default_code = "processing"

    def __init__(
        self,
        diagnostics: str = "",
        *,
        code: str | None = None,
        expression: str | tuple[str, ...] | None = None,
        issues: list[Issue] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics or (issues[0].diagnostics if issues else ""))
        if issues is None:
            expr: tuple[str, ...]
            if expression is None:
                expr = ()
            elif isinstance(expression, str):
                expr = (expression,)
            else:
                expr = expression
            issues = [Issue("error", code or self.default_code, diagnostics, expr)]
        self.issues = issues
        self.headers = headers or {}


class InvalidRequest(FhirError):
    default_code = "invalid"


class TooCostly(InvalidRequest):
    """A valid request the server stopped to protect itself (a search past its statement
    timeout); the client should narrow it."""

    default_code = "too-costly"


class Unauthorized(FhirError):
    default_code = "login"


class Forbidden(FhirError):
    default_code = "forbidden"


class NotFound(FhirError):
    default_code = "not-found"


class MethodNotAllowed(FhirError):
    default_code = "not-supported"


class NotAcceptable(FhirError):
    default_code = "not-supported"


class Conflict(FhirError):
    default_code = "conflict"


class Gone(FhirError):
    default_code = "deleted"


class PreconditionFailed(FhirError):
    default_code = "conflict"


class PayloadTooLarge(FhirError):
    default_code = "too-costly"


class UnsupportedMediaType(FhirError):
    default_code = "not-supported"


class Unprocessable(FhirError):
    default_code = "processing"


class TooManyRequests(FhirError):
    default_code = "throttled"


class Unavailable(FhirError):
    default_code = "transient"
