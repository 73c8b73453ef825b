"""What the request path hands the audit trail: who asked (:class:`Who`) and what happened
(:class:`AuditRecord`).

Both are small dataclasses, cheap to build on the request path; the background writer
(:mod:`.recorder`) turns them into IHE BALP AuditEvents (:mod:`.events`,
https://profiles.ihe.net/ITI/BALP/). A :class:`Who` is also what every committed change carries
in its outbox row (:meth:`Who.actor`, set per request with
:func:`healthbridge.store.actor.set_actor`), so the AuditEvent of a change names its author even
when it is built after a crash.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

Kind = Literal[
    "rest", "login", "login-failed", "logout", "token-issue", "token-refresh", "token-revoke"
]
"""A FHIR REST interaction, or an authentication event."""

_decode = msgspec.json.Decoder(dict[str, Any])
_FIELDS = ("subject", "fhir_user", "client_id", "jti", "address", "patient")


def now_micros() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class Who:
    """Who asked: the signed-in user (``subject``, and ``fhir_user`` such as
    ``Practitioner/7`` when known), the OAuth client, the access token's ``jti``, the client's
    network ``address`` and the launch ``patient`` of the token."""

    subject: str | None = None
    fhir_user: str | None = None
    client_id: str | None = None
    jti: str | None = None
    address: str | None = None
    patient: str | None = None

    @property
    def agent(self) -> str | None:
        """The searchable name of the user: ``fhir_user``, else ``subject``."""
        return self.fhir_user or self.subject

    def actor(self) -> str:
        """The outbox ``actor`` text: compact JSON of the fields that are set (1-2 us)."""
        return msgspec.json.encode(
            {name: value for name in _FIELDS if (value := getattr(self, name)) is not None}
        ).decode()

    @classmethod
    def from_actor(cls, actor: str | None) -> Who:
        """The :class:`Who` an outbox ``actor`` names; unknown or malformed gives ``NOBODY``."""
        if not actor:
            return NOBODY
        try:
            values = _decode.decode(actor)
        except msgspec.DecodeError:
            return NOBODY
        return cls(**{k: str(v) for k, v in values.items() if k in _FIELDS and v is not None})


NOBODY = Who()
"""No user, client or address known (the server's own work, or before authentication)."""


@dataclass(slots=True)
class AuditRecord:
    """One event to audit, as cheap to build as the request path needs (not ``frozen``: a
    frozen dataclass of this size takes 2.5 times as long to build; treat it as immutable).

    * ``kind``: ``rest`` for a FHIR interaction, else the authentication event.
    * ``interaction``: for ``rest``, the restful-interaction code (``read``, ``vread``,
      ``search-type``, ``search-system``, ``history-instance``, ``create``, ``update``,
      ``patch``, ``delete``, ``transaction``, ``batch``, ``capabilities``, ``operation``).
    * ``status``: the HTTP status answered (it gives the outcome: below 400 success, 4xx minor
      failure, 5xx serious failure); ``description`` explains a failure (outcomeDesc).
    * ``resource_type``/``id``/``version``: what was read or written; ``operation`` the
      ``$name`` of an operation.
    * ``patients``: the Patient ids concerned, when the caller knows them; ``resources``: the
      stored JSON bytes returned (a read's content, a search page's matches), in which the
      background writer finds the Patients (compartment membership) off the request path.
    * ``query``: the request as the client sent it (``GET /fhir/Observation?patient=1``, or
      for POST ``_search`` the line and the form body); stored base64 in the query entity.
    * ``who``: who asked; ``recorded``: when (microseconds since the epoch, now by default).
    """

    kind: Kind = "rest"
    interaction: str | None = None
    status: int = 200
    resource_type: str | None = None
    id: str | None = None
    version: str | None = None
    patients: tuple[str, ...] = ()
    resources: tuple[bytes, ...] = ()
    query: str | None = None
    who: Who = NOBODY
    description: str | None = None
    operation: str | None = None
    recorded: int = field(default_factory=now_micros)


WRITES = frozenset({"create", "update", "patch", "delete"})


def written_through_outbox(interaction: str, status: int, etag: bool) -> bool:
    """True when a REST write's AuditEvent comes from its outbox row, so the request path must
    not :meth:`~.recorder.AuditRecorder.record` it too: a create answered 201, an update or
    patch answered 2xx, a delete answered 2xx with an ``ETag`` (it deleted a version; without
    one nothing was there). A conditional create that found a match (200), a delete of nothing
    and every failure are recorded by the request path."""
    if not 200 <= status < 300 or interaction not in WRITES:
        return False
    if interaction == "create":
        return status == 201
    if interaction == "delete":
        return etag
    return True
