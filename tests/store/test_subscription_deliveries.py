"""Delivery queue contract (healthbridge.store.subscriptions): memory, SQLite and PostgreSQL.

Subscriptions Backport IG (https://hl7.org/fhir/uv/subscriptions-backport/): each event of a
subscription gets the next ``eventsSinceSubscriptionStart`` number, starting at 1, and a client
reads past events by number (``$events``). Delivery is at-least-once and in number order per
subscription; SECURITY.md: bounded retries with backoff, failing endpoints switched to ``error``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.store.instants import to_micros
from healthbridge.store.repository import Repository
from healthbridge.store.sql import open_repository
from healthbridge.store.subscriptions import MAX_CLAIM_FILTER as MAX
from healthbridge.store.subscriptions import Batch, NewEvent
from tests.support import databases
from tests.support.clock import FakeClock

D = "dispatcher"


def event(sub: str, seq: int, focus_id: str = "p1", **extra: object) -> NewEvent:
    return NewEvent(sub, seq, "Patient", focus_id, 1, dict(extra))


async def activate(repo: Repository, *subs: str) -> None:
    for sub in subs:
        await repo.subscriptions.set_status(sub, "active")


async def test_events_are_numbered_per_subscription_from_one(repo: Repository) -> None:
    queue = repo.subscriptions
    assert await queue.dispatcher_cursor(D) == 0
    batch = Batch(D, 7, [event("a", 3), event("b", 3), event("a", 5, "p2", n=1), event("a", 7)])
    recorded = await queue.enqueue(batch)
    assert [(e.subscription_id, e.number, e.outbox_seq) for e in recorded] == [
        ("a", 1, 3),
        ("b", 1, 3),
        ("a", 2, 5),
        ("a", 3, 7),
    ]
    assert recorded[2].focus_id == "p2" and recorded[2].extra == {"n": 1}
    assert await queue.dispatcher_cursor(D) == 7
    more = await queue.enqueue(Batch(D, 9, [event("b", 9)]))
    assert [e.number for e in more] == [2]
    state = await queue.status("a")
    assert state is not None
    assert (state.status, state.events_since_start, state.failures, state.last_delivered) == (
        "requested",
        3,
        0,
        0,
    )
    assert await queue.status("unknown") is None
    listed = await queue.events("a")
    assert [(d.event.number, d.state, d.attempts) for d in listed] == [
        (1, "pending", 0),
        (2, "pending", 0),
        (3, "pending", 0),
    ]


async def test_rerunning_a_batch_records_nothing_twice(repo: Repository) -> None:
    """A dispatcher that crashed after enqueueing and re-runs from an older cursor."""
    queue = repo.subscriptions
    await queue.enqueue(Batch(D, 5, [event("a", 4), event("a", 5)]))
    again = await queue.enqueue(Batch(D, 3, [event("a", 4), event("a", 5), event("a", 6)]))
    assert [(e.number, e.outbox_seq) for e in again] == [(3, 6)]
    assert await queue.dispatcher_cursor(D) == 5  # never moves back
    duplicate_in_batch = await queue.enqueue(Batch(D, 8, [event("b", 8), event("b", 8)]))
    assert len(duplicate_in_batch) == 1
    assert [d.event.number for d in await queue.events("a")] == [1, 2, 3]
    assert await queue.enqueue(Batch(D, 12, [])) == []  # nothing matched: the cursor moves
    assert await queue.dispatcher_cursor(D) == 12
    assert await queue.dispatcher_cursor("other") == 0


async def test_claims_one_per_subscription_lowest_first(repo: Repository, clock: FakeClock) -> None:
    queue = repo.subscriptions
    await queue.enqueue(Batch(D, 3, [event("a", 1), event("a", 2), event("b", 2), event("c", 3)]))
    await activate(repo, "a", "b")  # c stays requested: nothing of it is delivered
    claimed = await queue.claim(clock.now, 10, 30, "w1")
    assert sorted((d.event.subscription_id, d.event.number) for d in claimed) == [
        ("a", 1),
        ("b", 1),
    ]
    assert all(
        d.owner == "w1" and d.lease_until == clock.now + timedelta(seconds=30) for d in claimed
    )
    # each as claimed: its subscription's eventsSinceSubscriptionStart for the notification
    assert sorted((d.event.subscription_id, d.events_since_start) for d in claimed) == [
        ("a", 2),
        ("b", 1),
    ]
    assert await queue.claim(clock.now, 10, 30, "w2") == []  # a's event 2 waits for event 1
    a1 = next(d for d in claimed if d.event.subscription_id == "a")
    assert not await queue.delivered(a1.id, "w2")  # not its lease
    settled = await queue.delivered(a1.id, "w1")
    assert settled and settled.due(clock.now)  # a's event 2 may go now: claim again
    assert not await queue.delivered(a1.id, "w1")  # done already
    nxt = await queue.claim(clock.now, 10, 30, "w2")
    assert [(d.event.subscription_id, d.event.number) for d in nxt] == [("a", 2)]
    state = await queue.status("a")
    assert state is not None and state.last_delivered == 1
    done = (await queue.events("a", 1, 1))[0]
    assert done.state == "delivered" and done.delivered == clock.now and done.owner is None
    last = await queue.delivered(nxt[0].id, "w2")
    assert last and last.next_attempt is None and not last.due(clock.now)  # nothing pending


async def test_deliveries_settled_together(repo: Repository, clock: FakeClock) -> None:
    """Deliveries that finish at the same moment (PostgreSQL settles them in one statement):
    each gets its own answer, one whose lease the caller does not hold changes nothing, and
    each subscription's next event is due after its own."""
    queue = repo.subscriptions
    twice, once = ["s0", "s1", "s2"], ["s3", "s4", "s5"]
    events = [event(s, seq) for seq in (1, 2) for s in twice] + [event(s, 3) for s in once]
    await queue_and_activate(repo, events, *twice, *once)
    claimed = {d.event.subscription_id: d for d in await queue.claim(clock.now, 10, 30, "w")}
    assert sorted(claimed) == twice + once
    owners = {sub: "other" if sub == "s5" else "w" for sub in claimed}
    settled = dict(
        zip(
            claimed,
            await asyncio.gather(*(queue.delivered(d.id, owners[s]) for s, d in claimed.items())),
            strict=True,
        )
    )
    assert all(settled[sub].due(clock.now) for sub in twice)  # each one's event 2 is next
    assert [settled[sub].next_attempt for sub in ("s3", "s4")] == [None, None]
    assert not settled["s5"]  # not the caller's lease: still pending, still leased
    for sub in twice + once:
        state = await queue.status(sub)
        assert state is not None
        assert (state.last_delivered, state.failures) == ((0, 0) if sub == "s5" else (1, 0))
    (leased,) = await queue.events("s5")
    assert (leased.state, leased.owner) == ("pending", "w")
    again = await queue.claim(clock.now, 10, 30, "w")
    assert sorted((d.event.subscription_id, d.event.number) for d in again) == [
        (sub, 2) for sub in twice
    ]


