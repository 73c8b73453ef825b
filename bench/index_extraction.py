"""Search index extraction throughput (https://hl7.org/fhir/R4/search.html), single process.

Runs ``Indexer.index_rows`` over every ``entry.resource`` of the Synthea transaction Bundles,
in memory: files are decoded before the clock starts, one warm-up pass (which also compiles
each type's parameters), then the best of ``--repeat`` timed passes is kept. Throughput is per
core: resources divided by process CPU time (wall clock recorded beside it). Also reports how
many parameter evaluations ran through compiled accessors versus the fhirpathpy fallback.

    .venv/bin/python bench/index_extraction.py [--data ../shared/data] [--repeat 3]

Prints a summary and writes ``bench/results/index_extraction.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import tarfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from healthbridge.fhir import jsonformat
from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.search import Indexer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SYNTHEA = "synthea/synthea-r4-100-patients.tar.gz"


def synthea_resources(path: Path) -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = []
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is None or not member.name.endswith(".json"):
                continue
            resources.extend(e["resource"] for e in jsonformat.loads(handle.read())["entry"])
    return resources


def timed(indexer: Indexer, resources: list[dict[str, Any]], repeat: int) -> dict[str, Any]:
    rows = sum(len(indexer.index_rows(r)) for r in resources)  # warm-up, compiles
    best_cpu, best_wall = float("inf"), float("inf")
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        for resource in resources:
            indexer.index_rows(resource)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return {
        "resources": len(resources),
        "index_rows": rows,
        "cpu_seconds": round(best_cpu, 3),
        "wall_seconds": round(best_wall, 3),
        "resources_per_second_per_core": round(len(resources) / best_cpu),
        "rows_per_second_per_core": round(rows / best_cpu),
    }


def evaluation_share(indexer: Indexer, resources: list[dict[str, Any]]) -> dict[str, Any]:
    """Parameter evaluations (one per parameter per resource) by compiled vs fallback."""
    counts: Counter[str] = Counter()
    fallback_params: Counter[str] = Counter()
    for resource in resources:
        for param in indexer.parameters(resource["resourceType"]):
            accessors = [param.accessor, *(a for _, a in param.components)]
            compiled = all(a.compiled for a in accessors)
            counts["compiled" if compiled else "fallback"] += 1
            if not compiled:
                fallback_params[f"{resource['resourceType']}.{param.code}"] += 1
    total = sum(counts.values())
    return {
        "evaluations": total,
        "compiled": counts["compiled"],
        "fallback": counts["fallback"],
        "compiled_share": round(counts["compiled"] / total, 5) if total else None,
        "fallback_parameters": dict(fallback_params),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    path = args.data / SYNTHEA
    if not path.exists():
        raise SystemExit(f"missing {path}")
    resources = synthea_resources(path)
    gc.collect()
    gc.freeze()
    indexer = Indexer(load_definitions())
    result = {
        "benchmark": "index_extraction",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "data": SYNTHEA,
        "types": dict(Counter(r["resourceType"] for r in resources).most_common()),
        "throughput": timed(indexer, resources, args.repeat),
        "share": evaluation_share(indexer, resources),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "index_extraction.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("throughput", "share")}, indent=2))


if __name__ == "__main__":
    main()
