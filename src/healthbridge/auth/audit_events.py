"""The authorization server's events in the audit trail (IHE BALP https://profiles.ihe.net/ITI/BALP/
"User Authentication" and "Get Access Token"; SECURITY.md "token issue/refresh/revoke,
login/logout/failed login ... produces an AuditEvent").

:func:`audit_sink` turns each :class:`~.events.AuthEvent` into an
:class:`~healthbridge.audit.records.AuditRecord` for the recorder (which builds the AuditEvent in
the background) and logs it too. Revoking a whole grant (reuse of a code or refresh token, a
revoked refresh token) is audited as a token revocation.
"""

from __future__ import annotations

from healthbridge.audit.recorder import AuditBacklog, AuditRecorder
from healthbridge.audit.records import AuditRecord, Kind, Who
from healthbridge.auth.events import AuthEvent, EventKind, EventSink
from healthbridge.infra.logging import get_logger

KINDS: dict[EventKind, Kind] = {
    "login": "login",
    "login-failed": "login-failed",
    "logout": "logout",
    "token-issued": "token-issue",
    "token-refreshed": "token-refresh",
    "token-revoked": "token-revoke",
    "grant-revoked": "token-revoke",
}
_log = get_logger("healthbridge.auth")


def audit_record(event: AuthEvent) -> AuditRecord | None:
    """The audit record of ``event``; None for events the trail does not keep."""
    kind = KINDS.get(event.kind)
    if kind is None:
        return None
    who = Who(
        subject=event.subject,
        fhir_user=event.fhir_user,
        client_id=event.client_id,
        jti=event.jti,
        address=event.address,
        patient=event.patient,
    )
    return AuditRecord(
        kind=kind,
        status=200 if event.outcome == "success" else 401,
        patients=(event.patient,) if event.patient else (),
        who=who,
        description=event.detail or None,
    )


def audit_sink(recorder: AuditRecorder, log: EventSink) -> EventSink:
    async def sink(event: AuthEvent) -> None:
        await log(event)
        record = audit_record(event)
        if record is None:
            return
        try:
            recorder.record(record)
        except AuditBacklog:  # the recorder is overwhelmed; the log line above keeps it
            _log.error("audit backlog: an authentication event was not audited", kind=event.kind)

    return sink