async def test_a_claim_may_carry_the_focus_version(
    repo: Repository, clock: FakeClock, backend: str
) -> None:
    """PostgreSQL's claim reads each delivery's focus version with it (the worker need not read
    it again): exactly the stored version; none for a version that is not stored. Elsewhere the
    worker reads it (``focus`` None)."""
    first = await repo.create("Patient", {"resourceType": "Patient", "active": True}, id="p1")
    await repo.update("Patient", "p1", {"resourceType": "Patient", "id": "p1", "active": False})
    older = NewEvent("a", 1, "Patient", "p1", 1, {})
    missing = NewEvent("b", 2, "Patient", "p1", 9, {})
    await queue_and_activate(repo, [older, missing], "a", "b")
    claimed = {
        d.event.subscription_id: d for d in await repo.subscriptions.claim(clock.now, 9, 30, "w")
    }
    assert sorted(claimed) == ["a", "b"]
    assert claimed["b"].focus is None
    read = claimed["a"].focus
    if backend == "postgresql":
        assert read is not None
    if read is not None:
        assert (read.version_id, read.content) == (1, first.content)


async def queue_and_activate(repo: Repository, events: list[NewEvent], *subs: str) -> None:
    await repo.subscriptions.enqueue(Batch(D, max(e.outbox_seq for e in events), events))
    await activate(repo, *subs)


