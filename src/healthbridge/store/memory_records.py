"""The in-memory :class:`~healthbridge.store.records.RecordStore` (same contract as
:mod:`.sql.records`). No method awaits, so each is atomic on the event loop. Nothing survives
the process. Used by the memory repository in tests and demos.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from healthbridge.store.instants import Clock, utc
from healthbridge.store.records import MAX_KEYS, Record
from healthbridge.store.signals import ChangeSignal, LocalSignal


class MemoryRecords:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._records: dict[tuple[str, str], Record] = {}
        self.signal: ChangeSignal = LocalSignal()

    def _live(self, kind: str, key: str) -> Record | None:
        record = self._records.get((kind, key))
        if record is None or (record.expires is not None and record.expires <= utc(self._clock())):
            return None
        return record

    @staticmethod
    def _copy(record: Record | None) -> Record | None:
        """Callers get their own copy of the value, as from a database."""
        if record is None:
            return None
        return Record(
            record.kind, record.key, copy.deepcopy(record.value), record.version, record.expires
        )

    def _store(
        self, kind: str, key: str, value: dict[str, Any], expires: datetime | None
    ) -> Record:
        previous = self._records.get((kind, key))
        version = 1 if previous is None else previous.version + 1
        record = Record(
            kind, key, copy.deepcopy(value), version, None if expires is None else utc(expires)
        )
        self._records[(kind, key)] = record
        return record

    async def get_record(self, kind: str, key: str) -> Record | None:
        return self._copy(self._live(kind, key))

    async def records(
        self, kind: str, *, after_key: str | None = None, limit: int = 1000
    ) -> list[Record]:
        keys = sorted(k for (kd, k) in self._records if kd == kind)
        found: list[Record] = []
        for key in keys:
            if after_key is not None and key <= after_key:
                continue
            record = self._copy(self._live(kind, key))
            if record is not None:
                found.append(record)
            if len(found) >= limit:
                break
        return found

    async def add_record(
        self, kind: str, key: str, value: dict[str, Any], expires: datetime | None = None
    ) -> bool:
        if self._live(kind, key) is not None:
            return False
        self._store(kind, key, value, expires)
        return True

    async def put_record(
        self,
        kind: str,
        key: str,
        value: dict[str, Any],
        expires: datetime | None = None,
        if_version: int | None = None,
    ) -> Record | None:
        if if_version is not None:
            current = self._live(kind, key)
            if current is None or current.version != if_version:
                return None
        return self._copy(self._store(kind, key, value, expires))

    async def take_record(self, kind: str, key: str) -> Record | None:
        record = self._live(kind, key)
        self._records.pop((kind, key), None)
        return record

    async def delete_record(self, kind: str, key: str) -> bool:
        record = self._live(kind, key)
        self._records.pop((kind, key), None)
        return record is not None

    async def any_record(self, keys: Sequence[tuple[str, str]]) -> bool:
        if len(keys) > MAX_KEYS:
            raise ValueError(f"any_record takes at most {MAX_KEYS} keys")
        return any(self._live(kind, key) is not None for kind, key in keys)

    async def purge_expired_records(self) -> int:
        now = utc(self._clock())
        expired = [
            k for k, r in self._records.items() if r.expires is not None and r.expires <= now
        ]
        for key in expired:
            del self._records[key]
        return len(expired)
