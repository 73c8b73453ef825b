"""Storage write throughput and point-read latency (SQLite and PostgreSQL, in-process).

Creates ~1.5 KB Patient resources, each its own change (https://hl7.org/fhir/R4/http.html#create,
the repository's ``create`` shortcut that plain REST creates use), from 1 and from 16 concurrent
asyncio tasks; updates them from 16 tasks (http.html#update); then times point reads
(http.html#read) from 1 task (latency) and 16 tasks (throughput). Prints a table and writes JSON
under bench/results/. With ``--repeat N`` every figure is the median of N runs, each on a fresh
database (other load on the machine skews single runs).

    .venv/bin/python bench/store_writes.py [--count 2000] [--repeat 3] [--postgres-url URL]
        [--skip-postgres | --skip-sqlite]

Without --postgres-url a scratch database is created on postgresql://postgres@127.0.0.1:5432
and dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg

from healthbridge.fhir import jsonformat
from healthbridge.store.repository import Repository
from healthbridge.store.sql import migrate_async, open_repository

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS = Path(__file__).resolve().parent / "results"


def patient(n: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.4.1", "value": f"{n:09d}"}],
        "active": True,
        "name": [{"use": "official", "family": f"Family{n}", "given": ["Given", "Middle"]}],
        "telecom": [{"system": "phone", "value": "+1 555 0100", "use": "home"}],
        "gender": "female",
        "birthDate": "1970-01-01",
        "address": [{"line": ["1 Main St"], "city": "Springfield", "postalCode": "12345"}],
        "extension": [
            {"url": "http://example.org/weight", "valueDecimal": Decimal("72.50")},
        ],
    }
    body["text"] = {"status": "generated", "div": "<div>" + "x" * 1000 + "</div>"}
    return body


async def in_tasks(tasks: int, work: list[Callable[[], Awaitable[object]]]) -> float:
    """Run ``work`` spread over ``tasks`` concurrent tasks; calls per second."""
    per_task = len(work) // tasks

    async def worker(share: list[Callable[[], Awaitable[object]]]) -> None:
        for call in share:
            await call()

    start = time.perf_counter()
    await asyncio.gather(*(worker(work[t * per_task : (t + 1) * per_task]) for t in range(tasks)))
    return per_task * tasks / (time.perf_counter() - start)


async def creates(repo: Repository, count: int, tasks: int) -> tuple[float, list[str]]:
    ids: list[str] = []

    async def create(n: int) -> None:
        ids.append((await repo.create("Patient", patient(n))).id)

    rate = await in_tasks(tasks, [partial(create, n) for n in range(count)])
    return rate, ids


async def updates(repo: Repository, ids: list[str], tasks: int) -> float:
    return await in_tasks(
        tasks, [partial(repo.update, "Patient", id, patient(n)) for n, id in enumerate(ids)]
    )


async def reads(repo: Repository, ids: list[str], count: int) -> dict[str, float]:
    picks = [random.choice(ids) for _ in range(count)]
    samples = []
    for id in picks:
        start = time.perf_counter_ns()
        await repo.read("Patient", id)
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    concurrent = await in_tasks(16, [partial(repo.read, "Patient", id) for id in picks])
    return {
        "mean_us": statistics.fmean(samples),
        "p50_us": samples[len(samples) // 2],
        "p99_us": samples[int(len(samples) * 0.99)],
        "reads_per_s": 1e6 / statistics.fmean(samples),
        "reads_per_s_16_tasks": concurrent,
    }


async def measure(url: str, count: int) -> dict[str, Any]:
    await migrate_async(url)
    repo = await open_repository(url, pool_size=16)
    try:
        sequential, ids = await creates(repo, count, 1)
        concurrent, more = await creates(repo, count, 16)
        updated = await updates(repo, more, 16)
        read = await reads(repo, ids + more, count * 2)
    finally:
        await repo.close()
    return {
        "creates_per_s_1_task": sequential,
        "creates_per_s_16_tasks": concurrent,
        "updates_per_s_16_tasks": updated,
    } | read


async def scratch_postgres(count: int) -> dict[str, Any]:
    name = f"healthbridge_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        return await measure(ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", count)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def scratch_sqlite(count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        return await measure(f"sqlite:///{directory}/bench.db", count)


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]} | {"runs": runs}


async def backend_runs(options: argparse.Namespace) -> dict[str, Any]:
    measures: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {}
    if not options.skip_sqlite:
        measures["sqlite"] = partial(scratch_sqlite, options.count)
    if options.postgres_url:
        measures["postgresql"] = partial(measure, options.postgres_url, options.count)
    elif not options.skip_postgres:
        measures["postgresql"] = partial(scratch_postgres, options.count)
    results: dict[str, Any] = {}
    for backend, run in measures.items():
        results[backend] = median_of([await run() for _ in range(options.repeat)])
    return results


def report(results: dict[str, Any]) -> None:
    print(f"resource {results['resource_bytes']} bytes, {results['count']} changes per figure")
    for backend in ("sqlite", "postgresql"):
        if backend in results:
            row = results[backend]
            print(
                f"{backend:10} creates/s 1 task {row['creates_per_s_1_task']:6.0f}  16 tasks "
                f"{row['creates_per_s_16_tasks']:6.0f} | updates/s 16 tasks "
                f"{row['updates_per_s_16_tasks']:6.0f} | read p50 {row['p50_us']:6.1f} us "
                f"p99 {row['p99_us']:6.1f} us, reads/s 1 task {row['reads_per_s']:6.0f}  "
                f"16 tasks {row['reads_per_s_16_tasks']:6.0f}"
            )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--postgres-url")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    options = parser.parse_args()
    size = len(jsonformat.dumps(patient(0)))
    results: dict[str, Any] = {"resource_bytes": size, "count": options.count}
    results |= await backend_runs(options)
    results |= {"python": platform.python_version(), "at": datetime.now(UTC).isoformat()}
    report(results)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"store_writes-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
