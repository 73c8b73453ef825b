"""Who owns a subscription: the authorization its notifications are sent under, and its secret.

Subscriptions Backport IG, https://hl7.org/fhir/uv/subscriptions-backport/safety_security.html:
a notification must carry nothing its subscriber could not read. The server records, per
Subscription, the access context of the client that last wrote it (client, subject, granted
scopes, launch patient, fhirUser, roles, the grant its token came from) and an HMAC secret that
signs its rest-hook notifications (:mod:`.channels.signature`), sealed at rest (purpose
``subscription/<id>``, :mod:`healthbridge.infra.sealing`). They live in the record store (kind
``subscription``, key the Subscription id), never in the resource itself, which others may read.
:meth:`Owner.access` rebuilds the context that matching and full-resource payloads run under;
once that authorization is revoked (the grant revoked, the client or user disabled) the
subscription is turned ``off`` (:mod:`.standing`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any, Final

from healthbridge.infra.sealing import Sealer, SealingError
from healthbridge.security.context import UNRESTRICTED, AccessContext
from healthbridge.security.scopes import parse_scopes
from healthbridge.store.records import Record, RecordStore
from healthbridge.store.sealed_records import SealedField

KIND: Final = "subscription"
LIVE: Final = frozenset({"active", "requested"})


def _purpose(subscription_id: str) -> str:
    return f"subscription/{subscription_id}"


SUBSCRIPTION_SECRETS: Final = SealedField(
    "subscription signing secrets", KIND, "secret", lambda record: _purpose(record.key)
)
"""The owners' HMAC secrets, sealed at rest (``healthbridge secrets status`` and ``rotate``)."""


@dataclass(frozen=True, slots=True)
class Owner:
    subscription_id: str
    secret: str
    status: str  # the Subscription.status as last written
    client_id: str | None = None
    subject: str | None = None
    scopes: str = ""
    patient: str | None = None
    fhir_user: str | None = None
    roles: tuple[str, ...] = ()
    unrestricted: bool = False  # written in --no-auth mode or by the server itself
    grant: str | None = None  # the authorization grant of the token that wrote it

    @classmethod
    def of(cls, subscription_id: str, secret: str, status: str, access: AccessContext) -> Owner:
        return cls(
            subscription_id=subscription_id,
            secret=secret,
            status=status,
            client_id=access.client_id,
            subject=access.subject,
            scopes=str(access.scopes),
            patient=access.patient,
            fhir_user=access.fhir_user,
            roles=tuple(sorted(access.roles)),
            unrestricted=access.unrestricted,
            grant=access.grant,
        )

    def held_by(self, access: AccessContext) -> bool:
        """Is ``access`` this owner's client, user and launch patient (whatever its scopes)?"""
        return (self.client_id, self.subject, self.patient) == (
            access.client_id,
            access.subject,
            access.patient,
        )

    def same_principal(self, access: AccessContext) -> bool:
        """True when ``access`` is the owner again (same client, user and authorization; a
        later grant of the same is the same principal)."""
        again = Owner.of(self.subscription_id, self.secret, self.status, access)
        return replace(self, grant=None) == replace(again, grant=None)

    def access(self) -> AccessContext:
        """The owner's access context (its scopes and launch patient), for the dispatcher;
        one object per distinct owner, so that its decisions are memoized across events."""
        if self.unrestricted:
            return UNRESTRICTED
        return _access(
            self.scopes,
            self.patient,
            self.fhir_user,
            self.client_id,
            self.subject,
            self.roles,
            self.grant,
        )

    def value(self) -> dict[str, Any]:
        return {
            "secret": self.secret,
            "status": self.status,
            "client_id": self.client_id,
            "subject": self.subject,
            "scopes": self.scopes,
            "patient": self.patient,
            "fhir_user": self.fhir_user,
            "roles": list(self.roles),
            "unrestricted": self.unrestricted,
            "grant": self.grant,
        }

    @classmethod
    def from_value(cls, subscription_id: str, value: dict[str, Any]) -> Owner:
        return cls(
            subscription_id=subscription_id,
            secret=str(value["secret"]),
            status=str(value.get("status", "requested")),
            client_id=value.get("client_id"),
            subject=value.get("subject"),
            scopes=str(value.get("scopes", "")),
            patient=value.get("patient"),
            fhir_user=value.get("fhir_user"),
            roles=tuple(value.get("roles") or ()),
            unrestricted=bool(value.get("unrestricted")),
            grant=value.get("grant"),
        )


@functools.lru_cache(maxsize=4096)
def _access(
    scopes: str,
    patient: str | None,
    fhir_user: str | None,
    client_id: str | None,
    subject: str | None,
    roles: tuple[str, ...],
    grant: str | None,
) -> AccessContext:
    return AccessContext(
        scopes=parse_scopes(scopes),
        patient=patient,
        fhir_user=fhir_user,
        client_id=client_id,
        subject=subject,
        roles=frozenset(roles),
        grant=grant,
    )


def owner_key(access: AccessContext) -> tuple[str | None, bool]:
    """What the per-client cap counts by: the client (all --no-auth writes count together)."""
    return access.client_id, access.unrestricted


class Owners:
    """The owner records of every subscription, in ``records``; their secrets sealed with
    ``sealer`` (infra/sealing.py; the server always has one)."""

    def __init__(self, records: RecordStore, sealer: Sealer | None = None) -> None:
        self.records = records
        self._sealer = sealer

    async def get(self, subscription_id: str) -> Owner | None:
        record = await self.records.get_record(KIND, subscription_id)
        return None if record is None else self._owner(record)

    async def put(self, owner: Owner) -> None:
        value = owner.value()
        if self._sealer is not None:
            value["secret"] = self._sealer.seal(owner.secret, _purpose(owner.subscription_id))
        await self.records.put_record(KIND, owner.subscription_id, value)

    def _owner(self, record: Record) -> Owner:
        """The owner of ``record``, its secret opened (a legacy plaintext one as it is)."""
        value = record.value
        if Sealer.is_sealed(value.get("secret")):
            if self._sealer is None:
                raise SealingError("subscription secrets are sealed: this store has no sealer")
            secret = self._sealer.open(value["secret"], _purpose(record.key))
            value = {**value, "secret": secret}
        return Owner.from_value(record.key, value)

    async def remove(self, subscription_id: str) -> None:
        await self.records.take_record(KIND, subscription_id)

    async def all(self) -> list[Owner]:
        found: list[Owner] = []
        after: str | None = None
        while True:
            page = await self.records.records(KIND, after_key=after, limit=1000)
            found += [self._owner(r) for r in page]
            if len(page) < 1000:
                return found
            after = page[-1].key

    async def live_count(self, access: AccessContext, *, besides: str | None = None) -> int:
        """How many active or requested subscriptions the client of ``access`` owns (not
        counting ``besides``, the one being updated)."""
        key = owner_key(access)
        return sum(
            1
            for o in await self.all()
            if o.status in LIVE
            and o.subscription_id != besides
            and (o.client_id, o.unrestricted) == key
        )


class Ownership:
    """The Subscription owners for the access policy
    (:class:`healthbridge.security.access.PrivateOwners`): only a subscription's owner (its
    client, user and launch patient) changes or deletes it; administrators and backend
    services are let through by the policy itself."""

    def __init__(self, owners: Owners) -> None:
        self.owners = owners

    async def owns(self, access: AccessContext, resource_type: str, id: str) -> bool:
        owner = await self.owners.get(id)
        return owner is not None and owner.held_by(access)