async def test_claim_limit(repo: Repository, clock: FakeClock) -> None:
    queue = repo.subscriptions
    subs = [f"s{i}" for i in range(5)]
    await queue.enqueue(Batch(D, 1, [event(s, 1) for s in subs]))
    await activate(repo, *subs)
    first = await queue.claim(clock.now, 2, 30, "w")
    rest = await queue.claim(clock.now, 10, 30, "w")
    assert len(first) == 2 and len(rest) == 3
    assert {d.event.subscription_id for d in first + rest} == set(subs)
    assert await queue.claim(clock.now, 0, 30, "w") == []


async def test_claim_only_some_subscriptions(repo: Repository, clock: FakeClock) -> None:
    """IG websocket channel: the connection bound to a subscription claims just its events
    (https://hl7.org/fhir/uv/subscriptions-backport/channels.html#websockets)."""
    queue = repo.subscriptions
    await queue.enqueue(Batch(D, 2, [event(s, seq) for seq in (1, 2) for s in "abc"]))
    await activate(repo, "a", "b", "c")
    assert await queue.claim(clock.now, 10, 30, "ws", only=[]) == []  # none named: none
    assert await queue.claim(clock.now, 10, 30, "ws", only=["unknown"]) == []
    claimed = await queue.claim(clock.now, 10, 30, "ws", only=["a", "c", "c"])
    assert sorted((d.event.subscription_id, d.event.number) for d in claimed) == [
        ("a", 1),
        ("c", 1),
    ]
    # still one in flight per subscription, lowest event first
    assert await queue.claim(clock.now, 10, 30, "ws", only={"a", "c"}) == []
    a1 = next(d for d in claimed if d.event.subscription_id == "a")
    assert await queue.delivered(a1.id, "ws")
    (a2,) = await queue.claim(clock.now, 10, 30, "ws", only=("a",))
    assert (a2.event.subscription_id, a2.event.number) == ("a", 2)
    (b1,) = await queue.claim(clock.now, 10, 30, "w")  # the rest is anyone's
    assert (b1.event.subscription_id, b1.event.number) == ("b", 1)


async def test_claim_skips_subscriptions(repo: Repository, clock: FakeClock) -> None:
    """The generic worker never claims a websocket subscription's events: they wait, pending
    and uncounted, for a connection that binds it."""
    queue = repo.subscriptions
    subs = [f"s{i}" for i in range(6)]
    await queue.enqueue(Batch(D, 1, [event(s, 1) for s in subs]))
    await activate(repo, *subs)
    claimed = await queue.claim(clock.now, 10, 30, "w", skip=["s0", "s3", "s5"])
    assert sorted(d.event.subscription_id for d in claimed) == ["s1", "s2", "s4"]
    assert await queue.claim(clock.now, 10, 30, "w", skip=["s0", "s3", "s5"]) == []
    both = await queue.claim(clock.now, 10, 30, "ws", only=["s0", "s1", "s3"], skip=["s3"])
    assert [d.event.subscription_id for d in both] == ["s0"]  # s1 is leased already
    state = await queue.status("s5")
    assert state is not None and (state.failures, state.last_delivered) == (0, 0)
    (pending,) = await queue.events("s5")
    assert (pending.state, pending.attempts, pending.owner) == ("pending", 0, None)
    (late,) = await queue.claim(clock.now, 10, 30, "ws", only=["s5"])
    assert late.id == pending.id


async def test_claim_filter_sizes(repo: Repository, clock: FakeClock) -> None:
    """Filters of many ids (padded to few statement shapes in SQL); too many is refused."""
    queue = repo.subscriptions
    subs = [f"s{i:03}" for i in range(40)]
    await queue.enqueue(Batch(D, 1, [event(s, 1) for s in subs]))
    await activate(repo, *subs)
    others = [f"x{i}" for i in range(300)]
    claimed = await queue.claim(clock.now, 100, 30, "w", only=subs[:17] + others, skip=subs[:5])
    assert sorted(d.event.subscription_id for d in claimed) == subs[5:17]
    rest = await queue.claim(clock.now, 100, 30, "w", skip=others + subs[30:])
    assert sorted(d.event.subscription_id for d in rest) == subs[:5] + subs[17:30]
    with pytest.raises(ValueError, match="at most"):
        await queue.claim(clock.now, 10, 30, "w", skip=[f"y{i}" for i in range(MAX + 1)])
    with pytest.raises(ValueError, match="at most"):
        await queue.claim(clock.now, 10, 30, "w", only=[f"y{i}" for i in range(MAX + 1)])


