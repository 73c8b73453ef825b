"""The statements of the subscription delivery queue (:mod:`.subscriptions`), compiled once per
dialect; the same SQL on SQLite and PostgreSQL (``FOR UPDATE SKIP LOCKED`` compiles to nothing
on SQLite, whose writer holds the database's write lock anyway).

Event numbers and delivery follow https://hl7.org/fhir/uv/subscriptions-backport/.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    ScalarSelect,
    Select,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from healthbridge.store.sql.compiled import VERSION_COLUMNS, Statement, compile_statement
from healthbridge.store.sql.dialects import Dialect, upsert_insert
from healthbridge.store.sql.tables import (
    resource_history,
    subscription_cursor,
    subscription_delivery,
    subscription_state,
)

_d = subscription_delivery.c
_s = subscription_state.c
_c = subscription_cursor.c

DELIVERY_COLUMNS = tuple(column.name for column in subscription_delivery.columns)
STATE_COLUMNS = tuple(column.name for column in subscription_state.columns)
_INSERTED = tuple(name for name in DELIVERY_COLUMNS if name != "id")


def head_attempt() -> ScalarSelect[Any]:
    """When the lowest pending event of subscription ``:sub`` may be claimed: its due time, or
    the end of the lease it is under; NULL when nothing is pending."""
    return (
        select(case((_d.lease_until > bindparam("now"), _d.lease_until), else_=_d.due))
        .where(_d.subscription_id == bindparam("sub"), _d.state == "pending")
        .order_by(_d.event_number)
        .limit(1)
        .scalar_subquery()
    )


def filter_size(count: int) -> int:
    """The length a claim filter of ``count`` ids is padded to: the next power of two."""
    return 1 << max(count - 1, 0).bit_length()


def _binds(prefix: str, count: int) -> list[BindParameter[Any]]:
    return [bindparam(f"{prefix}{i}") for i in range(count)]


def _ready_query(only: int | None, skip: int) -> Select[Any]:
    """See :meth:`SubscriptionStatements.ready`."""
    query = (
        select(_s.subscription_id, _s.events_since_start)
        .where(_s.status == "active", _s.next_attempt <= bindparam("now"))
        .order_by(_s.next_attempt)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
    )
    if only is not None:
        query = query.where(_s.subscription_id.in_(_binds("only", only)))
    if skip:
        query = query.where(_s.subscription_id.not_in(_binds("skip", skip)))
    return query


def _unleased() -> ColumnElement[bool]:
    return or_(_d.lease_until.is_(None), _d.lease_until <= bindparam("now"))


def _settle(dialect: Dialect, *, success: bool | None) -> Statement:
    """The subscription after its head was delivered (or failed, or was given up on; None:
    handed back, only the next attempt moves); returns its next attempt."""
    values: dict[str, Any] = {"next_attempt": head_attempt()}
    if success:
        values.update(failures=0, last_delivered=bindparam("number"))
    elif success is not None:
        values.update(failures=_s.failures + 1)
    query = update(subscription_state).where(_s.subscription_id == bindparam("sub"))
    return compile_statement(query.values(values).returning(_s.next_attempt), dialect)


def _finish(dialect: Dialect, **values: Any) -> Statement:
    """Change a delivery ``:id`` leased to ``:owner`` that is still pending."""
    owned = and_(_d.id == bindparam("id"), _d.owner == bindparam("owner"), _d.state == "pending")
    query = update(subscription_delivery).where(owned)
    query = query.values(owner=null(), lease_until=null(), **values)
    return compile_statement(query.returning(_d.event_number), dialect)


def _finish_at_once(dialect: Dialect, *, failed: bool, **values: Any) -> Statement:
    """The delivery's change (a failure when ``failed``, else a hand-back; a delivery goes
    through :data:`_PG_DELIVERED_ALL`) and the subscription's settle in ONE statement, for
    dialects whose
    INSERT/UPDATE ... RETURNING may sit in WITH (PostgreSQL): one round trip instead of five
    (BEGIN, three statements, COMMIT). Same order of locks as step by step: the subscription's
    row (FOR UPDATE), then the delivery. A data-modifying CTE's changes are not seen by the rest
    of its statement, so the new ``next_attempt`` is worked out over the snapshot's pending
    events other than ``:id`` plus the changed delivery as RETURNING gives it (if still
    pending), or ``:now`` when there is none in the snapshot but the subscription has numbered
    later events (queued by an enqueue that committed while this statement waited for the
    subscription's row). Returns the new ``next_attempt``; no row when ``:owner`` does not hold
    ``:id``."""
    delivery_sub = select(_d.subscription_id).where(_d.id == bindparam("id")).scalar_subquery()
    locked = (
        select(_s.subscription_id)
        .where(_s.subscription_id == delivery_sub)
        .with_for_update()
        .cte("locked")
    )
    owned = and_(
        _d.id == bindparam("id"),
        _d.owner == bindparam("owner"),
        _d.state == "pending",
        _d.subscription_id.in_(select(locked.c.subscription_id)),
    )
    changed = (
        update(subscription_delivery)
        .where(owned)
        .values(owner=null(), lease_until=null(), **values)
        .returning(_d.subscription_id, _d.event_number, _d.state, _d.due, _d.lease_until)
        .cte("changed")
    )
    first_other = (  # one descent of the (subscription_id, state, event_number) index
        select(_d.event_number, _d.due, _d.lease_until)
        .where(_d.subscription_id == delivery_sub, _d.state == "pending", _d.id != bindparam("id"))
        .order_by(_d.event_number)
        .limit(1)
        .subquery("first_other")
    )
    others = select(first_other.c.event_number, first_other.c.due, first_other.c.lease_until)
    itself = select(changed.c.event_number, changed.c.due, changed.c.lease_until).where(
        changed.c.state == "pending"
    )
    pending = union_all(others, itself).subquery("pending")
    lease_end = pending.c.lease_until
    head = (
        select(case((lease_end > bindparam("now"), lease_end), else_=pending.c.due))
        .order_by(pending.c.event_number)
        .limit(1)
        .scalar_subquery()
    )
    # The snapshot predates the lock: an enqueue that held the subscription's row until just
    # before may have queued events the snapshot lacks. They come after the settled one (its
    # events_since_start, read from the row as locked, says so): due now, not "nothing left".
    newer = case((_s.events_since_start > changed.c.event_number, bindparam("now")))
    settle: dict[str, Any] = {"next_attempt": func.coalesce(head, newer)}
    if failed:
        settle.update(failures=_s.failures + 1)
    query = (
        update(subscription_state)
        .where(_s.subscription_id == changed.c.subscription_id)
        .values(settle)
        .returning(_s.next_attempt)
    )
    return compile_statement(query, dialect)


_PG_VACUUM = Statement("VACUUM (SKIP_LOCKED) subscription_state", (), {})
"""The hot state table vacuumed (PostgreSQL, https://www.postgresql.org/docs/current/routine-vacuuming.html):
each event updates its subscription's row three times (numbered, held, settled) and a new
``next_attempt`` is a new entry in the ``(status, next_attempt)`` index, so a table of 200
rows held 29,000 dead versions after a five-minute benchmark (autovacuum off; with it on, it
looks at a table once a ``autovacuum_naptime``, a minute by default), and every claim and
settle read through them: vacuumed each second, the queue's PostgreSQL CPU per delivery fell
from 0.40 to 0.25 ms. ``SKIP_LOCKED``: a vacuum under way in another process is not waited
for."""
_PG_NUMBER_ALL = Statement(
    """INSERT INTO subscription_state
  (subscription_id, status, events_since_start, error, failures, last_delivered, next_attempt)
SELECT n.sub, 'requested', n.count, NULL, 0, 0, $3
FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS n(sub, count, place)
ORDER BY n.place
ON CONFLICT (subscription_id) DO UPDATE SET
  events_since_start = subscription_state.events_since_start + excluded.events_since_start,
  next_attempt = coalesce(subscription_state.next_attempt, excluded.next_attempt)
RETURNING subscription_id, events_since_start""",
    ("subs", "counts", "now"),
    {},
)
""":meth:`SubscriptionStatements._number` for many subscriptions in ONE statement
(PostgreSQL): ``:counts`` numbers for each of ``:subs`` (given sorted: their rows are locked
in that order, as everywhere); returns each one's last number."""


def _insert_all() -> Any:
    """An enqueue's deliveries in ONE statement (PostgreSQL): one array per column, as
    :mod:`.writes` inserts index rows. (A binary COPY measured no faster per enqueue, and the
    mixed benchmark ran lower with it.)"""
    columns = [subscription_delivery.c[name] for name in _INSERTED]
    arrays = [cast(bindparam(c.name), ARRAY(c.type)) for c in columns]
    rows = func.unnest(*arrays).table_valued(*_INSERTED).render_derived("r")
    return insert(subscription_delivery).from_select(
        list(_INSERTED), select(*(rows.c[name] for name in _INSERTED))
    )


_PG_DELIVERED_ALL = Statement(
    """WITH input AS (
  SELECT * FROM unnest((SELECT $1::bigint[]), (SELECT $2::text[])) AS i(id, owner)),
locked AS (
  SELECT s.subscription_id FROM subscription_state s
  WHERE s.subscription_id = ANY (ARRAY(
    SELECT d.subscription_id FROM subscription_delivery d JOIN input i ON d.id = i.id))
  ORDER BY s.subscription_id FOR UPDATE),
changed AS (
  UPDATE subscription_delivery d
  SET state = 'delivered', owner = NULL, lease_until = NULL, delivered = $3
  FROM input i
  WHERE d.id = i.id AND d.owner = i.owner AND d.state = 'pending'
    AND (SELECT count(*) FROM locked) >= 0
  RETURNING d.id, i.owner, d.subscription_id, d.event_number),
settled AS (
  SELECT subscription_id, max(event_number) AS last, array_agg(id) AS ids
  FROM changed GROUP BY subscription_id),
updated AS (
  UPDATE subscription_state s
  SET failures = 0, last_delivered = t.last, next_attempt = coalesce(
    (SELECT CASE WHEN d.lease_until > $3 THEN d.lease_until ELSE d.due END
     FROM subscription_delivery d
     WHERE d.subscription_id = s.subscription_id AND d.state = 'pending'
       AND d.id <> ALL (t.ids)
     ORDER BY d.event_number LIMIT 1),
    CASE WHEN s.events_since_start > t.last THEN $3::bigint END)
  FROM settled t WHERE s.subscription_id = t.subscription_id
  RETURNING s.subscription_id, s.next_attempt)
SELECT c.id, c.owner, u.next_attempt FROM changed c JOIN updated u USING (subscription_id)""",
    ("ids", "owners", "now"),
    {},
)
"""Deliveries ``:ids`` (each held by its ``:owners``) delivered at ``:now``, and their
subscriptions settled, in ONE statement (PostgreSQL; :func:`_finish_at_once` settles one
failure or hand-back so),
its subscriptions' rows locked in id order (then their deliveries), as every queue change
does. Both are driven by the ids, whatever the table's statistics say: the subscriptions to
lock are collected first (``ARRAY(...)``), and ``locked`` is a one-time condition of
``changed``, run before it scans anything (as joins, PostgreSQL drove them from the
subscription's pending events: 4 ms a delivery with a backlog of 10,000). A subscription's
new ``next_attempt`` is its first pending event in the snapshot other than those just
delivered, or ``:now`` when its row, as locked, counts later events than the snapshot has
(queued meanwhile). Returns (id, owner, next_attempt) of each delivery it
changed; one not held by its owner is left out.

The arrays are read through sub-selects so that no plan knows their length: planned for the
length it was given, PostgreSQL found each plan cheaper than the prepared statement's generic
one and planned the statement anew on every run (0.4 ms each, 2.7 % of a core in the
benchmark's mixed phase); now it keeps the generic plan (index lookups all the same)."""


@dataclass(frozen=True, slots=True)
class Finishing:
    """One way of settling a leased delivery (delivered, retry, dead, released): the delivery's
    ``change`` then the subscription's ``settle`` in a transaction, or both ``at_once`` where
    the dialect can (None elsewhere, and for a delivery: see :func:`_finishing`)."""

    change: Statement
    settle: Statement
    at_once: Statement | None


def _finishing(dialect: Dialect, success: bool | None, **values: Any) -> Finishing:
    """A delivery (``success``) has no ``at_once``: PostgreSQL settles deliveries in batches
    (:data:`_PG_DELIVERED_ALL`)."""
    one = dialect.writes_in_one_statement and success is not True
    return Finishing(
        _finish(dialect, **values),
        _settle(dialect, success=success),
        _finish_at_once(dialect, failed=success is False, **values) if one else None,
    )


class SubscriptionStatements:
    """The compiled statements for one dialect (IN lists compiled per length, on demand)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._enqueueing()
        self._claiming()
        self._finishing()
        self._administering()
        self._replaying()
        self._heads: dict[int, Statement] = {}
        self._ready: dict[tuple[int | None, int], Statement] = {}
        self._claim: dict[tuple[int | None, int], Statement] = {}
        self._lease: dict[int, Statement] = {}
        self._hold: dict[int, Statement] = {}

    def _enqueueing(self) -> None:
        c = compile_statement
        d = self.dialect
        self.cursor = c(select(_c.after_seq).where(_c.name == bindparam("name")), d)
        upsert = upsert_insert(d, subscription_cursor).values(
            name=bindparam("name"), after_seq=bindparam("after_seq")
        )
        self.advance = c(
            upsert.on_conflict_do_update(
                index_elements=[_c.name],
                set_={"after_seq": upsert.excluded.after_seq},
                where=_c.after_seq < upsert.excluded.after_seq,
            ),
            d,
        )
        self.existing = c(
            select(_d.outbox_seq, _d.subscription_id).where(
                _d.outbox_seq >= bindparam("low"), _d.outbox_seq <= bindparam("high")
            ),
            d,
        )
        self.number = c(self._number(), d)
        one = d.writes_in_one_statement
        self.number_all = _PG_NUMBER_ALL if one else None
        self.insert = c(
            insert(subscription_delivery).values({n: bindparam(n) for n in _INSERTED}), d, many=True
        )
        self.insert_all = c(_insert_all(), d) if one else None

    def _claiming(self) -> None:
        c = compile_statement
        d = self.dialect
        self.lock_of = c(
            select(_s.subscription_id)
            .where(
                _s.subscription_id
                == select(_d.subscription_id).where(_d.id == bindparam("id")).scalar_subquery()
            )
            .with_for_update(),
            d,
        )
        self.lock = c(
            select(_s.subscription_id)
            .where(_s.subscription_id == bindparam("sub"))
            .with_for_update(),
            d,
        )

    def _finishing(self) -> None:
        d = self.dialect
        failed = {"attempts": _d.attempts + 1, "error": bindparam("error")}
        self.done = _finishing(d, True, state="delivered", delivered=bindparam("now"))
        self.retry = _finishing(d, False, due=bindparam("due"), **failed)
        self.dead = _finishing(d, False, state="dead", **failed)
        self.release = _finishing(d, None)
        self.delivered_all = _PG_DELIVERED_ALL if d.writes_in_one_statement else None
        self.vacuum = _PG_VACUUM if d.writes_in_one_statement else None

    def _administering(self) -> None:
        c = compile_statement
        d = self.dialect
        self.set_status = c(self._set_status(), d)
        self.status = c(
            select(*subscription_state.columns).where(_s.subscription_id == bindparam("sub")), d
        )
        self.events = c(
            select(*subscription_delivery.columns)
            .where(
                _d.subscription_id == bindparam("sub"),
                _d.event_number >= bindparam("since"),
                _d.event_number <= bindparam("until"),
            )
            .order_by(_d.event_number)
            .limit(bindparam("limit")),
            d,
        )

    def _replaying(self) -> None:
        c = compile_statement
        d = self.dialect
        self.replay = c(
            update(subscription_delivery)
            .where(_d.subscription_id == bindparam("sub"), _d.event_number >= bindparam("first"))
            .values(state="pending", due=bindparam("now"), attempts=0, error=None, delivered=None)
            .returning(_d.id),
            d,
        )
        self.leased_until = c(
            select(func.max(_d.lease_until)).where(
                _d.subscription_id == bindparam("sub"),
                _d.state == "pending",
                _d.lease_until > bindparam("now"),
            ),
            d,
        )
        self.head_attempt = c(select(head_attempt()), d)
        self.set_next = c(
            update(subscription_state)
            .where(_s.subscription_id == bindparam("sub"))
            .values(next_attempt=bindparam("next_attempt")),
            d,
        )
        purgeable = (
            select(_d.id)
            .where(_d.state == "delivered", _d.delivered < bindparam("before"))
            .with_for_update(skip_locked=True)
        )
        self.purge = c(
            delete(subscription_delivery).where(_d.id.in_(purgeable)).returning(_d.id), d
        )

    def _number(self) -> Any:
        """Take ``:count`` event numbers of subscription ``:sub`` (creating it ``requested``);
        returns the last one. A subscription with nothing pending becomes due at ``:now``."""
        upsert = upsert_insert(self.dialect, subscription_state).values(
            subscription_id=bindparam("sub"),
            status=literal("requested"),
            events_since_start=bindparam("count"),
            error=None,
            failures=literal(0),
            last_delivered=literal(0),
            next_attempt=bindparam("now"),
        )
        change = {
            "events_since_start": _s.events_since_start + upsert.excluded.events_since_start,
            "next_attempt": func.coalesce(_s.next_attempt, upsert.excluded.next_attempt),
        }
        return upsert.on_conflict_do_update(
            index_elements=[_s.subscription_id], set_=change
        ).returning(_s.events_since_start)

    def _set_status(self) -> Any:
        upsert = upsert_insert(self.dialect, subscription_state).values(
            subscription_id=bindparam("sub"),
            status=bindparam("status"),
            events_since_start=literal(0),
            error=bindparam("error"),
            failures=literal(0),
            last_delivered=literal(0),
            next_attempt=None,
        )
        failures = case((upsert.excluded.status == "active", 0), else_=_s.failures)
        change: dict[str, Any] = {
            "status": upsert.excluded.status,
            "error": upsert.excluded.error,
            "failures": failures,
        }
        return upsert.on_conflict_do_update(
            index_elements=[_s.subscription_id], set_=change
        ).returning(*subscription_state.columns)

    def ready(self, only: int | None, skip: int) -> Statement:
        """Up to ``:limit`` active subscriptions due at ``:now``, locked, with their
        ``events_since_start``: of ``:only0``... when ``only`` is not None, never ``:skip0``...
        (``only`` and ``skip`` ids bound; callers pad the lists to :func:`filter_size` with
        repeats so that few shapes are compiled)."""
        statement = self._ready.get((only, skip))
        if statement is None:
            query = _ready_query(only, skip)
            statement = self._ready[(only, skip)] = compile_statement(query, self.dialect)
        return statement

    def claim_at_once(self, only: int | None, skip: int) -> Statement | None:
        """The whole claim in ONE statement where the dialect can (PostgreSQL; None
        elsewhere): :meth:`ready`, each ready subscription's claimable head, the heads leased
        to ``:owner`` until ``:until`` and their subscriptions held as long; one round trip
        instead of six (BEGIN, ready, heads, lease, hold, COMMIT). Same order of locks as step
        by step: the subscriptions' rows (``FOR UPDATE SKIP LOCKED``), then their heads.
        Returns the leased deliveries' columns, their subscription's ``events_since_start``
        and their focus version's :data:`VERSION_COLUMNS` (NULLs when it is not stored)."""
        if not self.dialect.writes_in_one_statement:
            return None
        statement = self._claim.get((only, skip))
        if statement is None:
            query = self._claim_query(only, skip)
            statement = self._claim[(only, skip)] = compile_statement(query, self.dialect)
        return statement

    def _claim_query(self, only: int | None, skip: int) -> Any:
        ready_cte = _ready_query(only, skip).cte("ready")
        head = (  # one descent of the (subscription_id, state, event_number) index each
            select(_d.id)
            .where(_d.subscription_id == ready_cte.c.subscription_id, _d.state == "pending")
            .order_by(_d.event_number)
            .limit(1)
            .lateral("head")
        )
        heads = (
            select(head.c.id, ready_cte.c.subscription_id, ready_cte.c.events_since_start)
            .select_from(ready_cte.join(head, true()))
            .cte("heads")
        )
        leased = (  # claimable heads only: tested here, where PostgreSQL re-checks them on
            # the row as it is now, should a settle have committed since the snapshot
            update(subscription_delivery)
            .where(_d.id == heads.c.id, _d.state == "pending", _d.due <= bindparam("now"))
            .where(_unleased())
            .values(owner=bindparam("owner"), lease_until=bindparam("until"))
            .returning(*subscription_delivery.columns, heads.c.events_since_start)
            .cte("leased")
        )
        h = resource_history.c
        focus = (  # the focus version, read with the claim rather than after it
            select(leased, *(h[name] for name in VERSION_COLUMNS))
            .select_from(
                leased.outerjoin(
                    resource_history,
                    and_(
                        h.type == leased.c.focus_type,
                        h.id == leased.c.focus_id,
                        h.version_id == leased.c.focus_version,
                    ),
                )
            )
            .cte("focus")
        )
        held = (
            update(subscription_state)
            .where(_s.subscription_id == focus.c.subscription_id)
            .values(next_attempt=bindparam("until"))
        )
        return held.returning(*focus.c)

    def heads(self, count: int) -> Statement:
        """The claimable lowest pending delivery of each of subscriptions ``:sub0``..."""
        statement = self._heads.get(count)
        if statement is None:
            query = self._heads_query(count)
            statement = self._heads[count] = compile_statement(query, self.dialect)
        return statement

    def _heads_query(self, count: int) -> Any:
        """Each subscription's head found by one descent of the (subscription_id, state,
        event_number) index: a correlated ``min`` made PostgreSQL test every pending event of a
        subscription with a backlog (10,000 pending: 68 deliveries/s)."""
        head = (
            select(_d.id)
            .where(_d.subscription_id == _s.subscription_id, _d.state == "pending")
            .order_by(_d.event_number)
            .limit(1)
            .correlate(subscription_state)
            .scalar_subquery()
        )
        subs: list[BindParameter[Any]] = [bindparam(f"sub{i}") for i in range(count)]
        heads = select(head).where(_s.subscription_id.in_(subs))
        return select(*subscription_delivery.columns).where(
            _d.id.in_(heads), _d.due <= bindparam("now"), _unleased()
        )

    def lease(self, count: int) -> Statement:
        """Lease deliveries ``:id0``... to ``:owner`` until ``:until``."""
        statement = self._lease.get(count)
        if statement is None:
            query = (
                update(subscription_delivery)
                .where(_d.id.in_([bindparam(f"id{i}") for i in range(count)]))
                .values(owner=bindparam("owner"), lease_until=bindparam("until"))
            )
            statement = self._lease[count] = compile_statement(query, self.dialect)
        return statement

    def hold(self, count: int) -> Statement:
        """Subscriptions ``:sub0``... are busy until ``:until``."""
        statement = self._hold.get(count)
        if statement is None:
            query = (
                update(subscription_state)
                .where(_s.subscription_id.in_([bindparam(f"sub{i}") for i in range(count)]))
                .values(next_attempt=bindparam("until"))
            )
            statement = self._hold[count] = compile_statement(query, self.dialect)
        return statement
