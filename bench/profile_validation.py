"""Profile validation throughput (https://hl7.org/fhir/R4/profiling.html), single process.

* IPS 2.0.0 and Genomics Reporting 3.0.0 examples against the profiles they claim
  (``meta.profile``; Bundles without a claim still have their entries checked);
* Synthea vital-sign Observations against the R4 vital signs profiles, and every resource of the
  first ``--bundles`` Synthea Bundles with the profiles that apply (vital signs; none for the
  rest, whose extensions are still checked).

Each figure is given for the profile pass alone and for base validation plus profiles (what
``$validate`` with a profile does). Files are decoded before the clock starts; the first pass
(which compiles the profiles: reported as ``cold_seconds``) is a warm-up; the best of
``--repeat`` passes is kept. Throughput is per core: resources / process CPU time.

    .venv/bin/python bench/profile_validation.py [--data ../shared/data] [--repeat 3]
    .venv/bin/python -m bench profiles

Prints resources/s and writes ``bench/results/profile_validation.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from healthbridge.fhir import jsonformat, ucum
from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.validation import Validator
from healthbridge.fhir.validation.profiles import ProfileValidator, claimed_profiles
from healthbridge.packages.archive import EXAMPLE, read_archive

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CORE_SD = "http://hl7.org/fhir/StructureDefinition/"
VITALS = {
    "29463-7": "bodyweight",
    "8302-2": "bodyheight",
    "85354-9": "bp",
    "8867-4": "heartrate",
    "9279-1": "resprate",
    "39156-5": "bmi",
    "8310-5": "bodytemp",
    "9843-4": "headcircum",
    "2708-6": "oxygensat",
}

Case = list[tuple[dict[str, Any], list[str]]]


def package_json(path: Path, folder: str) -> Iterator[dict[str, Any]]:
    """The resources directly in ``folder`` (``package/`` or ``package/example/``), read as
    the package installer reads them."""
    kind = EXAMPLE if folder.rstrip("/").endswith(EXAMPLE) else "package"
    for file in read_archive(path).files:
        if file.folder == kind:
            yield file.resource


def structures(paths: list[Path]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in paths:
        for resource in package_json(path, "package/"):
            if resource["resourceType"] == "StructureDefinition":
                found[resource["url"]] = resource
                found[f"{resource['url']}|{resource.get('version')}"] = resource
    return found


def vital_profiles(resource: dict[str, Any]) -> list[str]:
    if resource["resourceType"] != "Observation":
        return []
    categories = [c.get("code") for cat in resource.get("category", ()) for c in cat["coding"]]
    if "vital-signs" not in categories:
        return []
    code = resource["code"]["coding"][0]["code"]
    return [CORE_SD + "vitalsigns"] + ([CORE_SD + VITALS[code]] if code in VITALS else [])


def synthea(path: Path, bundles: int) -> Case:
    case: Case = []
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is None or not member.name.endswith(".json"):
                continue
            for entry in jsonformat.loads(handle.read())["entry"]:
                case.append((entry["resource"], vital_profiles(entry["resource"])))
            bundles -= 1
            if bundles == 0:
                break
    return case


def timed(
    check: Callable[[dict[str, Any], list[str]], object], case: Case, repeat: int
) -> dict[str, Any]:
    cold = time.process_time()
    for resource, profiles in case:
        check(resource, profiles)
    cold = time.process_time() - cold
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for resource, profiles in case:
            check(resource, profiles)
        best = min(best, time.process_time() - start)
    return {
        "resources": len(case),
        "cold_seconds": round(cold, 3),
        "cpu_seconds": round(best, 4),
        "resources_per_second": round(len(case) / best) if best else None,
    }


def run(data: Path, repeat: int, bundles: int) -> dict[str, Any]:
    definitions = load_definitions()
    core = data / "fhir-r4" / "hl7.fhir.r4.core-4.0.1.tgz"
    ips = data / "fhir-igs" / "hl7.fhir.uv.ips-2.0.0.tgz"
    genomics = data / "fhir-igs" / "hl7.fhir.uv.genomics-reporting-3.0.0.tgz"
    lookup = structures([core, ips, genomics])
    base = Validator(definitions)

    def units(code: str) -> bool:
        return ucum.conversion(code) is not None

    cases: dict[str, Case] = {
        "ips_examples": [(r, claimed_profiles(r)) for r in package_json(ips, "package/example/")],
        "genomics_examples": [
            (r, claimed_profiles(r)) for r in package_json(genomics, "package/example/")
        ],
    }
    every = synthea(data / "synthea" / "synthea-r4-100-patients.tar.gz", bundles)
    cases["synthea_vital_signs"] = [(r, p) for r, p in every if p]
    cases["synthea_all"] = every
    results: dict[str, Any] = {}
    for name, case in cases.items():
        profiles = ProfileValidator(definitions, lookup.get, units=units)  # cold per case

        def both(resource: dict[str, Any], urls: list[str], p: ProfileValidator = profiles) -> None:
            base.validate(resource)
            p.validate(resource, urls)

        results[name] = {
            "profiles_only": timed(profiles.validate, case, repeat),
            "base_and_profiles": timed(both, case, repeat),
        }
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Profile validation throughput, one process.")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes (best is kept)")
    parser.add_argument("--bundles", type=int, default=10, help="Synthea Bundles to read")
    parser.add_argument("--out", type=Path, default=RESULTS / "profile_validation.json")
    args = parser.parse_args(argv)
    results = run(args.data, args.repeat, args.bundles)
    for name, figures in results.items():
        alone, both = figures["profiles_only"], figures["base_and_profiles"]
        print(
            f"{name:20} {alone['resources']:>6} resources"
            f"  profiles {alone['resources_per_second']:>6,}/s"
            f"  base+profiles {both['resources_per_second']:>6,}/s"
            f"  (cold {alone['cold_seconds']} s)"
        )
    report = {
        "benchmark": "profile_validation",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "repeat": args.repeat,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