async def test_release_hands_the_delivery_back(repo: Repository, clock: FakeClock) -> None:
    """A claimer that is not the one to send it gives the lease back: no attempt counted,
    the same event is claimable at once and keeps its place in order."""
    queue = repo.subscriptions
    await queue.enqueue(Batch(D, 2, [event("a", 1), event("a", 2)]))
    await activate(repo, "a")
    (first,) = await queue.claim(clock.now, 10, 60, "w")
    assert not await queue.release(first.id, "other")
    released = await queue.release(first.id, "w")
    assert released and released.due(clock.now)
    assert not await queue.release(first.id, "w")  # not held any more
    state = await queue.status("a")
    assert state is not None and (state.failures, state.next_attempt) == (0, clock.now)
    (again,) = await queue.claim(clock.now, 10, 60, "ws", only=["a"])
    assert (again.id, again.attempts, again.error, again.owner) == (first.id, 0, None, "ws")
    assert await queue.delivered(again.id, "ws")
    (second,) = await queue.claim(clock.now, 10, 60, "ws", only=["a"])
    assert second.event.number == 2


async def test_failures_back_off_and_keep_order(repo: Repository, clock: FakeClock) -> None:
    queue = repo.subscriptions
    await queue.enqueue(Batch(D, 2, [event("a", 1), event("a", 2)]))
    await activate(repo, "a")
    (first,) = await queue.claim(clock.now, 10, 30, "w")
    retry_at = clock.now + timedelta(seconds=10)
    assert not await queue.failed(first.id, "other", "HTTP 500", retry_at)
    settled = await queue.failed(first.id, "w", "HTTP 500", retry_at)
    assert settled and settled.next_attempt == retry_at and not settled.due(clock.now)
    state = await queue.status("a")
    assert state is not None and state.failures == 1 and state.next_attempt == retry_at
    clock.advance(seconds=9)
    assert await queue.claim(clock.now, 10, 30, "w") == []  # neither event 1 nor event 2
    clock.advance(seconds=1)
    (again,) = await queue.claim(clock.now, 10, 30, "w")
    assert (again.id, again.attempts, again.error) == (first.id, 1, "HTTP 500")
    assert await queue.failed(again.id, "w", "timeout", clock.now)
    (third,) = await queue.claim(clock.now, 10, 30, "w")
    assert third.attempts == 2
    assert await queue.delivered(third.id, "w")
    state = await queue.status("a")
    assert state is not None and state.failures == 0 and state.last_delivered == 1


async def test_dead_letter_lets_the_next_event_go(repo: Repository, clock: FakeClock) -> None:
    queue = repo.subscriptions
    await queue.enqueue(Batch(D, 2, [event("a", 1), event("a", 2)]))
    await activate(repo, "a")
    (first,) = await queue.claim(clock.now, 10, 30, "w")
    assert not await queue.dead_letter(first.id, "other", "gone")
    settled = await queue.dead_letter(first.id, "w", "HTTP 410")
    assert settled and settled.due(clock.now)  # event 2 goes now
    (second,) = await queue.claim(clock.now, 10, 30, "w")
    assert second.event.number == 2
    dead = (await queue.events("a", 1, 1))[0]
    assert (dead.state, dead.attempts, dead.error, dead.owner) == ("dead", 1, "HTTP 410", None)
    state = await queue.status("a")
    assert state is not None and state.failures == 1


async def test_expired_lease_is_claimed_again(repo: Repository, clock: FakeClock) -> None:
    """At-least-once: the delivery of a worker that died goes to another one."""
    queue = repo.subscriptions
    await queue.enqueue(Batch(D, 1, [event("a", 1)]))
    await activate(repo, "a")
    (lost,) = await queue.claim(clock.now, 10, 5, "dead-worker")
    clock.advance(seconds=4)
    assert await queue.claim(clock.now, 10, 5, "w2") == []
    clock.advance(seconds=1)
    (taken,) = await queue.claim(clock.now, 10, 5, "w2")
    assert taken.id == lost.id and taken.owner == "w2"
    assert not await queue.delivered(lost.id, "dead-worker")  # it came back too late
    assert await queue.delivered(taken.id, "w2")


