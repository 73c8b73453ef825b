"""The outbox row of every committed change names who made it (healthbridge.store.actor), on
memory, SQLite and PostgreSQL, through single writes, units of work, atomic groups and bulk
creates: the audit relay builds each change's AuditEvent from it (IHE BALP, SECURITY.md "Side
effects ... go through the outbox")."""

from __future__ import annotations

import asyncio

from healthbridge.store.actor import acting_as, current_actor, reset_actor, set_actor
from healthbridge.store.repository import Change, Repository


def patient(family: str) -> dict[str, object]:
    return {"resourceType": "Patient", "name": [{"family": family}]}


async def actors(repo: Repository) -> list[tuple[str, str | None]]:
    return [(f"{e.method} {e.id}", e.actor) for e in await repo.outbox_since(0, 100)]


async def test_single_writes_carry_the_actor(repo: Repository) -> None:
    with acting_as('{"subject":"alice"}'):
        await repo.create("Patient", patient("A"), "a")
        await repo.update("Patient", "a", patient("B"))
    with acting_as('{"subject":"bob"}'):
        await repo.delete("Patient", "a")
    await repo.create("Patient", patient("C"), "c")  # the server's own work: no actor
    assert await actors(repo) == [
        ("create a", '{"subject":"alice"}'),
        ("update a", '{"subject":"alice"}'),
        ("delete a", '{"subject":"bob"}'),
        ("create c", None),
    ]


async def test_units_of_work_and_groups_carry_the_actor(repo: Repository) -> None:
    token = set_actor('{"subject":"carol"}')
    try:
        async with repo.transaction() as tx:
            await tx.create("Patient", patient("A"), "a")
            await tx.apply(
                [
                    Change("create", "Patient", "b", patient("B")),  # a run of creates: bulk
                    Change("create", "Patient", "c", patient("C")),
                    Change("update", "Patient", "a", patient("A2")),
                ]
            )
    finally:
        reset_actor(token)
    with acting_as('{"subject":"dave"}'):
        await repo.apply(
            [
                Change("create", "Patient", "d", patient("D")),
                Change("create", "Patient", "e", patient("E")),
                Change("delete", "Patient", "b"),
            ]
        )
    carol, dave = '{"subject":"carol"}', '{"subject":"dave"}'
    assert await actors(repo) == [
        ("create a", carol),
        ("create b", carol),
        ("create c", carol),
        ("update a", carol),
        ("create d", dave),
        ("create e", dave),
        ("delete b", dave),
    ]


async def test_concurrent_requests_keep_their_own_actor(repo: Repository) -> None:
    """Each request's task sets its actor; SQLite's writer thread batches their changes
    together, and each outbox row still names its own request's actor."""

    async def request(n: int) -> None:
        with acting_as(f'{{"subject":"user{n}"}}'):
            await asyncio.sleep(0)
            await repo.create("Patient", patient(str(n)), f"p{n}")

    await asyncio.gather(*(request(n) for n in range(30)))
    events = await repo.outbox_since(0, 100)
    assert len(events) == 30
    assert all(e.actor == f'{{"subject":"user{e.id[1:]}"}}' for e in events)
    assert current_actor() is None
