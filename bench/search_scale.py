"""Search at scale: p50/p95 of typical FHIR searches over >= 1,000,000 Synthea-shaped resources
(https://hl7.org/fhir/R4/search.html), on SQLite and PostgreSQL.

1. Loads (or reuses, see :mod:`bench.search_load`) the data set of :mod:`bench.search_data`
   through ``Repository.transaction()``, the product's write path, then ANALYZE.
2. Times every query of :mod:`bench.search_queries` through ``Repository.search`` (parsed with
   ``SearchParser``, as the REST layer does): two warm-up runs, then ``--repeat`` runs with
   different patients and codes (the same draws on both databases), at most ``--budget`` seconds
   per query. A few queries are also timed through the REST API (a Granian server on loopback,
   one worker, one keep-alive connection) to show what HTTP adds.
3. Prints p50/p95/max per query and backend against the issue's targets (patient-scoped p95 <=
   30 ms, every query <= 250 ms, a whole-set count <= 1 s) and, for each miss, the database plan
   from ``SqlRepository.explain``. JSON goes to ``bench/results/``.

    python -m bench search [--resources 1000000] [--repeat 50] [--skip-sqlite|--skip-postgres]
        [--sqlite PATH] [--postgres URL] [--reload] [--load-only] [--skip-http]
        [--only NAME[,NAME]] [--workers 2] [--tasks 4] [--batch 500]

SQLite files live under ``$TMPDIR/healthbridge-bench/``; PostgreSQL uses the scratch database
``healthbridge_bench_search`` (``healthbridge_bench_search_{N}`` for other sizes) on
postgresql://postgres@127.0.0.1:5432, created when absent and kept for the next run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import http_core
from bench.search_data import Generator, load_templates
from bench.search_load import Dataset, ensure_loaded
from bench.search_queries import QUERIES, BenchQuery, Draw
from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.fhir.search.query import SearchQuery
from healthbridge.store.repository import Repository
from healthbridge.store.sql import open_repository

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PG_BASE = "postgresql://postgres@127.0.0.1:5432"
DEFAULT_SIZE = 1_000_000


def percentile(sorted_ms: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, -(-len(sorted_ms) * p // 100))
    return sorted_ms[int(rank) - 1]


def summarize(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(percentile(ordered, 95), 2),
        "max_ms": round(ordered[-1], 2),
    }


class QueryRunner:
    def __init__(self, repo: Repository, g: Generator, repeat: int, budget_s: float) -> None:
        self.repo, self.g, self.repeat, self.budget_s = repo, g, repeat, budget_s
        self.parser = SearchParser(load_definitions())

    def parse(self, q: BenchQuery, d: Draw) -> SearchQuery:
        resource_type, patient, params = q.render(d)
        query = self.parser.parse(resource_type, params)
        return replace(query, compartment=("Patient", patient)) if patient else query

    async def time(self, q: BenchQuery) -> dict[str, Any]:
        for warm in (-1, -2):
            await self.repo.search(self.parse(q, Draw(self.g, q.name, warm)))
        samples: list[float] = []
        rows: list[int] = []
        included: list[int] = []
        slowest: tuple[float, SearchQuery, str] | None = None
        started = time.perf_counter()
        for rep in range(self.repeat):
            d = Draw(self.g, q.name, rep)
            query = self.parse(q, d)
            t0 = time.perf_counter()
            page = await self.repo.search(query)
            ms = (time.perf_counter() - t0) * 1000
            samples.append(ms)
            rows.append(page.total or 0 if query.summary == "count" else len(page.matches))
            included.append(len(page.included))
            if slowest is None or ms > slowest[0]:
                slowest = (ms, query, q.describe(d))
            if time.perf_counter() - started > self.budget_s and rep >= 9:
                break
        assert slowest is not None
        result: dict[str, Any] = {
            **summarize(samples),
            "kind": q.kind,
            "target_ms": q.target_ms,
            "median_rows": statistics.median(rows),
            "median_included": statistics.median(included),
            "slowest_request": slowest[2],
        }
        result["met"] = result["p95_ms"] <= q.target_ms
        if not result["met"]:
            result["explain"] = await self.explain(slowest[1])
        return result

    async def explain(self, query: SearchQuery) -> str:
        explain = getattr(self.repo, "explain", None)
        if explain is None:
            return "(this repository has no explain)"
        try:
            return str(await explain(query))
        except Exception as exc:  # a report, not a test: show what went wrong and go on
            return f"(explain failed: {type(exc).__name__}: {exc})"


async def time_queries(
    url: str, g: Generator, queries: list[BenchQuery], repeat: int, budget_s: float
) -> dict[str, Any]:
    repo = await open_repository(url, pool_size=4)
    runner = QueryRunner(repo, g, repeat, budget_s)
    out: dict[str, Any] = {}
    try:
        for q in queries:
            try:
                out[q.name] = await runner.time(q)
            except Exception as exc:  # report the failure and carry on with the others
                out[q.name] = {"kind": q.kind, "error": f"{type(exc).__name__}: {exc}"}
            show_row(q.name, out[q.name])
    finally:
        await repo.close()
    return out


# --- through the REST API -------------------------------------------------------------------------


def time_http(url: str, g: Generator, queries: list[BenchQuery], repeat: int) -> dict[str, Any]:
    """The ``http`` queries as GET requests to a one-worker server on loopback."""
    port = http_core.free_port()
    work = Path(tempfile.mkdtemp(prefix="hb-search-http-"))
    cmd, env = http_core.healthbridge(work, url, 1, port)
    env["HEALTHBRIDGE_ACCESS_LOG"] = "false"
    out: dict[str, Any] = {}
    with http_core.process(cmd, env, f"http://127.0.0.1:{port}/readyz", work / "server.log"):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for q in (q for q in queries if q.http):
            out[q.name] = _time_http_query(connection, g, q, repeat)
            show_row(q.name + " (HTTP)", out[q.name])
        connection.close()
    return out


def _time_http_query(
    connection: http.client.HTTPConnection, g: Generator, q: BenchQuery, repeat: int
) -> dict[str, Any]:
    samples: list[float] = []
    statuses: set[int] = set()
    for rep in [-1, -2, *range(repeat)]:
        path = "/fhir/" + q.url(Draw(g, q.name, rep))
        t0 = time.perf_counter()
        connection.request("GET", path, headers={"Accept": "application/fhir+json"})
        response = connection.getresponse()
        response.read()
        if rep >= 0:
            samples.append((time.perf_counter() - t0) * 1000)
            statuses.add(response.status)
    return summarize(samples) | {
        "kind": q.kind,
        "target_ms": q.target_ms,
        "status": sorted(statuses),
    }


# --- report ---------------------------------------------------------------------------------------


def show_row(name: str, r: dict[str, Any]) -> None:
    if "error" in r:
        print(f"    {name:<40} ERROR {r['error'][:150]}", flush=True)
        return
    mark = "" if r.get("met", True) else "  MISSED"
    rows = f"{r['median_rows']:>7g}" if "median_rows" in r else f"{r.get('status')!s:>7}"
    print(
        f"    {name:<40} {r['kind']:<7} {r['target_ms']:>6g} {r['p50_ms']:>8.1f} "
        f"{r['p95_ms']:>8.1f} {r['max_ms']:>8.1f} {rows} {r['n']:>4}{mark}",
        flush=True,
    )


def show_header() -> None:
    print(
        f"    {'query':<40} {'kind':<7} {'target':>6} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'max ms':>8} {'rows':>7} {'n':>4}",
        flush=True,
    )


def show_misses(backend: str, results: dict[str, Any]) -> None:
    for name, r in results.items():
        if r.get("met", True) and "error" not in r:
            continue
        print(
            f"\n=== {backend}: {name} missed (p95 {r.get('p95_ms')} ms, target "
            f"{r.get('target_ms')} ms) ==="
        )
        print(f"slowest request: {r.get('slowest_request', '')}")
        print(r.get("explain") or r.get("error", ""))


def show_summary(results: dict[str, Any]) -> None:
    backends = list(results["backends"])
    print("\nSummary (p95 ms; * = target missed)")
    print(f"  {'query':<40} {'target':>6} " + " ".join(f"{b:>12}" for b in backends))
    ran = {name for b in backends for name in results["backends"][b].get("queries", {})}
    for q in (q for q in QUERIES if q.name in ran):
        cells = []
        for b in backends:
            r = results["backends"][b]["queries"].get(q.name)
            if r is None:
                cells.append(f"{'-':>12}")
            elif "error" in r:
                cells.append(f"{'error':>12}")
            else:
                cells.append(f"{r['p95_ms']:>11.1f}{'*' if not r['met'] else ' '}")
        print(f"  {q.name:<40} {q.target_ms:>6g} " + " ".join(cells))


# --- main -----------------------------------------------------------------------------------------


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench search", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--resources", type=int, default=DEFAULT_SIZE)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--budget", type=float, default=30.0, help="seconds per query at most")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--sqlite", type=Path, help="SQLite file (default under the temp dir)")
    parser.add_argument("--postgres", help="PostgreSQL URL (default: a scratch database)")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--reload", action="store_true", help="load even when a marker matches")
    parser.add_argument("--load-only", action="store_true")
    parser.add_argument("--only", help="comma-separated query names")
    parser.add_argument("--batch", type=int, default=500, help="resources per transaction")
    parser.add_argument("--tasks", type=int, default=4, help="concurrent units (PostgreSQL)")
    parser.add_argument("--workers", type=int, default=2, help="loader processes (PostgreSQL)")
    return parser.parse_args()


def backend_urls(options: argparse.Namespace) -> dict[str, str]:
    urls: dict[str, str] = {}
    n, seed = options.resources, options.seed
    if not options.skip_sqlite:
        path = options.sqlite or Path(tempfile.gettempdir()) / "healthbridge-bench" / (
            f"search-{n}-s{seed}.db"
        )
        urls["sqlite"] = f"sqlite:///{Path(path).absolute()}"
    if not options.skip_postgres:
        name = "healthbridge_bench_search" + ("" if n == DEFAULT_SIZE else f"_{n}")
        urls["postgresql"] = options.postgres or f"{PG_BASE}/{name}"
    return urls


def git_state() -> dict[str, Any]:
    """The commit measured and whether the work tree had changes on top of it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], check=False, cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}


