"""``$reindex`` and ``$reindex-status``: make custom SearchParameters searchable.

Custom parameters (https://hl7.org/fhir/R4/searchparameter.html) find only resources indexed
with them. ``POST [base]/$reindex`` (every type) or ``POST [base]/[type]/$reindex`` starts a job
with every *active* SearchParameter stored on the server and answers per the asynchronous
request pattern (https://hl7.org/fhir/R4/async.html): 202 Accepted with ``Content-Location``
naming ``$reindex-status?job=<id>``. ``GET`` on that answers 202 with ``X-Progress`` while the
job runs and 200 with a Parameters resource (``state``, ``processed``, ``total``, ``error``)
once it has ended; ``DELETE`` cancels it. While it runs, new writes are indexed with the new
parameters; once done, they are searchable (:mod:`healthbridge.jobs.search_registry`).

Administrative operations: once authorization lands they require an administrator's token.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import InvalidRequest, Unprocessable
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.jobs.reindex import ReindexRunner
from healthbridge.rest.context import RestContext
from healthbridge.rest.http import base_url, json_response, resource_json
from healthbridge.rest.operations.registry import Operation
from healthbridge.store.jobs import Job

DEFINITION = "http://healthbridge.dev/fhir/OperationDefinition/reindex"
STATUS_DEFINITION = "http://healthbridge.dev/fhir/OperationDefinition/reindex-status"
MAX_PARAMETERS = 1000


async def _stored_parameters(ctx: RestContext) -> list[dict[str, Any]]:
    """Every stored SearchParameter resource (active or not; the runner keeps active ones)."""
    parser = SearchParser(ctx.search.definitions)
    query = parser.parse("SearchParameter", [("_count", str(MAX_PARAMETERS))])
    page = await ctx.service.repository.search(query)
    if page.next_cursor is not None:
        raise Unprocessable(f"More than {MAX_PARAMETERS} SearchParameter resources are stored")
    return [jsonformat.loads(stored.content) for stored in page.matches]


def _status(job: Job) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": "job", "valueString": job.id},
        {"name": "state", "valueCode": job.state},
        {"name": "processed", "valueInteger64": str(job.processed)},
    ]
    if job.total is not None:
        parameters.append({"name": "total", "valueInteger64": str(job.total)})
    if job.error:
        parameters.append({"name": "error", "valueString": job.error})
    codes = [p.get("code") for p in job.params.get("parameters", [])]
    parameters.extend({"name": "parameter", "valueCode": code} for code in codes if code)
    return {"resourceType": "Parameters", "parameter": parameters}


def _progress(job: Job) -> str:
    total = "?" if job.total is None else str(job.total)
    return f"{job.processed} of {total} resources indexed"


def operations(runner: ReindexRunner) -> list[Operation]:
    """The two operations over one job runner (registered by the app)."""

    async def start(ctx: RestContext, request: Request) -> Response:
        resource_type = request.path_params.get("type")
        if resource_type is not None:
            ctx.service.check_type(resource_type)
        resources = await _stored_parameters(ctx)
        job = await runner.start(resources, [resource_type] if resource_type else None)
        where = f"{base_url(request, ctx.limits)}/$reindex-status?job={job.id}"
        body = jsonformat.dumps(_status(job))
        headers = {"Content-Location": where, "X-Progress": _progress(job)}
        return json_response(body, request, 202, headers)

    async def status(ctx: RestContext, request: Request) -> Response:
        id = request.query_params.get("job")
        if not id:
            raise InvalidRequest("Name the job: $reindex-status?job=<id>", expression="job")
        jobs = runner.jobs
        job = await (jobs.cancel_job(id) if request.method == "DELETE" else jobs.get_job(id))
        if job.state == "running":
            body = jsonformat.dumps(_status(job))
            return json_response(body, request, 202, {"X-Progress": _progress(job)})
        return resource_json(_status(job), request)

    return [
        Operation(
            name="reindex",
            definition=DEFINITION,
            levels=frozenset({"system", "type"}),
            methods=frozenset({"POST"}),
            handler=start,
        ),
        Operation(
            name="reindex-status",
            definition=STATUS_DEFINITION,
            levels=frozenset({"system"}),
            methods=frozenset({"GET", "DELETE"}),
            handler=status,
        ),
    ]
