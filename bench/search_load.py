"""Load the search benchmark's data set (:mod:`bench.search_data`) through the product's write path.

Every resource is stored by ``Transaction.create`` inside ``Repository.transaction()`` units of
``batch`` resources (https://hl7.org/fhir/R4/http.html#transaction: one unit = one database
transaction), so versions, history, outbox rows and search index rows are written exactly as in
production. SQLite gets one writer task (a unit of work holds the database's write lock);
PostgreSQL gets ``tasks`` concurrent units per process and, with ``workers > 1``, several
processes, each loading every ``workers``-th patient.

A finished load leaves a marker table, ``bench_search_dataset``, holding what was loaded (seed,
size, generator version, load figures); a later run with the same seed and size reuses the
database instead of loading again. Loading ends with ``ANALYZE`` (SQLite) or ``VACUUM ANALYZE``
(PostgreSQL) so that the planners see the real distributions.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import apsw
import asyncpg

from bench.search_data import GENERATOR_VERSION, Generator, Item, load_templates
from healthbridge.store.sql import migrate_async, open_repository
from healthbridge.store.sql.urls import parse_url

MARKER = "bench_search_dataset"


@dataclass(frozen=True)
class Dataset:
    """What a database holds (or should hold)."""

    seed: int
    resources: int  # the size asked for; the data set is the first patients reaching it

    def key(self) -> dict[str, int]:
        return {"seed": self.seed, "resources": self.resources, "generator": GENERATOR_VERSION}


# --- the marker --------------------------------------------------------------------------------


async def read_marker(url: str) -> dict[str, Any] | None:
    db = parse_url(url)
    rows: list[Any]
    if db.kind == "sqlite":
        if not db.path.is_file():
            return None
        connection = apsw.Connection(str(db.path))
        try:
            rows = list(connection.execute(f"SELECT value FROM {MARKER}"))
        except apsw.SQLError:
            return None
        finally:
            connection.close()
    else:
        try:
            pg = await asyncpg.connect(db.dsn)
        except asyncpg.InvalidCatalogNameError:
            return None
        try:
            rows = await pg.fetch(f"SELECT value FROM {MARKER}")
        except asyncpg.UndefinedTableError:
            return None
        finally:
            await pg.close()
    return json.loads(rows[0][0]) if rows else None


async def write_marker(url: str, value: dict[str, Any]) -> None:
    text = json.dumps(value)
    db = parse_url(url)
    create = f"CREATE TABLE IF NOT EXISTS {MARKER} (value TEXT NOT NULL)"
    if db.kind == "sqlite":
        connection = apsw.Connection(str(db.path))
        with connection:
            connection.execute(create)
            connection.execute(f"DELETE FROM {MARKER}")
            connection.execute(f"INSERT INTO {MARKER} VALUES (?)", (text,))
        connection.close()
        return
    pg = await asyncpg.connect(db.dsn)
    try:
        async with pg.transaction():
            await pg.execute(create)
            await pg.execute(f"DELETE FROM {MARKER}")
            await pg.execute(f"INSERT INTO {MARKER} VALUES ($1)", text)
    finally:
        await pg.close()


# --- fresh databases and statistics -----------------------------------------------------------


def _remove_sqlite(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def fresh_database(url: str) -> None:
    """Remove whatever is at ``url`` and create an empty, migrated database."""
    db = parse_url(url)
    if db.kind == "sqlite":
        _remove_sqlite(db.path)
    else:
        name = db.url.database
        admin = await asyncpg.connect(
            db.url.set(database="postgres", drivername="postgresql").render_as_string(
                hide_password=False
            )
        )
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
    await migrate_async(url)


async def analyze(url: str) -> dict[str, Any]:
    """Planner statistics after the load; the database's size on disk."""
    db = parse_url(url)
    if db.kind == "sqlite":
        connection = apsw.Connection(str(db.path))
        connection.execute("ANALYZE").fetchall()
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        connection.close()
        return {"bytes": db.path.stat().st_size}
    pg = await asyncpg.connect(db.dsn)
    try:
        await pg.execute("VACUUM ANALYZE")
        size = await pg.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await pg.close()
    return {"bytes": int(size)}


async def schema_revision(url: str) -> str | None:
    db = parse_url(url)
    sql = "SELECT version_num FROM alembic_version"
    if db.kind == "sqlite":
        connection = apsw.Connection(str(db.path))
        try:
            rows = list(connection.execute(sql))
        finally:
            connection.close()
        return str(rows[0][0]) if rows else None
    pg = await asyncpg.connect(db.dsn)
    try:
        return str(await pg.fetchval(sql))
    finally:
        await pg.close()


async def database_counts(url: str) -> dict[str, int]:
    """Live resources per type (a check that the load is complete)."""
    db = parse_url(url)
    sql = "SELECT type, count(*) FROM resource WHERE NOT deleted GROUP BY type ORDER BY type"
    rows: list[Any]
    if db.kind == "sqlite":
        connection = apsw.Connection(str(db.path))
        rows = list(connection.execute(sql))
        connection.close()
    else:
        pg = await asyncpg.connect(db.dsn)
        rows = await pg.fetch(sql)
        await pg.close()
    return {str(t): int(n) for t, n in rows}


# --- the load -----------------------------------------------------------------------------------