async def run(options: argparse.Namespace) -> dict[str, Any]:
    dataset = Dataset(options.seed, options.resources)
    g = Generator(load_templates(options.data), options.seed, options.resources)
    gc.freeze()  # as the server does after start-up: the templates stay out of GC scans
    names = set(options.only.split(",")) if options.only else None
    queries = [q for q in QUERIES if names is None or q.name in names]
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "git": git_state(),
        "dataset": dataset.key() | {"patients": g.patients, "size": g.size},
        "backends": {},
    }
    for backend, url in backend_urls(options).items():
        print(f"\n== {backend}: {g.size:,} resources, {g.patients:,} patients", flush=True)
        entry: dict[str, Any] = {"loadavg_before": os.getloadavg()}
        sqlite = backend == "sqlite"
        entry["load"] = await ensure_loaded(
            url,
            dataset,
            options.data,
            batch=options.batch,
            reload=options.reload,
            tasks=1 if sqlite else options.tasks,
            workers=1 if sqlite else options.workers,
        )
        load = entry["load"]
        print(
            f"  load: {load['resources']:,} resources in {load['load_seconds']:,} s "
            f"({load['resources_per_second']:,}/s), {load['database_bytes'] / 2**30:.2f} GiB",
            flush=True,
        )
        if not options.load_only:
            show_header()
            entry["queries"] = await time_queries(url, g, queries, options.repeat, options.budget)
            if not options.skip_http and any(q.http for q in queries):
                entry["http"] = time_http(url, g, queries, min(options.repeat, 30))
            show_misses(backend, entry["queries"])
        entry["loadavg_after"] = os.getloadavg()
        results["backends"][backend] = entry
    return results


def main() -> None:
    options = arguments()
    results = asyncio.run(run(options))
    if not options.load_only:
        show_summary(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"search_scale-{options.resources}-{stamp}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
