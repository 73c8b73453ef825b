"""Auditing every FHIR request: IHE BALP (https://profiles.ihe.net/ITI/BALP/) through the
audit trail (:mod:`healthbridge.audit`).

The router hands each request's outcome here before the response is sent: who asked (the
access context of the token, the client's address), what (the interaction, resource, query and
the resources returned, in which the background writer finds the Patients concerned) and how it
ended (the HTTP status, and for failures the OperationOutcome text, 401, 403 and
404-by-policy included). Successful writes are left to the outbox relay, which audits them from
the outbox row written in the same database transaction (:func:`written_through_outbox`), with
the actor set here (:func:`acting`) for the request's task.
"""

from __future__ import annotations

from contextvars import Token

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.audit.recorder import AuditRecorder
from healthbridge.audit.records import NOBODY, AuditRecord, Who, written_through_outbox
from healthbridge.fhir.errors import FhirError
from healthbridge.rest.errors import status_of
from healthbridge.rest.http import ACCESS, INTERACTION
from healthbridge.security.context import MEMO_SIZE, AccessContext
from healthbridge.store.actor import reset_actor, set_actor

READ_METHODS = frozenset({"GET", "HEAD"})


def who(request: Request) -> Who:
    """Who sent ``request``: its token's user and client (nobody before authentication) and
    the connection's address."""
    client = request.scope.get("client")
    address = client[0] if client else None
    access: AccessContext | None = request.scope.get(ACCESS)
    if access is None:
        return Who(address=address) if address else NOBODY
    key = ("audit-who", address)  # a token's requests come from one address or a few
    found: Who | None = access.memo.get(key)
    if found is None:
        found = Who(
            subject=access.subject,
            fhir_user=access.fhir_user,
            client_id=access.client_id,
            jti=access.jti,
            address=address,
            patient=access.patient,
        )
        if len(access.memo) < MEMO_SIZE:
            access.memo[key] = found
    return found


def acting(request: Request) -> Token[str | None] | None:
    """Name the request's sender as the actor of the writes it makes (outbox ``actor``);
    reads need no actor. Undo with :func:`reset_actor` when the request ends."""
    if request.method in READ_METHODS:
        return None
    return set_actor(who(request).actor())


def done(token: Token[str | None] | None) -> None:
    if token is not None:
        reset_actor(token)


def record(
    recorder: AuditRecorder,
    request: Request,
    response: Response | None,
    error: FhirError | None,
) -> None:
    """Audit ``request``, answered by ``response`` or failed with ``error`` (raises
    :class:`~healthbridge.audit.recorder.AuditBacklog`, a 503, when the trail cannot keep up)."""
    scope = request.scope
    interaction: str | None = scope.get(INTERACTION)
    status = status_of(error) if error is not None else response.status_code if response else 500
    if response is not None and interaction is not None:
        etag = any(name == b"etag" for name, _ in response.raw_headers)
        if written_through_outbox(interaction, status, etag):
            return
    params = scope.get("path_params") or {}
    query = f"{request.method} {scope['path']}"
    if scope["query_string"]:
        query += "?" + scope["query_string"].decode("latin-1")
    body = getattr(response, "body", b"") if response is not None and status < 300 else b""
    operation = interaction[1:] if interaction and interaction.startswith("$") else None
    resource_type, id = params.get("type"), params.get("id")
    patients: tuple[str, ...] = ()
    if body and resource_type == "Patient" and id and interaction in ("read", "vread"):
        # a Patient read concerns that Patient: no need to decode it to find out
        patients, body = (id,), b""
    recorder.record(
        AuditRecord(
            interaction="operation" if operation else interaction,
            status=status,
            resource_type=resource_type,
            id=id,
            version=params.get("vid"),
            patients=patients,
            resources=(bytes(body),) if body else (),
            query=query,
            who=who(request),
            description=str(error) if error is not None else None,
            operation=operation,
        )
    )
