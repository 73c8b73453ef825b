"""The one mapping from the FhirError tree to HTTP status + OperationOutcome.

https://hl7.org/fhir/R4/http.html#2.21.0.4 (status codes) and
https://hl7.org/fhir/R4/operationoutcome.html. Unexpected exceptions become a 500 whose body names
only the request id: no stack traces, SQL, paths or versions leave the server.
"""

from __future__ import annotations

from starlette.responses import Response

from healthbridge.fhir import errors as e
from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import Issue
from healthbridge.fhir.outcome import operation_outcome

STATUS: dict[type[e.FhirError], int] = {
    e.InvalidRequest: 400,
    e.Unauthorized: 401,
    e.Forbidden: 403,
    e.NotFound: 404,
    e.MethodNotAllowed: 405,
    e.NotAcceptable: 406,
    e.Conflict: 409,
    e.Gone: 410,
    e.PreconditionFailed: 412,
    e.PayloadTooLarge: 413,
    e.UnsupportedMediaType: 415,
    e.Unprocessable: 422,
    e.TooManyRequests: 429,
    e.Unavailable: 503,
}

FHIR_JSON = "application/fhir+json; charset=utf-8"


def status_of(error: e.FhirError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def outcome_response(
    status: int, issues: list[Issue], headers: dict[str, str] | None = None
) -> Response:
    body = jsonformat.dumps(operation_outcome(issues))
    all_headers = {"Cache-Control": "no-store"}
    all_headers.update(headers or {})
    return Response(body, status_code=status, media_type=FHIR_JSON, headers=all_headers)


def error_response(error: e.FhirError) -> Response:
    return outcome_response(status_of(error), error.issues, error.headers)


def internal_error_response(request_id: str) -> Response:
    issue = Issue(
        "fatal",
        "exception",
        f"Internal server error; quote request id {request_id} to the operator.",
    )
    return outcome_response(500, [issue])
