"""The audit trail's storage: an append-only, hash-chained log of AuditEvents.

HIPAA 164.312(b) and ONC 170.315(d)(2) want a record of every access that cannot be changed
unnoticed; IHE BALP (https://profiles.ihe.net/ITI/BALP/) gives the AuditEvent shapes
(https://hl7.org/fhir/R4/auditevent.html), built in :mod:`healthbridge.audit.events`. Here lives
what every backend shares:

* :class:`AuditEntry`: one AuditEvent to append, its JSON without an id plus the columns
  searches filter on (patient, agent, type...).
* The chain. Each stored row gets a number ``seq`` (1, 2, 3... without gaps), its id in the
  JSON, a ``digest`` = SHA-256 over the searchable columns and the JSON bytes
  (:func:`entry_digest`), and a ``chain`` = HMAC-SHA256(key, previous chain || seq || digest)
  (:func:`chain_link`, the first row's previous chain is :data:`GENESIS`). A one-row head
  holds the last seq and chain. Changing any column of a row breaks its digest; deleting a row
  leaves a gap or breaks the next row's chain; deleting the last rows leaves the head ahead.
  The key is not in the database (:mod:`healthbridge.audit.keys`), so someone who can write the
  database cannot forge a matching chain. :mod:`healthbridge.audit.verify` checks all of it.
* :class:`AuditLog`, the protocol: ``append`` runs as one database transaction holding the head
  (on PostgreSQL ``SELECT ... FOR UPDATE`` of the head row, on SQLite the database's write lock),
  so appends from several server processes form one chain. An entry whose ``source_seq`` (the
  outbox event it describes) is already in the log is skipped: relaying an outbox event twice
  stores it once.

The memory fake (:mod:`.memory_audit`) and the SQL log (:mod:`.sql.audit`) pass the same
contract tests (tests/store/test_audit_log.py). Nothing deletes or changes rows: there is no
API for it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import msgspec

from healthbridge.fhir.errors import InvalidRequest

GENESIS = bytes(32)
"""The "previous chain" of the first row."""

BODY_PREFIX = b'{"resourceType":"AuditEvent",'
"""How an :attr:`AuditEntry.body` starts; the stored content has ``"id":"<seq>",`` after it."""

_encode = msgspec.json.encode


class AuditEntry(NamedTuple):
    """One AuditEvent to append.

    ``body`` is its JSON without ``id`` (starting with :data:`BODY_PREFIX`); the log gives it the
    id ``str(seq)``. ``recorded`` is microseconds since the epoch (UTC). The other fields are
    what searches filter on: ``type``/``subtype`` are codes (``rest``/``read``...), ``patient``
    a Patient id, ``agent`` the user (fhirUser reference, or the subject when there is none),
    ``client`` the OAuth client id, ``source_seq`` the outbox event the entry describes.
    (Named tuples, not frozen dataclasses: thousands are built per second and a frozen
    dataclass of this size costs several times as much to make.)
    """

    recorded: int
    type: str
    subtype: str | None
    action: str
    outcome: str
    patient: str | None
    agent: str | None
    client: str | None
    body: bytes
    source_seq: int | None = None


class StoredAuditEvent(NamedTuple):
    """One stored row: the entry's columns, its number, content (with its id) and hashes, in
    the column order of the ``audit_event`` table."""

    seq: int
    recorded: int
    type: str
    subtype: str | None
    action: str
    outcome: str
    patient: str | None
    agent: str | None
    client: str | None
    source_seq: int | None
    content: bytes
    digest: bytes
    chain: bytes


class AuditHead(NamedTuple):
    """The last row's seq and chain, kept apart so that a truncated tail shows."""

    seq: int
    chain: bytes


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """An audit search (https://hl7.org/fhir/R4/auditevent.html#search). Each tuple is a set
    of accepted values (empty: any); ``since``/``before`` bound ``recorded`` as
    ``since <= recorded < before`` (microseconds). Results are ordered by ``recorded`` (then
    seq), oldest first unless ``descending``. ``total`` asks for the number of matches."""

    patient: tuple[str, ...] = ()
    agent: tuple[str, ...] = ()
    type: tuple[str, ...] = ()
    subtype: tuple[str, ...] = ()
    action: tuple[str, ...] = ()
    outcome: tuple[str, ...] = ()
    since: int | None = None
    before: int | None = None
    descending: bool = False
    count: int = 50
    total: bool = False


@dataclass(frozen=True, slots=True)
class AuditPage:
    events: list[StoredAuditEvent]
    next_cursor: str | None
    total: int | None


