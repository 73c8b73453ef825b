"""A small durable key-value store for the authorization server's state.

Clients, users, signing keys, one-time authorization codes, refresh tokens, revocations and
replay guards (RFC 6749 https://www.rfc-editor.org/rfc/rfc6749, RFC 7009 revocation, RFC 7523
``jti`` replay) are all small JSON values under a (kind, key) pair, most with an expiry. They live
in the database so that every server process sees them at once: a token revoked by one process
is refused by all the others on their next request.

Semantics shared by every backend (memory fake :mod:`.memory_records`, SQL :mod:`.sql.records`;
the same contract tests run on each):

* an expired record counts as absent everywhere (reads, ``add_record``, ``any_record``);
  :meth:`RecordStore.purge_expired_records` removes them for good;
* ``version`` starts at 1 and grows by one with each write, so a read-modify-write can be made
  conditional (``put_record(..., if_version=...)``) without locks;
* ``add_record`` and ``take_record`` are atomic across processes: of concurrent callers exactly
  one adds (jti replay protection, unique names) or takes (one-time codes, refresh rotation).

Callers store digests of secrets (codes, refresh tokens, client secrets), never the secrets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from healthbridge.store.signals import ChangeSignal

MAX_KEYS = 64
"""Most (kind, key) pairs one :meth:`RecordStore.any_record` call may ask about."""


@dataclass(frozen=True, slots=True)
class Record:
    kind: str
    key: str
    value: dict[str, Any]
    version: int
    expires: datetime | None  # timezone-aware UTC; None: never


class RecordStore(Protocol):
    signal: ChangeSignal
    """Bumped (``await signal.changed()``) by writers of records that withdraw access
    (revocations) after they commit, so that readers may cache "not revoked" verdicts
    (:mod:`healthbridge.store.signals`)."""

    async def get_record(self, kind: str, key: str) -> Record | None:
        """The record, or None when there is none or it has expired."""
        ...

    async def records(
        self, kind: str, *, after_key: str | None = None, limit: int = 1000
    ) -> list[Record]:
        """Unexpired records of ``kind`` in key order (code point order), after ``after_key``."""
        ...

    async def add_record(
        self, kind: str, key: str, value: dict[str, Any], expires: datetime | None = None
    ) -> bool:
        """Insert when absent (or expired); False, changing nothing, when it is present."""
        ...

    async def put_record(
        self,
        kind: str,
        key: str,
        value: dict[str, Any],
        expires: datetime | None = None,
        if_version: int | None = None,
    ) -> Record | None:
        """Insert or replace (the version grows by one). With ``if_version``, only when the
        current unexpired record has that version; None (nothing written) otherwise."""
        ...

    async def take_record(self, kind: str, key: str) -> Record | None:
        """Delete the record and return it; of concurrent takers exactly one gets it. None
        when there is none or it has expired."""
        ...

    async def delete_record(self, kind: str, key: str) -> bool:
        """Delete; True when an unexpired record was there."""
        ...

    async def any_record(self, keys: Sequence[tuple[str, str]]) -> bool:
        """One lookup: whether any of the (kind, key) pairs has an unexpired record (at most
        :data:`MAX_KEYS` pairs)."""
        ...

    async def purge_expired_records(self) -> int:
        """Remove expired records; how many were removed."""
        ...