async def test_status_controls_delivery(repo: Repository, clock: FakeClock) -> None:
    queue = repo.subscriptions
    created = await queue.set_status("a", "requested")
    assert (created.events_since_start, created.next_attempt) == (0, None)
    await queue.enqueue(Batch(D, 2, [event("a", 1), event("a", 2)]))
    await activate(repo, "a")
    (first,) = await queue.claim(clock.now, 10, 30, "w")
    await queue.failed(first.id, "w", "refused", clock.now)
    errored = await queue.set_status("a", "error", "endpoint keeps refusing")
    assert (errored.status, errored.error, errored.failures) == (
        "error",
        "endpoint keeps refusing",
        1,
    )
    assert await queue.claim(clock.now, 10, 30, "w") == []
    await queue.set_status("a", "off")
    assert await queue.claim(clock.now, 10, 30, "w") == []
    active = await queue.set_status("a", "active")
    assert (active.error, active.failures, active.events_since_start) == (None, 0, 2)
    (again,) = await queue.claim(clock.now, 10, 30, "w")
    assert again.id == first.id


async def test_events_by_number(repo: Repository) -> None:
    """IG $events: eventsSinceNumber and eventsUntilNumber, inclusive."""
    queue = repo.subscriptions
    await queue.enqueue(Batch(D, 9, [event("a", seq, f"p{seq}") for seq in range(1, 10)]))
    await queue.enqueue(Batch(D, 9, [event("b", 1)]))
    assert [d.event.number for d in await queue.events("a", 3, 5)] == [3, 4, 5]
    assert [d.event.focus_id for d in await queue.events("a", 8)] == ["p8", "p9"]
    assert [d.event.number for d in await queue.events("a", limit=2)] == [1, 2]
    assert await queue.events("a", 10) == []
    assert await queue.events("nobody") == []


async def test_redeliver_replays_in_order(repo: Repository, clock: FakeClock) -> None:
    queue = repo.subscriptions
    await queue.enqueue(Batch(D, 4, [event("a", seq) for seq in range(1, 5)]))
    await activate(repo, "a")
    for _ in range(3):  # 1 and 3 delivered, 2 dead-lettered
        (d,) = await queue.claim(clock.now, 10, 30, "w")
        if d.event.number == 2:
            await queue.dead_letter(d.id, "w", "HTTP 400")
        else:
            await queue.delivered(d.id, "w")
    assert await queue.redeliver("a", 2) == 3
    assert await queue.redeliver("nobody", 1) == 0
    replayed = await queue.events("a", 2)
    assert [(d.event.number, d.state, d.attempts, d.error) for d in replayed] == [
        (2, "pending", 0, None),
        (3, "pending", 0, None),
        (4, "pending", 0, None),
    ]
    order = []
    while claimed := await queue.claim(clock.now, 10, 30, "w"):
        (d,) = claimed
        order.append(d.event.number)
        await queue.delivered(d.id, "w")
    assert order == [2, 3, 4]


async def test_redeliver_waits_for_the_event_in_flight(repo: Repository, clock: FakeClock) -> None:
    """At most one event of a subscription in flight, also when a replay starts meanwhile."""
    queue = repo.subscriptions
    await queue.enqueue(Batch(D, 2, [event("a", 1), event("a", 2)]))
    await activate(repo, "a")
    (first,) = await queue.claim(clock.now, 10, 30, "w")
    assert await queue.delivered(first.id, "w")
    (second,) = await queue.claim(clock.now, 10, 30, "w")
    assert await queue.redeliver("a", 1) == 2
    assert await queue.claim(clock.now, 10, 30, "w2") == []  # event 2 is still in flight
    assert await queue.delivered(second.id, "w")
    (replay,) = await queue.claim(clock.now, 10, 30, "w2")
    assert replay.event.number == 1
    # Event 2 was delivered after the replay was asked for: it is not sent again.
    assert await queue.delivered(replay.id, "w2")
    assert await queue.claim(clock.now, 10, 30, "w2") == []


