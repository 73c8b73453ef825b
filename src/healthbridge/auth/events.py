"""What the authorization server reports for the audit trail: sign-ins, tokens issued,
refreshed and revoked (IHE BALP https://profiles.ihe.net/ITI/BALP/ "security events" and HIPAA
164.312(b)). The server calls an :data:`EventSink` the app may give it (the audit feature turns
events into AuditEvents); without one, events are only logged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

EventKind = Literal[
    "login",
    "login-failed",
    "logout",
    "token-issued",
    "token-refreshed",
    "token-revoked",
    "grant-revoked",
    "client-registered",
]


@dataclass(frozen=True, slots=True)
class AuthEvent:
    kind: EventKind
    outcome: Literal["success", "failure"] = "success"
    subject: str | None = None  # user name, or client id for backend services
    client_id: str | None = None
    fhir_user: str | None = None
    jti: str | None = None
    grant: str | None = None
    patient: str | None = None
    address: str | None = None  # the caller's network address
    detail: str = ""


EventSink = Callable[[AuthEvent], Awaitable[None]]