class AuditLog(Protocol):
    async def append(self, entries: Sequence[AuditEntry], key: bytes) -> list[int]:
        """Store ``entries`` in order, chained with ``key``, in one transaction; the seqs given
        (entries whose ``source_seq`` is stored already are skipped and get none)."""
        ...

    async def read(self, seq: int) -> StoredAuditEvent:
        """The row ``seq``; NotFound when there is none."""
        ...

    async def search(self, query: AuditQuery, cursor: str | None = None) -> AuditPage:
        """One page of ``query``; ``cursor`` is the previous page's ``next_cursor`` (a
        malformed one raises InvalidRequest)."""
        ...

    async def scan(self, after_seq: int, limit: int) -> list[StoredAuditEvent]:
        """Up to ``limit`` rows with ``seq > after_seq``, in seq order (for the verifier)."""
        ...

    async def head(self) -> AuditHead | None:
        """The head; None before the first append."""
        ...


def entry_digest(
    recorded: int,
    type: str,
    subtype: str | None,
    action: str,
    outcome: str,
    patient: str | None,
    agent: str | None,
    client: str | None,
    source_seq: int | None,
    content: bytes,
) -> bytes:
    """SHA-256 over the searchable columns (as a JSON array) and the stored JSON bytes."""
    columns = [recorded, type, subtype, action, outcome, patient, agent, client, source_seq]
    digest = hashlib.sha256(_encode(columns))
    digest.update(b"\n")
    digest.update(content)
    return digest.digest()


def stored_digest(row: StoredAuditEvent) -> bytes:
    """:func:`entry_digest` of a stored row, recomputed from its columns."""
    return entry_digest(
        row.recorded,
        row.type,
        row.subtype,
        row.action,
        row.outcome,
        row.patient,
        row.agent,
        row.client,
        row.source_seq,
        row.content,
    )


def chain_link(key: bytes, previous: bytes, seq: int, digest: bytes) -> bytes:
    """HMAC-SHA256(key, previous || seq as 8 bytes big-endian || digest)."""
    return hmac.digest(key, previous + seq.to_bytes(8, "big") + digest, "sha256")


class _Chainer:
    """:func:`chain_link` for many rows with one key: the keyed HMAC state is made once and
    copied per row (a third of the cost of ``hmac.digest``)."""

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, digestmod="sha256")

    def link(self, previous: bytes, seq: int, digest: bytes) -> bytes:
        mac = self._keyed.copy()
        mac.update(previous + seq.to_bytes(8, "big") + digest)
        return mac.digest()


_ID_AT = len(BODY_PREFIX)


def with_id(body: bytes, seq: int) -> bytes:
    """The stored content: ``body`` with ``"id":"<seq>"`` as its second member."""
    if not body.startswith(BODY_PREFIX):
        raise ValueError("an AuditEntry body must start with " + BODY_PREFIX.decode())
    return b"".join((BODY_PREFIX, b'"id":"%d",' % seq, memoryview(body)[_ID_AT:]))


def chained(
    entries: Sequence[AuditEntry], key: bytes, head: AuditHead | None
) -> tuple[list[StoredAuditEvent], AuditHead]:
    """The rows ``entries`` become after ``head``, and the new head."""
    seq, previous = (0, GENESIS) if head is None else (head.seq, head.chain)
    chainer = _Chainer(key)
    rows: list[StoredAuditEvent] = []
    for entry in entries:
        seq += 1
        recorded, type, subtype, action, outcome, patient, agent, client, body, source = entry
        content = with_id(body, seq)
        digest = entry_digest(
            recorded, type, subtype, action, outcome, patient, agent, client, source, content
        )
        previous = chainer.link(previous, seq, digest)
        rows.append(
            StoredAuditEvent(
                seq,
                recorded,
                type,
                subtype,
                action,
                outcome,
                patient,
                agent,
                client,
                source,
                content,
                digest,
                previous,
            )
        )
    return rows, AuditHead(seq, previous)


def unique_sources(entries: Sequence[AuditEntry], stored: set[int]) -> list[AuditEntry]:
    """``entries`` without those whose ``source_seq`` is in ``stored`` or repeats an earlier
    one of the batch."""
    seen = set(stored)
    kept: list[AuditEntry] = []
    for entry in entries:
        if entry.source_seq is not None:
            if entry.source_seq in seen:
                continue
            seen.add(entry.source_seq)
        kept.append(entry)
    return kept


def encode_cursor(row: StoredAuditEvent, query: AuditQuery) -> str:
    """The opaque cursor of the page after ``row``."""
    direction = "d" if query.descending else "a"
    raw = f"{direction}.{row.recorded}.{row.seq}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, query: AuditQuery) -> tuple[int, int]:
    """``(recorded, seq)`` of the last row of the previous page; InvalidRequest if malformed
    or made for the other sort order."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        direction, recorded, seq = raw.split(".")
        if direction != ("d" if query.descending else "a"):
            raise ValueError("made for the other order")
        return int(recorded), int(seq)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidRequest(
            "The _cursor is not one this server gave for this search", code="value"
        ) from None