async def test_purge_delivered(repo: Repository, clock: FakeClock) -> None:
    queue = repo.subscriptions
    await queue.enqueue(Batch(D, 3, [event("a", 1), event("a", 2), event("a", 3)]))
    await activate(repo, "a")
    (one,) = await queue.claim(clock.now, 10, 30, "w")
    await queue.delivered(one.id, "w")
    clock.advance(seconds=10)
    (two,) = await queue.claim(clock.now, 10, 30, "w")
    await queue.dead_letter(two.id, "w", "HTTP 400")
    assert await queue.purge_delivered(clock.now) == 1
    assert await queue.purge_delivered(clock.now) == 0
    assert [(d.event.number, d.state) for d in await queue.events("a")] == [
        (2, "dead"),
        (3, "pending"),
    ]
    state = await queue.status("a")
    assert state is not None and state.events_since_start == 3


async def test_extra_round_trips(repo: Repository) -> None:
    queue = repo.subscriptions
    extra = {"topic": "http://example.org/t", "names": ["Zoë 🩺"], "n": 12345678901234}
    (recorded,) = await queue.enqueue(Batch(D, 1, [NewEvent("a", 1, "Observation", "o", 7, extra)]))
    assert (recorded.focus_type, recorded.focus_version, recorded.extra) == (
        "Observation",
        7,
        extra,
    )
    (listed,) = await queue.events("a")
    assert listed.event == recorded


async def test_parallel_claims_share_nothing(repo: Repository, clock: FakeClock) -> None:
    queue = repo.subscriptions
    subs = [f"s{i}" for i in range(30)]
    await queue.enqueue(Batch(D, 2, [event(s, seq) for seq in (1, 2) for s in subs]))
    await activate(repo, *subs)
    results = await asyncio.gather(*(queue.claim(clock.now, 4, 30, f"w{i}") for i in range(10)))
    claimed = [d for batch in results for d in batch]
    assert len(claimed) == 30
    assert sorted(d.event.subscription_id for d in claimed) == sorted(subs)
    assert {d.event.number for d in claimed} == {1}


# --- several server processes on one database (each repository its own connections) ----------


@asynccontextmanager
async def repositories(url: str, count: int) -> AsyncIterator[list[Repository]]:
    opened = [await open_repository(url) for _ in range(count)]
    try:
        yield opened
    finally:
        for repository in opened:
            await repository.close()


async def test_enqueue_fails_whole(sql_url: str) -> None:
    """A batch that cannot be stored leaves the cursor, the numbers and the events as they
    were: the dispatcher matches the same outbox rows again."""
    async with repositories(sql_url, 1) as (repo,):
        queue = repo.subscriptions
        await queue.enqueue(Batch(D, 1, [event("a", 1)]))
        too_big = NewEvent("b", 3, "Patient", "p", 2**64)  # fails in the last statement
        with pytest.raises((OverflowError, InvalidRequest)):
            await queue.enqueue(Batch(D, 3, [event("a", 2), too_big]))
        assert await queue.dispatcher_cursor(D) == 1
        assert [d.event.number for d in await queue.events("a")] == [1]
        state = await queue.status("a")
        assert state is not None and state.events_since_start == 1
        assert await queue.status("b") is None


async def test_concurrent_dispatchers_record_a_batch_once(sql_url: str) -> None:
    async with repositories(sql_url, 4) as repos:
        batch = Batch(D, 50, [event(f"s{seq % 5}", seq) for seq in range(1, 51)])
        results = await asyncio.gather(*(r.subscriptions.enqueue(batch) for r in repos))
        assert sum(len(r) for r in results) == 50
        queue = repos[0].subscriptions
        for sub in (f"s{i}" for i in range(5)):
            numbers = [d.event.number for d in await queue.events(sub)]
            assert numbers == list(range(1, 11))


