"""Who is asking: the access context of one request, and how a request's credentials become one.

https://hl7.org/fhir/smart-app-launch/app-launch.html#response-5 (launch context in the token
response) and https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html. An
:class:`AccessContext` is what a verified access token says: the granted scopes, the launch
patient and encounter, the signed-in user (``fhirUser``), the client, and the token's identity
(``jti``, the grant it belongs to) for audit and revocation. The :class:`Authenticator` (the
authorization server's token verifier, built by the app) turns an ``Authorization`` header into
one; the enforcing repository (:mod:`healthbridge.security.access`) applies it.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

from healthbridge.security.scopes import Scopes, parse_scopes

MEMO_SIZE = 512
"""Most entries one context's memo takes (a token uses a few types, interactions and
addresses; past this, work is done afresh rather than remembered)."""


@dataclass(frozen=True, slots=True)
class AccessContext:
    """Who is asking: the token's scopes and launch context."""

    scopes: Scopes
    patient: str | None = None  # the launch patient id (patient/ scopes need it)
    encounter: str | None = None  # the launch encounter id
    fhir_user: str | None = None  # e.g. "Practitioner/123"
    client_id: str | None = None
    subject: str | None = None  # the user's account name, or the client id for backend services
    jti: str | None = None  # the access token's id (audit, revocation)
    grant: str | None = None  # the authorization grant the token came from
    roles: frozenset[str] = field(default_factory=frozenset)  # e.g. {"admin"}, {"auditor"}
    unrestricted: bool = False
    """True only for ``--no-auth`` development mode and in-process callers: no checks at all."""
    memo: dict[Hashable, Any] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False
    )
    """What is built from this context alone and reused by its token's later requests (the
    verifier keeps one context per token): scope decisions
    (:func:`healthbridge.security.decisions.decide`), the REST layer's access-controlled
    context, the audit trail's ``Who``. Each user keys its entries and checks that what they
    were built from is still what it has; ``replace()`` makes a context with an empty memo."""


UNRESTRICTED = AccessContext(parse_scopes("system/*.cruds"), subject="no-auth", unrestricted=True)
"""The context of ``--no-auth`` mode and of the server's own internal work."""


class Authenticator(Protocol):
    async def authenticate(self, authorization: str | None) -> AccessContext:
        """The context of the request whose ``Authorization`` header is ``authorization``.

        Raises :class:`healthbridge.fhir.errors.Unauthorized` (401 with a
        ``WWW-Authenticate: Bearer`` header, ``error="invalid_token"`` when a token was given
        but is expired, wrongly signed, revoked or for another audience)."""
        ...


class Revocations(Protocol):
    async def revoked(self, access: AccessContext) -> bool:
        """True when the authorization behind ``access`` no longer holds: its grant was
        revoked, or its client or user disabled. Work done later in its name (subscription
        notifications) asks before each use; the token verifier answers it."""
        ...


class NeverRevoked:
    """The :class:`Revocations` of ``--no-auth`` mode: there is nothing to revoke."""

    async def revoked(self, access: AccessContext) -> bool:
        return False
