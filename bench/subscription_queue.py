"""The subscription delivery queue (healthbridge.store.subscriptions) on SQLite and PostgreSQL.

Event numbers and delivery of the Subscriptions Backport IG
(https://hl7.org/fhir/uv/subscriptions-backport/). Measures, in-process:

* enqueue: events recorded per second, in batches of 100 (one dispatcher, one transaction per
  batch), spread over 100 subscriptions and all for one subscription;
* claim + delivered, batched: a worker claims up to 100 deliveries (one per subscription, 100
  subscriptions) and 16 tasks acknowledge them; deliveries per second;
* claim + delivered, one at a time: the round trip per delivery of one worker that claims one
  delivery and acknowledges it, through the 10,000-event backlog of one subscription (events
  of one subscription go one after the other).

    .venv/bin/python bench/subscription_queue.py [--events 10000] [--skip-postgres]

A scratch PostgreSQL database is created on postgresql://postgres@127.0.0.1:5432 and dropped
afterwards. Results go to bench/results/subscription_queue.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from healthbridge.store.repository import Repository
from healthbridge.store.sql import migrate_async, open_repository
from healthbridge.store.subscriptions import Batch, NewEvent

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 100


def batches(events: int, subscriptions: int, first_seq: int) -> list[Batch]:
    found = []
    for start in range(0, events, BATCH):
        items = [
            NewEvent(f"s{n % subscriptions}", first_seq + n, "Observation", f"o{n}", 1, {"t": "x"})
            for n in range(start, min(start + BATCH, events))
        ]
        found.append(Batch("bench", items[-1].outbox_seq, items))
    return found


async def enqueue_rate(repo: Repository, events: int, subscriptions: int, first: int) -> float:
    work = batches(events, subscriptions, first)
    started = time.perf_counter()
    for batch in work:
        await repo.subscriptions.enqueue(batch)
    return events / (time.perf_counter() - started)


async def one_at_a_time(repo: Repository, count: int) -> float:
    """Mean microseconds per claim(limit=1) + delivered."""
    queue = repo.subscriptions
    started = time.perf_counter()
    done = 0
    while done < count:
        claimed = await queue.claim(datetime.now(UTC), 1, 60, "w")
        if not claimed:
            break
        await queue.delivered(claimed[0].id, "w")
        done += 1
    return (time.perf_counter() - started) / max(done, 1) * 1e6


async def acknowledge(repo: Repository, pending: list[int]) -> None:
    while pending:
        await repo.subscriptions.delivered(pending.pop(), "w")


async def batched(repo: Repository, count: int, tasks: int = 16) -> float:
    """Deliveries per second: claim up to 100, acknowledge them from ``tasks`` tasks."""
    queue = repo.subscriptions
    started = time.perf_counter()
    done = 0
    while done < count:
        claimed = await queue.claim(datetime.now(UTC), BATCH, 60, "w")
        if len(claimed) < BATCH // 2:  # only the one subscription with a backlog is left
            break
        pending = [d.id for d in claimed]
        await asyncio.gather(*(acknowledge(repo, pending) for _ in range(tasks)))
        done += len(claimed)
    return done / (time.perf_counter() - started)


async def run(url: str, events: int) -> dict[str, float]:
    repo = await open_repository(url)
    try:
        spread = await enqueue_rate(repo, events, 100, 1)
        single = await enqueue_rate(repo, events, 1, events + 1)  # subscription s0
        for n in range(100):
            await repo.subscriptions.set_status(f"s{n}", "active")
        rate = await batched(repo, events)
        latency = await one_at_a_time(repo, 2000)
    finally:
        await repo.close()
    return {
        "enqueue_100_subscriptions_per_s": round(spread),
        "enqueue_1_subscription_per_s": round(single),
        "claim_delivered_one_us": round(latency),
        "claim_delivered_batched_per_s": round(rate),
    }


async def sqlite(events: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'bench.db'}"
        await migrate_async(url)
        return await run(url, events)


async def postgres(events: int) -> dict[str, float]:
    name = f"hb_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        await migrate_async(url)
        return await run(url, events)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"sqlite": await sqlite(args.events)}
    if not args.skip_postgres:
        results["postgresql"] = await postgres(args.events)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    for backend, figures in results.items():
        for key, value in figures.items():
            print(f"{backend:10} {key:34} {value:>10,}")
    RESULTS.mkdir(exist_ok=True)
    record = {"machine": platform.platform(), "events": args.events, "results": results}
    (RESULTS / "subscription_queue.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
