"""The per-client cap on live subscriptions, race-free across requests and server processes.

SECURITY.md "Resource limits": subscriptions per client are capped
(``subscription_max_per_client``). Counting the client's live subscriptions before a write is
not enough: N parallel creates all count the same number and all pass. So a write that would
add a live subscription first *reserves* a place: the client's quota record
(``subscription-quota``/<client>) lists its pending reservations, and a reservation is added
with a conditional write (``add_record`` / ``put_record(if_version=)``): of concurrent
reservers each sees the others' places, in this process or another. The count is the client's
live owners (:mod:`.owners`) plus its unexpired reservations. Once the write has committed and
its owner is recorded, the reservation is settled (removed; the owner record now counts). A
request refused for the cap frees the places it took for earlier entries; one that failed for
another reason after reserving leaves its places to expire after ``hold`` seconds, so a failure
can only make the cap stricter for a moment, never looser.

The reservations made while checking a request's writes ride in a context variable to the
``written`` hook of the same request (a transaction may create several subscriptions), and
count against the cap for that request's later entries.

Inside an open unit of work (a transaction with conditional entries, a PATCH: the checks run
with its locks held, :func:`~healthbridge.rest.write_hooks.in_unit_of_work`) a hook may not
write: on SQLite the unit holds the only writer. There the place is counted for the request
only (not written); other writers cannot commit while that unit is open on SQLite, and the
only gap left is between the unit's commit and its owner record, a few milliseconds, in which a
second request of the same client could take one place too many.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Final

from healthbridge.fhir.errors import Unavailable, Unprocessable
from healthbridge.rest.write_hooks import in_unit_of_work
from healthbridge.security.context import AccessContext
from healthbridge.store.records import RecordStore
from healthbridge.subscriptions.owners import Owners, owner_key

KIND: Final = "subscription-quota"
LOCAL: Final = "local:"
TRIES: Final = 50
_RESERVED: ContextVar[tuple[str, ...]] = ContextVar("subscription_reservations", default=())


class ClientQuota:
    def __init__(
        self,
        records: RecordStore,
        owners: Owners,
        maximum: int,
        *,
        hold: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.records = records
        self.owners = owners
        self.maximum = maximum
        self.hold = hold
        self._clock = clock

    @staticmethod
    def _key(access: AccessContext) -> str:
        client, unrestricted = owner_key(access)
        return "*unrestricted*" if unrestricted else f"client:{client or ''}"

    async def reserve(self, access: AccessContext, *, besides: str | None = None) -> None:
        """Take a place for one more live subscription of the client of ``access`` (not
        counting ``besides``, the one being updated); 422 ``business-rule`` when none is left."""
        key = self._key(access)
        for _ in range(TRIES):
            record = await self.records.get_record(KIND, key)
            now = self._clock()
            pending = {
                token: until
                for token, until in (record.value.get("pending", {}) if record else {}).items()
                if isinstance(until, (int, float)) and until > now
            }
            local = [t for t in _RESERVED.get() if t.startswith(LOCAL)]
            live = await self.owners.live_count(access, besides=besides)
            if live + len(pending) + len(local) >= self.maximum:
                await self._release_all(key)  # the request fails: free what it took
                raise Unprocessable(
                    f"This client already has {live + len(pending) + len(local)} active or "
                    f"requested subscriptions, the most this server allows ({self.maximum}); "
                    "delete or turn off one first",
                    code="business-rule",
                    expression="Subscription",
                )
            if in_unit_of_work():  # no database write here (module docstring)
                _RESERVED.set((*_RESERVED.get(), LOCAL + secrets.token_hex(8)))
                return
            token = secrets.token_hex(8)
            pending[token] = now + self.hold
            if await self._write(key, record.version if record else None, pending):
                _RESERVED.set((*_RESERVED.get(), token))
                return
        raise Unavailable(
            "Too many subscription writes at once for this client; try again", code="transient"
        )

    async def settle(self, access: AccessContext) -> None:
        """The write that reserved a place committed and its owner is recorded: drop one of
        this request's reservations (the owner record counts now)."""
        reserved = _RESERVED.get()
        if reserved:
            _RESERVED.set(reserved[1:])
            await self._drop(self._key(access), reserved[:1])

    async def _release_all(self, key: str) -> None:
        reserved = _RESERVED.get()
        _RESERVED.set(())
        await self._drop(key, reserved)

    async def _drop(self, key: str, tokens: tuple[str, ...]) -> None:
        gone = {t for t in tokens if not t.startswith(LOCAL)}
        if in_unit_of_work() or not gone:
            return
        for _ in range(TRIES):
            record = await self.records.get_record(KIND, key)
            pending = record.value.get("pending", {}) if record else {}
            if record is None or not gone & pending.keys():
                return
            kept = {t: u for t, u in pending.items() if t not in gone}
            if await self._write(key, record.version, kept):
                return
        # contention: the reservations expire by themselves after ``hold``

    async def _write(self, key: str, version: int | None, pending: dict[str, float]) -> bool:
        value = {"pending": pending}
        if version is None:
            return await self.records.add_record(KIND, key, value)
        return await self.records.put_record(KIND, key, value, if_version=version) is not None
