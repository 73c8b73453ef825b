"""The SQL :class:`~healthbridge.store.subscriptions.DeliveryQueue`: the ``subscription_state``,
``subscription_delivery`` and ``subscription_cursor`` tables (:mod:`.tables`).

Event numbers of the Subscriptions Backport IG (https://hl7.org/fhir/uv/subscriptions-backport/).
Every change is one transaction (``Engine.write_all``: a change of a group commit on SQLite, a
unit of work on PostgreSQL), and each locks what it changes in one order (subscription rows
before delivery rows; the dispatcher's cursor first when enqueueing, subscriptions sorted by id)
so PostgreSQL transactions do not deadlock:

* ``subscription_state.next_attempt`` is when the subscription's head (its lowest pending
  event) may be claimed: the head's due time, or the end of the lease it is under. Claiming
  reads the subscriptions due by that index, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite's
  single writer serialises claimers, in this process and others), leases their heads and moves
  ``next_attempt`` to the lease's end: no two claimers get one subscription, so at most one
  event of a subscription is in flight and events go out in number order.
* Enqueueing upserts the dispatcher's cursor first (a row lock that serialises runs of one
  dispatcher), skips events already recorded for the same (outbox seq, subscription), and takes
  each subscription's numbers with one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` (on
  PostgreSQL one such statement numbers all of them, and one more inserts every delivery).
* On PostgreSQL, deliveries marked delivered while a settle is under way go together in the
  next statement (:class:`~healthbridge.infra.batching.Coalescer`), and a process that changes
  the queue vacuums ``subscription_state`` at most once every :data:`VACUUM_EVERY_S`
  (:data:`~.subscription_statements._PG_VACUUM` says why).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from healthbridge.infra.batching import Coalescer
from healthbridge.infra.logging import get_logger
from healthbridge.store.instants import Clock, from_micros, to_micros
from healthbridge.store.sql.compiled import Statement
from healthbridge.store.sql.engine import Engine, Row, Session, Work
from healthbridge.store.sql.subscription_statements import (
    DELIVERY_COLUMNS,
    STATE_COLUMNS,
    Finishing,
    SubscriptionStatements,
    filter_size,
)
from healthbridge.store.sql.transaction import to_stored
from healthbridge.store.subscriptions import (
    LAST_EVENT,
    NOT_HELD,
    Batch,
    Delivery,
    NewEvent,
    Settled,
    SubscriptionEvent,
    SubscriptionState,
    SubscriptionStatus,
    check_claim_filter,
)

VACUUM_EVERY_S = 1.0
"""How often, at most, a process vacuums the state table while it changes the queue."""
_log = get_logger("healthbridge.store.subscriptions")

assert DELIVERY_COLUMNS[:2] == ("id", "subscription_id") and len(STATE_COLUMNS) == 7


def _instant(micros: int | None) -> datetime | None:
    return None if micros is None else from_micros(micros)


def _delivery(row: Row) -> Delivery:
    (id, sub, number, seq, ftype, fid, fversion, extra, recorded) = row[:9]
    (state, attempts, due, owner, lease_until, error, delivered) = row[9:]
    event = SubscriptionEvent(
        sub, number, seq, ftype, fid, fversion, json.loads(extra), from_micros(recorded)
    )
    return Delivery(
        id,
        event,
        state,
        attempts,
        from_micros(due),
        owner,
        _instant(lease_until),
        error,
        _instant(delivered),
    )


def _state(row: Row) -> SubscriptionState:
    sub, status, events, error, failures, last_delivered, next_attempt = row
    return SubscriptionState(
        sub, status, events, error, failures, last_delivered, _instant(next_attempt)
    )


def _rows(items: Sequence[NewEvent], now: int) -> list[dict[str, Any]]:
    """The rows to insert, in the order given (event numbers still to fill in)."""
    return [
        {
            "subscription_id": item.subscription_id,
            "outbox_seq": item.outbox_seq,
            "focus_type": item.focus_type,
            "focus_id": item.focus_id,
            "focus_version": item.focus_version,
            "extra": json.dumps(item.extra, sort_keys=True, separators=(",", ":")),
            "recorded": now,
            "state": "pending",
            "attempts": 0,
            "due": now,
            "owner": None,
            "lease_until": None,
            "error": None,
            "delivered": None,
        }
        for item in items
    ]


def _unseen(items: Sequence[NewEvent], seen: set[tuple[int, str]]) -> list[NewEvent]:
    """``items`` less those recorded before or earlier in the batch."""
    fresh = []
    for item in items:
        key = (item.outbox_seq, item.subscription_id)
        if key not in seen:
            seen.add(key)
            fresh.append(item)
    return fresh


def _event(row: dict[str, Any]) -> SubscriptionEvent:
    return SubscriptionEvent(
        row["subscription_id"],
        row["event_number"],
        row["outbox_seq"],
        row["focus_type"],
        row["focus_id"],
        row["focus_version"],
        json.loads(row["extra"]),
        from_micros(row["recorded"]),
    )


class SqlSubscriptions:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock
        self._sql = SubscriptionStatements(engine.dialect)
        self._deliveries: Coalescer[tuple[int, str], Settled] | None = None
        if self._sql.delivered_all is not None:
            self._deliveries = Coalescer(self._delivered_all)
        self._vacuumed = -VACUUM_EVERY_S
        self._vacuuming: asyncio.Task[None] | None = None

    def _now(self) -> int:
        return to_micros(self._clock())

    async def enqueue(self, batch: Batch) -> list[SubscriptionEvent]:
        now = self._now()
        sql = self._sql
        seqs = [item.outbox_seq for item in batch.events]

        async def work(session: Session) -> list[dict[str, Any]]:
            advance = sql.advance.bind(name=batch.dispatcher, after_seq=batch.after_seq)
            await session.execute([(sql.advance, advance)])
            if not seqs:
                return []
            args = sql.existing.bind(low=min(seqs), high=max(seqs))
            seen = {(row[0], row[1]) for row in await session.fetch_all(sql.existing, args)}
            rows = _rows(_unseen(batch.events, seen), now)
            by_sub: dict[str, list[dict[str, Any]]] = {}
            for row in rows:
                by_sub.setdefault(row["subscription_id"], []).append(row)
            await self._number_all(session, by_sub, now)
            if rows and sql.insert_all is not None:  # one statement (PostgreSQL)
                columns = {name: [row[name] for row in rows] for name in sql.insert_all.names}
                await session.execute([(sql.insert_all, sql.insert_all.bind(**columns))])
            elif rows:
                values = [sql.insert.bind(**row) for row in rows]
                await session.execute([(sql.insert, values)])
            return rows

        events = [_event(row) for row in await self._engine.write_all(work)]
        if events:
            self._changed()
        return events

    async def _number_all(
        self, session: Session, by_sub: dict[str, list[dict[str, Any]]], now: int
    ) -> None:
        """Number each subscription's rows, the subscriptions in id order (their rows locked
        so): in one statement where the dialect can, else one per subscription."""
        subs = sorted(by_sub)
        if not subs:
            return
        statement = self._sql.number_all
        if statement is not None:
            counts = [len(by_sub[sub]) for sub in subs]
            args = statement.bind(subs=subs, counts=counts, now=now)
            lasts = {str(r[0]): int(r[1]) for r in await session.fetch_all(statement, args)}
        else:
            lasts = {}
            for sub in subs:
                one = self._sql.number.bind(sub=sub, count=len(by_sub[sub]), now=now)
                last = await session.fetch_one(self._sql.number, one)
                assert last is not None
                lasts[sub] = int(last[0])
        for sub in subs:
            first = lasts[sub] - len(by_sub[sub]) + 1
            for offset, row in enumerate(by_sub[sub]):
                row["event_number"] = first + offset

    async def dispatcher_cursor(self, name: str) -> int:
        row = await self._engine.fetch_one(self._sql.cursor, self._sql.cursor.bind(name=name))
        return 0 if row is None else int(row[0])

    async def claim(
        self,
        now: datetime,
        limit: int,
        lease_s: float,
        owner: str,
        *,
        only: Collection[str] | None = None,
        skip: Collection[str] = (),
    ) -> list[Delivery]:
        check_claim_filter(only, skip)
        if limit <= 0 or (only is not None and not only):
            return []
        at = to_micros(now)
        until = to_micros(now + timedelta(seconds=lease_s))
        only_ids = _padded("only", only) if only is not None else None
        skip_ids = _padded("skip", skip) if skip else {}
        shape = (None if only_ids is None else len(only_ids), len(skip_ids))
        args = {"now": at, "limit": limit, "owner": owner, "until": until}
        args |= {**(only_ids or {}), **skip_ids}
        at_once = self._sql.claim_at_once(*shape)
        if at_once is not None:
            found = await self._engine.write_one(_fetch_all(at_once, at_once.bind(**args)))
            leased = [_claimed(row) for row in found]
        else:
            rows, numbered = await self._engine.write_all(self._claim_steps(shape, args))
            lease_end = from_micros(until)
            leased = [_leased(_delivery(row), owner, lease_end, numbered) for row in rows]
        if leased:
            self._changed()
        return sorted(leased, key=lambda d: (d.due, d.id))

    def _claim_steps(
        self, shape: tuple[int | None, int], args: dict[str, Any]
    ) -> Work[tuple[list[Row], dict[str, int]]]:
        """The claim statement by statement in a transaction (SQLite): the ready
        subscriptions, their heads, then the lease and the hold. Returns the heads' rows and
        each ready subscription's ``events_since_start``."""
        sql = self._sql
        ready_of = sql.ready(*shape)
        at, until = args["now"], args["until"]

        async def work(session: Session) -> tuple[list[Row], dict[str, int]]:
            ready = await session.fetch_all(ready_of, ready_of.bind(**args))
            if not ready:
                return [], {}
            subs = {f"sub{i}": row[0] for i, row in enumerate(ready)}
            heads_of = sql.heads(len(subs))
            heads = await session.fetch_all(heads_of, heads_of.bind(now=at, **subs))
            if not heads:
                return [], {}
            ids = {f"id{i}": row[0] for i, row in enumerate(heads)}
            held = {f"sub{i}": row[1] for i, row in enumerate(heads)}
            lease, hold = sql.lease(len(ids)), sql.hold(len(held))
            await session.execute(
                [
                    (lease, lease.bind(owner=args["owner"], until=until, **ids)),
                    (hold, hold.bind(until=until, **held)),
                ]
            )
            return heads, {str(row[0]): int(row[1]) for row in ready}

        return work

    async def _finish(self, id: int, owner: str, how: Finishing, **values: Any) -> Settled:
        """Change delivery ``id`` if ``owner`` holds it, then its subscription's counters: in
        one statement where the dialect can, else step by step in a transaction (on SQLite,
        one hop to the writer thread all the same)."""
        sql = self._sql
        now = self._now()
        at_once = how.at_once
        if at_once is not None:
            args = at_once.bind(id=id, owner=owner, now=now, **values)

            async def one(session: Session) -> Settled:
                row = await session.fetch_one(at_once, args)
                return NOT_HELD if row is None else Settled(True, _instant(row[0]))

            settled = await self._engine.write_one(one)
            self._changed()
            return settled

        async def work(session: Session) -> Settled:
            locked = await session.fetch_one(sql.lock_of, sql.lock_of.bind(id=id))
            if locked is None:
                return NOT_HELD
            change = how.change.bind(id=id, owner=owner, now=now, **values)
            row = await session.fetch_one(how.change, change)
            if row is None:
                return NOT_HELD
            settle = how.settle.bind(sub=locked[0], number=row[0], now=now)
            settled = await session.fetch_one(how.settle, settle)
            return Settled(True, _instant(settled[0]) if settled is not None else None)

        return await self._engine.write_all(work)

    async def delivered(self, id: int, owner: str) -> Settled:
        if self._deliveries is not None:  # PostgreSQL: those finishing together, at once
            return await self._deliveries((id, owner))
        return await self._finish(id, owner, self._sql.done)

    async def _delivered_all(self, items: list[tuple[int, str]]) -> list[Settled]:
        """Deliveries (id, owner) delivered in one statement; each one's :class:`Settled`."""
        statement = self._sql.delivered_all
        assert statement is not None
        ids, owners = [id for id, _ in items], [owner for _, owner in items]
        args = statement.bind(ids=ids, owners=owners, now=self._now())
        rows = await self._engine.write_one(_fetch_all(statement, args))
        found = {(int(row[0]), str(row[1])): _instant(row[2]) for row in rows}
        self._changed()
        return [Settled(True, found[item]) if item in found else NOT_HELD for item in items]

    def _changed(self) -> None:
        """The queue changed: vacuum its state table (:data:`_PG_VACUUM`), in the background,
        at most once every :data:`VACUUM_EVERY_S` (PostgreSQL; nothing to do on SQLite, which
        updates in place)."""
        vacuum = self._sql.vacuum
        if vacuum is None or (self._vacuuming is not None and not self._vacuuming.done()):
            return
        now = time.monotonic()
        if now - self._vacuumed >= VACUUM_EVERY_S:
            self._vacuumed = now
            self._vacuuming = asyncio.create_task(self._vacuum(vacuum))

    async def _vacuum(self, vacuum: Statement) -> None:
        try:
            await self._engine.write_one(_execute(vacuum))
        except Exception as exc:  # (the next change tries again)
            _log.warning("subscription queue vacuum failed", error=repr(exc))

    async def close(self) -> None:
        """Wait for settles and the vacuum under way (before the engine closes)."""
        if self._deliveries is not None:
            await self._deliveries.idle()
        if self._vacuuming is not None:
            await asyncio.gather(self._vacuuming, return_exceptions=True)

    async def failed(self, id: int, owner: str, error: str, retry_at: datetime) -> Settled:
        return await self._finish(id, owner, self._sql.retry, error=error, due=to_micros(retry_at))

    async def dead_letter(self, id: int, owner: str, error: str) -> Settled:
        return await self._finish(id, owner, self._sql.dead, error=error)

    async def release(self, id: int, owner: str) -> Settled:
        return await self._finish(id, owner, self._sql.release)

    async def set_status(
        self, subscription_id: str, status: SubscriptionStatus, error: str | None = None
    ) -> SubscriptionState:
        statement = self._sql.set_status
        args = statement.bind(sub=subscription_id, status=status, error=error)

        async def work(session: Session) -> Row | None:
            return await session.fetch_one(statement, args)

        row = await self._engine.write_all(work)
        assert row is not None
        return _state(row)

    async def status(self, subscription_id: str) -> SubscriptionState | None:
        statement = self._sql.status
        row = await self._engine.fetch_one(statement, statement.bind(sub=subscription_id))
        return None if row is None else _state(row)

    async def events(
        self, subscription_id: str, since: int = 1, until: int = LAST_EVENT, limit: int = 100
    ) -> list[Delivery]:
        statement = self._sql.events
        args = statement.bind(sub=subscription_id, since=since, until=until, limit=max(limit, 0))
        return [_delivery(row) for row in await self._engine.fetch_all(statement, args)]

    async def redeliver(self, subscription_id: str, from_event: int) -> int:
        sql = self._sql
        now = self._now()
        sub = subscription_id

        async def work(session: Session) -> int:
            if await session.fetch_one(sql.lock, sql.lock.bind(sub=sub)) is None:
                return 0
            replay = sql.replay.bind(sub=sub, first=from_event, now=now)
            again = await session.fetch_all(sql.replay, replay)
            head = await session.fetch_one(
                sql.head_attempt, sql.head_attempt.bind(sub=sub, now=now)
            )
            lease = await session.fetch_one(
                sql.leased_until, sql.leased_until.bind(sub=sub, now=now)
            )
            next_attempt = _later(head, lease)
            await session.execute(
                [(sql.set_next, sql.set_next.bind(sub=sub, next_attempt=next_attempt))]
            )
            return len(again)

        return await self._engine.write_all(work)

    async def purge_delivered(self, older_than: datetime) -> int:
        statement = self._sql.purge
        args = statement.bind(before=to_micros(older_than))

        async def work(session: Session) -> int:
            return len(await session.fetch_all(statement, args))

        return await self._engine.write_all(work)


