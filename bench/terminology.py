"""Terminology at LOINC scale (issue 6): loading a release and answering the operations.

1. Writes a synthetic LOINC CSV release (``tests/terminology/synthetic.py``; made-up terms over a
   clinical vocabulary, with a component hierarchy) of ``--concepts`` terms (default 100,000).
2. Loads it into a fresh SQLite database with ``healthbridge terminology load loinc`` (the CLI
   code path, in a subprocess): wall time and concepts per second.
3. Starts ``healthbridge serve --no-auth`` on 127.0.0.1 over that database and measures, one
   request at a time on a kept-alive connection, ``CodeSystem/$lookup`` and
   ``CodeSystem/$validate-code`` for random codes, and ``ValueSet/$expand`` of all of LOINC with
   a two-word text ``filter`` (``count=20``): p50 and p95. Targets: $lookup and $validate-code
   p95 <= 5 ms, $expand with a text filter p95 <= 100 ms.

Run: ``python -m bench terminology [--concepts 100000] [--requests 500]``.
Results: ``bench/results/terminology.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
from tests.terminology.synthetic import ANALYTES, write_loinc

from bench.http_core import RESULTS, free_port, healthbridge, process

LOINC = "http://loinc.org"
WORDS = [a.split()[0].lower() for a in ANALYTES]
SPECIMENS = ["serum", "blood", "urine", "plasma", "arterial", "venous", "saliva"]


def load(work: Path, release: Path, database: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "healthbridge.cli", "terminology", "load", "loinc"]
    command += [str(release), "--database", database, "--data-dir", str(work / "data")]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    print(done.stdout.strip())
    found = re.search(r": ([\d,]+) concepts.* in ([\d.]+) s", done.stdout)
    assert found, done.stdout
    concepts, seconds = int(found.group(1).replace(",", "")), float(found.group(2))
    return {
        "concepts": concepts,
        "load_seconds": seconds,
        "concepts_per_s": round(concepts / seconds),
        "wall_seconds_including_parse_and_startup": round(wall, 2),
        "database_mb": round(Path(database.removeprefix("sqlite:///")).stat().st_size / 1e6, 1),
    }


def timed(
    client: httpx2.Client, count: int, request: Callable[[], httpx2.Response]
) -> dict[str, Any]:
    for _ in range(20):  # warm-up
        request()
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = request()
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text[:500]
    times.sort()
    return {
        "requests": count,
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[int(len(times) * 0.95) - 1], 2),
        "max_ms": round(times[-1], 2),
    }


def operations(base: str, codes: list[str], count: int) -> dict[str, Any]:
    rng = random.Random(1)
    value_set = {"resourceType": "ValueSet", "compose": {"include": [{"system": LOINC}]}}
    with httpx2.Client(base_url=base, timeout=30) as client:

        def lookup() -> httpx2.Response:
            params = {"system": LOINC, "code": rng.choice(codes)}
            return client.get("/CodeSystem/$lookup", params=params)

        def validate() -> httpx2.Response:
            params = {"url": LOINC, "code": rng.choice(codes)}
            return client.get("/CodeSystem/$validate-code", params=params)

        def expand() -> httpx2.Response:
            text = f"{rng.choice(WORDS)} {rng.choice(SPECIMENS)}"
            body = {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "valueSet", "resource": value_set},
                    {"name": "filter", "valueString": text},
                    {"name": "count", "valueInteger": 20},
                ],
            }
            headers = {"Content-Type": "application/fhir+json"}
            return client.post("/ValueSet/$expand", json=body, headers=headers)

        sample = expand().json()
        print("sample $expand total:", sample.get("expansion", {}).get("total"))
        return {
            "lookup": timed(client, count, lookup),
            "validate_code": timed(client, count, validate),
            "expand_text_filter": timed(client, count, expand),
        }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench terminology")
    parser.add_argument("--concepts", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-terminology-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        release = write_loinc(work / "release", args.concepts)
        written = time.perf_counter() - started
        database = f"sqlite:///{work / 'terminology.db'}"
        results: dict[str, Any] = {"release_write_seconds": round(written, 2)}
        results["load"] = load(work, release, database)
        codes = [f"{n}-{n % 10}" for n in range(10_000, 10_000 + args.concepts)]
        port = free_port()
        cmd, env = healthbridge(work, database, 1, port)
        env["HEALTHBRIDGE_ACCESS_LOG"] = "false"
        base = f"http://127.0.0.1:{port}/fhir"
        with process(cmd, env, f"{base}/metadata", work / "server.log"):
            results["operations"] = operations(base, codes, args.requests)
    results["targets"] = {"lookup_p95_ms": 5, "validate_code_p95_ms": 5, "expand_p95_ms": 100}
    print(json.dumps(results, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "terminology.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
