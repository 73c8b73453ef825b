"""Storage write throughput and point-read latency (SQLite and PostgreSQL, in-process).

Creates ~1.7 KB Patient resources one per transaction (https://hl7.org/fhir/R4/http.html#create),
sequentially and from 16 concurrent asyncio tasks, then times point reads
(https://hl7.org/fhir/R4/http.html#read). Prints a table and writes JSON under bench/results/.

    .venv/bin/python bench/store_writes.py [--count 2000] [--postgres-url URL] [--skip-postgres]

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
from datetime import UTC, datetime
from decimal import Decimal
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


async def creates(repo: Repository, count: int, tasks: int) -> tuple[float, list[str]]:
    ids: list[str] = []
    per_task = count // tasks

    async def worker(offset: int) -> None:
        for n in range(per_task):
            ids.append((await repo.create("Patient", patient(offset + n))).id)

    start = time.perf_counter()
    await asyncio.gather(*(worker(t * per_task) for t in range(tasks)))
    return (per_task * tasks) / (time.perf_counter() - start), ids


async def reads(repo: Repository, ids: list[str], count: int) -> dict[str, float]:
    picks = [random.choice(ids) for _ in range(count)]
    samples = []
    for id in picks:
        start = time.perf_counter_ns()
        await repo.read("Patient", id)
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return {
        "mean_us": statistics.fmean(samples),
        "p50_us": samples[len(samples) // 2],
        "p99_us": samples[int(len(samples) * 0.99)],
        "reads_per_s": 1e6 / statistics.fmean(samples),
    }


async def measure(url: str, count: int) -> dict[str, Any]:
    await migrate_async(url)
    repo = await open_repository(url, pool_size=16)
    try:
        sequential, ids = await creates(repo, count, 1)
        concurrent, more = await creates(repo, count, 16)
        read = await reads(repo, ids + more, count * 2)
    finally:
        await repo.close()
    return {"creates_per_s_1_task": sequential, "creates_per_s_16_tasks": concurrent} | read


async def scratch_postgres(count: int) -> dict[str, Any]:
    name = f"healthbridge_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        return await measure(ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", count)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--postgres-url")
    parser.add_argument("--skip-postgres", action="store_true")
    options = parser.parse_args()
    size = len(jsonformat.dumps(patient(0)))
    results: dict[str, Any] = {"resource_bytes": size, "count": options.count}
    with tempfile.TemporaryDirectory() as directory:
        results["sqlite"] = await measure(f"sqlite:///{directory}/bench.db", options.count)
    if options.postgres_url:
        results["postgresql"] = await measure(options.postgres_url, options.count)
    elif not options.skip_postgres:
        results["postgresql"] = await scratch_postgres(options.count)
    results |= {"python": platform.python_version(), "at": datetime.now(UTC).isoformat()}
    print(f"resource {size} bytes, {options.count} creates per run")
    for backend in ("sqlite", "postgresql"):
        if backend in results:
            row = results[backend]
            print(
                f"{backend:10} creates/s 1 task {row['creates_per_s_1_task']:8.0f}  "
                f"16 tasks {row['creates_per_s_16_tasks']:8.0f}  read p50 {row['p50_us']:7.1f} us"
                f"  p99 {row['p99_us']:7.1f} us  ({row['reads_per_s']:.0f} reads/s)"
            )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"store_writes-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