async def test_concurrent_workers_deliver_each_event_once_in_order(sql_url: str) -> None:
    """Four processes claim and deliver: no delivery handed out twice, never two events of one
    subscription in flight, each subscription's events delivered in number order."""
    subs = [f"s{i}" for i in range(12)]
    in_flight: set[str] = set()
    delivered: dict[str, list[int]] = {sub: [] for sub in subs}

    async def work(repo: Repository, name: str) -> None:
        idle = 0
        while idle < 20:
            claimed = await repo.subscriptions.claim(datetime.now(UTC), 3, 60, name)
            idle = idle + 1 if not claimed else 0
            for d in claimed:
                sub = d.event.subscription_id
                assert sub not in in_flight
                in_flight.add(sub)
            await asyncio.sleep(0)
            for d in claimed:
                delivered[d.event.subscription_id].append(d.event.number)
                in_flight.discard(d.event.subscription_id)
                assert await repo.subscriptions.delivered(d.id, name)
            if not claimed:
                await asyncio.sleep(0.005)

    async with repositories(sql_url, 4) as repos:
        queue = repos[0].subscriptions
        for sub in subs:
            await queue.set_status(sub, "active")
        events = [event(sub, seq) for seq in range(1, 9) for sub in subs]
        await queue.enqueue(Batch(D, 8, events))
        await asyncio.gather(*(work(r, f"worker{i}") for i, r in enumerate(repos)))
    assert delivered == {sub: list(range(1, 9)) for sub in subs}


@pytest.mark.parametrize("settle", ["delivered", "dead_letter"])
async def test_a_settle_that_waited_for_an_enqueue_leaves_its_event_claimable(
    postgres_database: databases.PostgresDatabase, settle: str
) -> None:
    """PostgreSQL's one-statement settles (the batched one of deliveries, the single one of
    failures) take their snapshot before they lock the subscription. When one waited for an
    enqueue of the same subscription (its row locked while event 2 was numbered and queued),
    its snapshot holds no event 2: the next attempt must not be cleared for that, or event 2
    would wait for ever (until a later event came)."""
    url = postgres_database.require()
    await databases.empty_postgres(url)
    async with repositories(url, 1) as (repo,):
        queue = repo.subscriptions
        await queue.enqueue(Batch(D, 1, [event("a", 1)]))
        await activate(repo, "a")
        [first] = await queue.claim(datetime.now(UTC), 10, 30, "w")
        enqueuer = await asyncpg.connect(url)
        try:
            async with enqueuer.transaction():  # the enqueue of event 2, as the queue does it
                await enqueuer.execute(
                    "UPDATE subscription_state SET events_since_start = events_since_start + 1"
                    " WHERE subscription_id = 'a'"
                )
                now = to_micros(datetime.now(UTC))
                await enqueuer.execute(
                    "INSERT INTO subscription_delivery (subscription_id, event_number,"
                    " outbox_seq, focus_type, focus_id, focus_version, extra, recorded, state,"
                    " attempts, due) VALUES ('a', 2, 2, 'Patient', 'p1', 1, '{}', $1,"
                    " 'pending', 0, $1)",
                    now,
                )
                settling = asyncio.create_task(
                    queue.delivered(first.id, "w")
                    if settle == "delivered"
                    else queue.dead_letter(first.id, "w", "HTTP 410")
                )
                await waiting_for_a_lock(enqueuer)
        finally:
            await enqueuer.close()
        assert await settling
        state = await queue.status("a")
        assert state is not None and state.next_attempt is not None
        claimed = await queue.claim(datetime.now(UTC), 10, 30, "w")
        assert [d.event.number for d in claimed] == [2]


async def waiting_for_a_lock(connection: asyncpg.Connection) -> None:
    """Until another session of this database waits for a lock (the settle, on our row)."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock'"
    )
    for _ in range(500):
        if await connection.fetchval(query):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the settle never waited for the enqueue's lock")


async def test_the_state_table_is_vacuumed_while_the_queue_works(
    postgres_database: databases.PostgresDatabase,
) -> None:
    """PostgreSQL: every event updates its subscription's row three times, each update a dead
    version claims and settles would read through until a vacuum (autovacuum may be off, and
    looks once a minute when on): the queue vacuums the table itself as it works."""
    url = postgres_database.require()
    await databases.empty_postgres(url)
    count = (
        "SELECT vacuum_count + autovacuum_count FROM pg_stat_user_tables"
        " WHERE relname = 'subscription_state'"
    )
    watcher = await asyncpg.connect(url)
    try:
        before = await watcher.fetchval(count)
        async with repositories(url, 1) as (repo,):
            queue = repo.subscriptions
            await queue.enqueue(Batch(D, 1, [event("a", 1)]))
            await activate(repo, "a")
            (first,) = await queue.claim(datetime.now(UTC), 10, 30, "w")
            assert await queue.delivered(first.id, "w")
        # (closing the repository waited for the vacuum it started)
        assert await watcher.fetchval(count) > before
    finally:
        await watcher.close()