def _execute(statement: Statement) -> Work[None]:
    async def one(session: Session) -> None:
        await session.execute([(statement, ())])

    return one


def _fetch_all(statement: Statement, args: tuple[Any, ...]) -> Work[list[Row]]:
    async def one(session: Session) -> list[Row]:
        return await session.fetch_all(statement, args)

    return one


def _padded(prefix: str, ids: Collection[str]) -> dict[str, str]:
    """``ids`` as bind values ``<prefix>0``..., padded with repeats to :func:`filter_size`."""
    unique = sorted(set(ids))
    size = filter_size(len(unique))
    return {f"{prefix}{i}": unique[min(i, len(unique) - 1)] for i in range(size)}


_SINCE = len(DELIVERY_COLUMNS)


def _claimed(row: Row) -> Delivery:
    """A delivery as the one-statement claim returns it: leased, with its subscription's
    event count and its focus version (when stored)."""
    focus = row[_SINCE + 1 :]
    found = None if focus[0] is None else to_stored(focus)
    return replace(_delivery(row[:_SINCE]), events_since_start=int(row[_SINCE]), focus=found)


def _leased(delivery: Delivery, owner: str, until: datetime, numbered: dict[str, int]) -> Delivery:
    """``delivery`` as just leased, with its subscription's event count at the claim."""
    since = numbered.get(delivery.event.subscription_id)
    return replace(delivery, owner=owner, lease_until=until, events_since_start=since)


def _later(head: Row | None, lease: Row | None) -> int | None:
    """When the head may go after a replay: not before a delivery still leased (at most one in
    flight per subscription) ends its lease; None when nothing is pending."""
    head_at = None if head is None else head[0]
    lease_at = None if lease is None else lease[0]
    if head_at is None or lease_at is None:
        return head_at
    return max(int(head_at), int(lease_at))
