"""Record store contract (healthbridge.store.records): the same on memory, SQLite and PostgreSQL.

The authorization server keeps one-time codes, refresh tokens, revocations and replay guards
here (RFC 6749 section 4.1.2: a code is used once; RFC 7523 section 3: a ``jti`` is accepted
once), so the atomic operations are checked under concurrency.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from healthbridge.store.repository import Repository
from tests.support.clock import FakeClock


async def test_put_get_and_versions(repo: Repository) -> None:
    records = repo.records
    assert await records.get_record("client", "a") is None
    first = await records.put_record("client", "a", {"name": "App", "n": [1, 2]})
    assert first is not None and first.version == 1 and first.expires is None
    got = await records.get_record("client", "a")
    assert got is not None
    assert (got.kind, got.key, got.value, got.version) == (
        "client",
        "a",
        {"name": "App", "n": [1, 2]},
        1,
    )
    second = await records.put_record("client", "a", {"name": "App 2"})
    assert second is not None and second.version == 2
    assert (await records.get_record("client", "a")).value == {"name": "App 2"}  # type: ignore[union-attr]
    # Another kind with the same key is another record.
    assert await records.get_record("user", "a") is None


async def test_conditional_put(repo: Repository) -> None:
    records = repo.records
    assert await records.put_record("user", "u", {"failures": 0}, if_version=1) is None  # absent
    await records.put_record("user", "u", {"failures": 0})
    assert await records.put_record("user", "u", {"failures": 1}, if_version=2) is None
    updated = await records.put_record("user", "u", {"failures": 1}, if_version=1)
    assert updated is not None and updated.version == 2
    assert await records.put_record("user", "u", {"failures": 2}, if_version=1) is None
    assert (await records.get_record("user", "u")).value == {"failures": 1}  # type: ignore[union-attr]


async def test_expired_records_count_as_absent(repo: Repository, clock: FakeClock) -> None:
    records = repo.records
    soon = clock.now + timedelta(seconds=60)
    assert await records.add_record("code", "c", {"v": 1}, expires=soon)
    assert not await records.add_record("code", "c", {"v": 2}, expires=soon)
    got = await records.get_record("code", "c")
    assert got is not None and got.expires == soon
    assert await records.any_record([("code", "c")])
    clock.advance(seconds=61)
    assert await records.get_record("code", "c") is None
    assert not await records.any_record([("code", "c")])
    assert await records.records("code") == []
    assert await records.take_record("code", "c") is None
    assert await records.put_record("code", "c", {"v": 3}, if_version=1) is None
    # An expired record may be added again.
    assert await records.add_record("code", "c", {"v": 4}, expires=clock.now + timedelta(seconds=5))
    assert (await records.get_record("code", "c")).value == {"v": 4}  # type: ignore[union-attr]


async def test_take_and_delete(repo: Repository) -> None:
    records = repo.records
    await records.put_record("refresh", "r", {"grant": "g"})
    taken = await records.take_record("refresh", "r")
    assert taken is not None and taken.value == {"grant": "g"}
    assert await records.take_record("refresh", "r") is None
    assert await records.get_record("refresh", "r") is None
    await records.put_record("refresh", "s", {})
    assert await records.delete_record("refresh", "s")
    assert not await records.delete_record("refresh", "s")


async def test_listing_in_key_order_with_paging(repo: Repository, clock: FakeClock) -> None:
    records = repo.records
    for key in ["b", "a", "B", "c", "ä"]:
        await records.put_record("user", key, {"k": key})
    await records.put_record("user", "gone", {}, expires=clock.now + timedelta(seconds=1))
    await records.put_record("client", "x", {})
    clock.advance(seconds=2)
    listed = await records.records("user")
    assert [r.key for r in listed] == ["B", "a", "b", "c", "ä"]  # code point order
    page = await records.records("user", limit=2)
    assert [r.key for r in page] == ["B", "a"]
    rest = await records.records("user", after_key="a", limit=10)
    assert [r.key for r in rest] == ["b", "c", "ä"]
    assert rest[0].value == {"k": "b"}


async def test_any_record_and_purge(repo: Repository, clock: FakeClock) -> None:
    records = repo.records
    assert not await records.any_record([])
    assert not await records.any_record([("revoked-token", "j1"), ("revoked-grant", "g1")])
    await records.add_record("revoked-grant", "g1", {}, expires=clock.now + timedelta(seconds=10))
    assert await records.any_record([("revoked-token", "j1"), ("revoked-grant", "g1")])
    assert not await records.any_record([("revoked-token", "g1"), ("revoked-grant", "j1")])
    await records.add_record("revoked-token", "j2", {}, expires=clock.now + timedelta(seconds=20))
    await records.add_record("keep", "k", {})
    clock.advance(seconds=15)
    assert await records.purge_expired_records() == 1
    assert await records.purge_expired_records() == 0
    assert await records.any_record([("revoked-token", "j2")])
    assert await records.get_record("keep", "k") is not None
    with pytest.raises(ValueError):
        await records.any_record([("k", str(i)) for i in range(65)])


async def test_values_round_trip_unicode_and_nesting(repo: Repository) -> None:
    value = {"name": "Zoë 🩺", "list": [{"a": None, "b": True}], "n": 12345678901234}
    await repo.records.put_record("user", "zoë", value)
    assert (await repo.records.get_record("user", "zoë")).value == value  # type: ignore[union-attr]


async def test_parallel_takes_have_exactly_one_winner(repo: Repository) -> None:
    """RFC 6749 section 4.1.2: an authorization code is used at most once."""
    await repo.records.put_record("code", "one-time", {"client": "c"})
    results = await asyncio.gather(
        *(repo.records.take_record("code", "one-time") for _ in range(20))
    )
    assert sum(r is not None for r in results) == 1


async def test_parallel_adds_have_exactly_one_winner(repo: Repository, clock: FakeClock) -> None:
    """RFC 7523 section 3: a client assertion's jti is accepted once."""
    expires = clock.now + timedelta(minutes=5)
    results = await asyncio.gather(
        *(repo.records.add_record("jti", "client:abc", {"n": i}, expires) for i in range(20))
    )
    assert results.count(True) == 1


async def test_parallel_conditional_puts_have_one_winner(repo: Repository) -> None:
    await repo.records.put_record("user", "u", {"failures": 0})
    results = await asyncio.gather(
        *(repo.records.put_record("user", "u", {"failures": i}, if_version=1) for i in range(20))
    )
    assert sum(r is not None for r in results) == 1
