"""Base validation throughput (https://hl7.org/fhir/R4/validation.html), single process.

Validates every ``entry.resource`` of the Synthea transaction Bundles (not the Bundles) and every
resource of the spec's examples package, in memory: files are decoded before the clock starts,
one warm-up pass, then the best of ``--repeat`` timed passes is kept. Throughput is per core:
resources divided by the process CPU time (the wall-clock figure is recorded beside it).
Loaded resources are moved out of the garbage collector's way (``gc.freeze``), as a server
validating one request body at a time does not hold 190 MB of examples in its heap.

    .venv/bin/python bench/validation.py [--data ../shared/data] [--repeat 3]
    .venv/bin/python -m bench validation

Prints resources/s and writes ``bench/results/validation.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import tarfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from healthbridge.fhir import jsonformat
from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.validation import Validator

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TYPICAL = ("Patient", "Observation", "Encounter", "Condition", "MedicationRequest")


def json_files(path: Path) -> Iterator[bytes]:
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None and member.name.endswith(".json"):
                yield handle.read()


def synthea_resources(path: Path) -> Iterator[dict[str, Any]]:
    for raw in json_files(path):
        for entry in jsonformat.loads(raw)["entry"]:
            yield entry["resource"]


def example_resources(path: Path) -> Iterator[dict[str, Any]]:
    for raw in json_files(path):
        resource = jsonformat.loads(raw)
        if isinstance(resource, dict) and "resourceType" in resource:
            yield resource


def timed(validator: Validator, resources: list[dict[str, Any]], repeat: int) -> dict[str, Any]:
    """Best-of-``repeat`` throughput per core (process CPU time, so that other load on the
    machine does not count) and by the wall clock; counts the resources that had errors."""
    invalid = sum(
        any(i.severity == "error" for i in validator.validate(r)) for r in resources
    )  # also the warm-up pass
    best_cpu = best_wall = float("inf")
    for _ in range(repeat):
        cpu, wall = time.process_time(), time.perf_counter()
        for resource in resources:
            validator.validate(resource)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    count = len(resources)
    size = sum(len(jsonformat.dumps(r)) for r in resources)
    return {
        "resources": count,
        "json_bytes": size,
        "cpu_seconds": round(best_cpu, 4),
        "wall_seconds": round(best_wall, 4),
        "resources_per_second": round(count / best_cpu),
        "resources_per_second_wall": round(count / best_wall),
        "megabytes_per_second": round(size / best_cpu / 1e6, 2),
        "with_errors": invalid,
    }


def run(data: Path, repeat: int) -> dict[str, Any]:
    validator = Validator(load_definitions())
    synthea = list(synthea_resources(data / "synthea" / "synthea-r4-100-patients.tar.gz"))
    examples = list(example_resources(data / "fhir-r4" / "hl7.fhir.r4.examples-4.0.1.tgz"))
    gc.collect()
    gc.freeze()
    by_type = Counter(r["resourceType"] for r in synthea)
    results: dict[str, Any] = {
        "synthea_all": timed(validator, synthea, repeat),
        "synthea_typical": timed(
            validator, [r for r in synthea if r["resourceType"] in TYPICAL], repeat
        ),
        "synthea_by_type": {
            name: timed(validator, [r for r in synthea if r["resourceType"] == name], repeat)
            for name, _ in by_type.most_common()
        },
        "spec_examples": timed(validator, examples, repeat),
    }
    gc.unfreeze()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Base validation throughput, one process.")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes (best is kept)")
    parser.add_argument("--out", type=Path, default=RESULTS / "validation.json")
    args = parser.parse_args(argv)
    results = run(args.data, args.repeat)
    for name in ("synthea_all", "synthea_typical", "spec_examples"):
        r = results[name]
        print(
            f"{name:16} {r['resources']:>6} resources  {r['resources_per_second']:>7,}/s"
            f"  {r['megabytes_per_second']:>6} MB/s  ({r['with_errors']} with errors)"
        )
    for name, r in results["synthea_by_type"].items():
        print(f"  {name:22} {r['resources']:>6}  {r['resources_per_second']:>7,}/s")
    report = {
        "benchmark": "validation",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "repeat": args.repeat,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
