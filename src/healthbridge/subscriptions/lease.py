"""A lease: a role that one server process holds at a time, taken over when its holder dies.

Kept as a record of the durable record store (:mod:`healthbridge.store.records`), whose
``add_record`` is atomic across processes and treats an expired record as absent: of processes
asking together exactly one gets the lease; the holder renews it (a compare-and-set on the
record's version) before it expires; when the holder stops renewing (it crashed, or lost its
database), the record expires and the next process asking gets it. The same pattern as the
subscription handshake claim (:mod:`.dispatcher`).

The job store (:mod:`healthbridge.store.jobs`) is not used for this: ``create_job`` adds a job
unconditionally, so two processes starting together would each create and run one.
"""

from __future__ import annotations

from datetime import timedelta

from healthbridge.store.instants import Clock, system_clock
from healthbridge.store.records import RecordStore

KIND = "lease"


class Lease:
    def __init__(
        self,
        records: RecordStore,
        name: str,
        owner: str,
        seconds: float,
        clock: Clock = system_clock,
    ) -> None:
        self.records = records
        self.name = name
        self.owner = owner
        self.seconds = seconds
        self._clock = clock  # wall time, as the record store's expiry is

    async def hold(self) -> bool:
        """Take the lease when it is free, renew it when ``owner`` holds it; False when another
        process holds it."""
        expires = self._clock() + timedelta(seconds=self.seconds)
        value = {"owner": self.owner}
        record = await self.records.get_record(KIND, self.name)
        if record is None:
            return await self.records.add_record(KIND, self.name, value, expires)
        if record.value.get("owner") != self.owner:
            return False
        renewed = await self.records.put_record(
            KIND, self.name, value, expires, if_version=record.version
        )
        return renewed is not None

    async def release(self) -> None:
        """Give the lease up at once (it expires now) when ``owner`` holds it."""
        record = await self.records.get_record(KIND, self.name)
        if record is not None and record.value.get("owner") == self.owner:
            await self.records.put_record(
                KIND, self.name, record.value, self._clock(), if_version=record.version
            )