def batches(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    while chunk := list(islice(items, size)):
        yield chunk


async def load_share(
    url: str,
    dataset: Dataset,
    data: Path,
    share: tuple[int, int],
    batch: int,
    tasks: int,
    progress: Any = None,
) -> int:
    """Load patients ``worker, worker + workers, ...`` (``share = (worker, workers)``), with the
    shared resources in worker 0; the number of resources stored."""
    worker, workers = share
    g = Generator(load_templates(data), dataset.seed, dataset.resources)
    items: Iterator[Item] = iter(())
    if worker == 0:
        items = g.shared()
    patients = range(worker, g.patients, workers)
    stream = batches(_chain(items, (item for i in patients for item in g.patient(i))), batch)
    repo = await open_repository(url, pool_size=tasks + 1)
    stored = 0

    async def writer() -> None:
        nonlocal stored
        for chunk in stream:  # tasks share the iterator; next() never suspends
            async with repo.transaction() as tx:
                for resource_type, id, resource in chunk:
                    await tx.create(resource_type, resource, id)
            stored += len(chunk)
            if progress is not None:
                progress(len(chunk))

    try:
        await asyncio.gather(*(writer() for _ in range(tasks)))
    finally:
        await repo.close()
    return stored


def _chain(first: Iterator[Item], then: Iterator[Item]) -> Iterator[Item]:
    yield from first
    yield from then


_SHARED: dict[str, Any] = {}  # the progress counter, handed to each loader process


def _worker_init(counter: Any) -> None:
    _SHARED["counter"] = counter


def _worker_main(args: tuple[str, Dataset, Path, tuple[int, int], int, int]) -> int:
    url, dataset, data, share, batch, tasks = args

    def progress(n: int) -> None:
        counter = _SHARED["counter"]
        with counter.get_lock():
            counter.value += n

    return asyncio.run(load_share(url, dataset, data, share, batch, tasks, progress))


class Progress:
    """Prints resources stored, rate and time left every ``every`` seconds."""

    def __init__(self, label: str, total: int, every: float = 15.0) -> None:
        self.label, self.total, self.every = label, total, every
        self.start = self.last = time.perf_counter()
        self.done = 0

    def add(self, n: int) -> None:
        self.done += n
        self.show()

    def show(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < self.every:
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        left = (self.total - self.done) / rate if rate else float("inf")
        print(
            f"  [{self.label}] {self.done:,}/{self.total:,} resources, {rate:,.0f}/s, "
            f"~{left / 60:.1f} min left",
            flush=True,
        )


async def load(
    url: str, dataset: Dataset, data: Path, *, batch: int, tasks: int, workers: int
) -> dict[str, Any]:
    """A fresh database at ``url`` holding ``dataset``; load figures."""
    await fresh_database(url)
    total = Generator(load_templates(data), dataset.seed, dataset.resources).size
    label = parse_url(url).kind
    meter = Progress(label, total)
    start = time.perf_counter()
    if workers <= 1:
        stored = await load_share(url, dataset, data, (0, 1), batch, tasks, meter.add)
    else:
        stored = await _load_in_processes(url, dataset, data, batch, tasks, workers, meter)
    seconds = time.perf_counter() - start
    meter.show(force=True)
    started_analyze = time.perf_counter()
    size = await analyze(url)
    figures = {
        "resources": stored,
        "load_seconds": round(seconds, 1),
        "resources_per_second": round(stored / seconds),
        "analyze_seconds": round(time.perf_counter() - started_analyze, 1),
        "batch": batch,
        "tasks": tasks,
        "workers": workers,
        "database_bytes": size["bytes"],
        "counts": await database_counts(url),
    }
    await write_marker(url, dataset.key() | {"load": figures})
    return figures


async def _load_in_processes(
    url: str, dataset: Dataset, data: Path, batch: int, tasks: int, workers: int, meter: Progress
) -> int:
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    jobs = [(url, dataset, data, (w, workers), batch, tasks) for w in range(workers)]
    with context.Pool(workers, initializer=_worker_init, initargs=(counter,)) as pool:
        result = pool.map_async(_worker_main, jobs)
        while not result.ready():
            await asyncio.sleep(1)
            meter.done = counter.value
            meter.show()
        return sum(result.get())


async def ensure_loaded(
    url: str, dataset: Dataset, data: Path, *, batch: int, tasks: int, workers: int, reload: bool
) -> dict[str, Any]:
    """Reuse the database at ``url`` when its marker says it holds ``dataset``, else load it."""
    marker = None if reload else await read_marker(url)
    if marker is not None and all(marker.get(k) == v for k, v in dataset.key().items()):
        print(f"  reusing {parse_url(url)}: {marker['load']['resources']:,} resources", flush=True)
        before = await schema_revision(url)
        await migrate_async(url)  # a newer schema revision migrates (and backfills) in place
        after = await schema_revision(url)
        if after != before:  # ALTER COLUMN ... TYPE drops the columns' statistics: redo them
            print(f"  migrated {before} -> {after}; analyzing again", flush=True)
            await analyze(url)
        return dict(marker["load"]) | {"reused": True, "schema_revision": after}
    print(f"  loading {parse_url(url)} ...", flush=True)
    return await load(url, dataset, data, batch=batch, tasks=tasks, workers=workers) | {
        "reused": False
    }
