"""Secrets sealed inside records (:mod:`healthbridge.store.records`, sealed with
:mod:`healthbridge.infra.sealing`): which record fields hold one, how many are sealed with which
key, and re-sealing them all under the current key (key rotation).

A feature declares each of its sealed fields once, next to the code that writes it::

    TOTP_SECRETS = SealedField("TOTP secrets", "user", "totp", lambda r: f"totp/{r.key}")

and ``healthbridge secrets status`` / ``rotate`` (``cli/secrets.py``) go through the explicit
list of them. Re-sealing writes each record with compare-and-set (``put_record(...,
if_version=...)``, keeping its expiry) and starts over from a fresh read when a server process
changed it meanwhile, so it is safe while servers run; values already sealed with the current
key are left alone, so running it again changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from healthbridge.infra.sealing import Sealer, SealingError
from healthbridge.store.records import Record, RecordStore

PAGE = 500
RETRIES = 10


@dataclass(frozen=True, slots=True)
class SealedField:
    """One field of the records of one kind that holds a sealed secret (or legacy plaintext,
    or None for no secret)."""

    label: str  # what the CLI calls them: "token signing keys"
    kind: str
    field: str
    purpose: Callable[[Record], str]  # the associated data; must not change when re-sealed
    plaintext: Callable[[Any], str] = str  # the text of a legacy (never sealed) stored value
    rewrite: Callable[[Record, str], dict[str, Any]] | None = None
    """The record's new value with the sealed text (default: the field replaced)."""

    def stored(self, record: Record) -> Any:
        return record.value.get(self.field)

    def resealed(self, record: Record, sealer: Sealer) -> dict[str, Any]:
        """The record's value with its secret sealed under the current key (SealingError when
        it cannot be opened)."""
        stored, purpose = self.stored(record), self.purpose(record)
        text = sealer.open(stored, purpose) if sealer.is_sealed(stored) else self.plaintext(stored)
        sealed = sealer.seal(text, purpose)
        if self.rewrite is not None:
            return self.rewrite(record, sealed)
        return {**record.value, self.field: sealed}


@dataclass(slots=True)
class Census:
    """How the secrets of one field are stored: counts per key id, and plaintext."""

    label: str
    by_key: dict[str, int] = field(default_factory=dict)
    plain: int = 0


@dataclass(slots=True)
class Resealed:
    """What re-sealing one field did."""

    label: str
    resealed: int = 0  # plaintext or an older key: now sealed with the current key
    current: int = 0  # already sealed with the current key
    failed: list[str] = field(default_factory=list)  # "<record key>: <reason>"


async def _all(records: RecordStore, kind: str) -> list[Record]:
    found: list[Record] = []
    after: str | None = None
    while True:
        page = await records.records(kind, after_key=after, limit=PAGE)
        found += page
        if len(page) < PAGE:
            return found
        after = page[-1].key


async def census(records: RecordStore, sealed: SealedField) -> Census:
    """Count the field's values per sealing key id (``"?"``: sealed in an unknown format)."""
    counts = Census(sealed.label)
    for record in await _all(records, sealed.kind):
        stored = sealed.stored(record)
        if stored is None:
            continue
        if not Sealer.is_sealed(stored):
            counts.plain += 1
            continue
        key_id = Sealer.key_id_of(stored) or "?"
        counts.by_key[key_id] = counts.by_key.get(key_id, 0) + 1
    return counts


async def reseal(
    records: RecordStore,
    sealed: SealedField,
    sealer: Sealer,
    progress: Callable[[int, int], None] | None = None,
) -> Resealed:
    """Seal every value of the field with the current key; ``progress(done, total)`` after
    each record."""
    done = Resealed(sealed.label)
    found = await _all(records, sealed.kind)
    for number, record in enumerate(found, 1):
        await _reseal_one(records, sealed, sealer, record, done)
        if progress is not None:
            progress(number, len(found))
    return done


async def _reseal_one(
    records: RecordStore, sealed: SealedField, sealer: Sealer, record: Record, done: Resealed
) -> None:
    current: Record | None = record
    for _ in range(RETRIES):
        if current is None or sealed.stored(current) is None:
            return  # gone, expired, or no secret (any more)
        if sealer.is_current(sealed.stored(current)):
            done.current += 1
            return
        try:
            value = sealed.resealed(current, sealer)
        except SealingError as exc:
            done.failed.append(f"{record.key}: {exc}")
            return
        written = await records.put_record(
            sealed.kind, current.key, value, current.expires, if_version=current.version
        )
        if written is not None:
            done.resealed += 1
            return
        current = await records.get_record(sealed.kind, record.key)  # changed meanwhile
    done.failed.append(f"{record.key}: it kept changing while being re-sealed; run again")
