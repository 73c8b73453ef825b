"""Checking the audit trail: every row unchanged, none deleted, the tail intact.

The log (:mod:`healthbridge.store.audit`) numbers rows 1, 2, 3... and chains them:
``digest = SHA-256(columns, content)``, ``chain = HMAC-SHA256(key, previous chain, seq,
digest)``, and a head row holds the last seq and chain. :func:`verify` walks the rows in seq
order and reports the first problem:

* ``changed``: a row's digest does not match its columns and content (a column or the JSON
  was edited), or its content's ``id`` is not its seq;
* ``deleted``: a seq is missing (rows were deleted; renumbering the rest after them would
  change their content's ids, and show as ``changed``);
* ``chain``: a row's chain does not follow from the previous row's (its chain column was
  edited, or the row was forged with a matching digest); on the very first row this usually
  means a different key;
* ``truncated``: the head is ahead of the last row (rows at the end were deleted), or the head's
  chain is not the last row's, or the head is missing while rows exist.

An attacker who can write the database and also rewinds the head to an earlier row's values
removes the tail unnoticed by the database alone: compare with a head recorded elsewhere
(``expect_seq``; the server logs the head as it goes). HIPAA 164.312(b)/(c)(1).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from healthbridge.store.audit import (
    GENESIS,
    AuditLog,
    StoredAuditEvent,
    chain_link,
    stored_digest,
)

Problem = Literal["changed", "deleted", "truncated", "chain"]
BATCH = 2000


@dataclass(frozen=True, slots=True)
class Verdict:
    """What :func:`verify` found: rows checked, the head's seq, and the first problem."""

    checked: int
    head_seq: int | None
    problem: Problem | None = None
    seq: int | None = None
    message: str = "the audit trail is intact"

    @property
    def ok(self) -> bool:
        return self.problem is None


def _id_of(row: StoredAuditEvent) -> bool:
    return row.content.startswith(b'{"resourceType":"AuditEvent","id":"%d",' % row.seq)


def _check_row(
    row: StoredAuditEvent, expected_seq: int, previous: bytes, key: bytes
) -> tuple[Problem, str] | None:
    """The problem of ``row`` and a message, or None."""
    if row.seq != expected_seq:
        missing = (
            f"seq {expected_seq} is"
            if row.seq == expected_seq + 1
            else f"seqs {expected_seq}-{row.seq - 1} are"
        )
        return "deleted", f"{missing} missing (deleted before row {row.seq})"
    if not hmac.compare_digest(stored_digest(row), row.digest) or not _id_of(row):
        return "changed", f"row {row.seq} does not match its digest (content or columns edited)"
    if not hmac.compare_digest(chain_link(key, previous, row.seq, row.digest), row.chain):
        if row.seq == 1:
            return "chain", (
                "row 1's chain does not match: the audit key differs from the one that wrote "
                "the log, or the row's chain column was edited"
            )
        return "chain", (
            f"row {row.seq}'s chain does not follow from row {row.seq - 1}'s: its chain column "
            "was edited, or the row was forged"
        )
    return None


async def verify(
    log: AuditLog,
    key: bytes,
    *,
    progress: Callable[[int, int], None] | None = None,
    expect_seq: int | None = None,
) -> Verdict:
    """Check the whole log with ``key``; ``progress(checked, head_seq)`` after each batch;
    ``expect_seq`` is a head seq recorded elsewhere that the log must have reached."""
    head = await log.head()
    head_seq = head.seq if head is not None else None
    previous, expected, checked = GENESIS, 1, 0
    while rows := await log.scan(expected - 1, BATCH):
        for row in rows:
            problem = _check_row(row, expected, previous, key)
            if problem is not None:
                return Verdict(checked, head_seq, problem[0], row.seq, problem[1])
            previous, expected, checked = row.chain, row.seq + 1, checked + 1
        if progress is not None:
            progress(checked, head_seq or checked)
    return _check_tail(checked, head_seq, head.chain if head else None, previous, expect_seq)


def _check_tail(
    checked: int,
    head_seq: int | None,
    head_chain: bytes | None,
    last_chain: bytes,
    expect_seq: int | None,
) -> Verdict:
    last = checked  # rows are 1..checked when nothing above failed
    if head_seq is None:
        if checked:
            return Verdict(checked, None, "truncated", last, "the head row is missing")
        return Verdict(0, None, message="the audit trail is empty")
    if head_seq > last:
        gone = f"row {head_seq} was" if head_seq == last + 1 else f"rows {last + 1}-{head_seq} were"
        message = f"{gone} deleted at the end (the head is at {head_seq}, the last row is {last})"
        return Verdict(checked, head_seq, "truncated", last + 1, message)
    if head_seq < last or head_chain is None or not hmac.compare_digest(head_chain, last_chain):
        message = f"the head (seq {head_seq}) does not match the last row ({last})"
        return Verdict(checked, head_seq, "truncated", head_seq, message)
    if expect_seq is not None and head_seq < expect_seq:
        message = f"the log ends at {head_seq} but had reached {expect_seq}: its tail was removed"
        return Verdict(checked, head_seq, "truncated", head_seq + 1, message)
    return Verdict(checked, head_seq)
