"""The HL7 International Patient Summary and Genomics Reporting packages install whole
(https://hl7.org/fhir/packages.html; https://hl7.org/fhir/uv/ips/,
https://hl7.org/fhir/uv/genomics-reporting/), from ``../shared/data/fhir-igs``.

The expected counts come from the package file itself: its conformance resources are the
``package/*.json`` resources with a canonical ``url`` (neither package ships a
``.index.json``); its examples are ``package/example/*.json`` and the other ``package/*.json``
resources.
"""

from __future__ import annotations

import json
import tarfile
import time
from collections import Counter
from pathlib import Path

import pytest

from healthbridge.fhir import jsonformat
from healthbridge.packages import (
    InstalledPackages,
    InstallOptions,
    InstallResult,
    PackageInstaller,
)
from healthbridge.packages.plan import Action
from healthbridge.rest.service import FhirService
from tests.packages.conftest import shared_package

pytestmark = pytest.mark.shared_data
PACKAGES = ["hl7.fhir.uv.ips-2.0.0.tgz", "hl7.fhir.uv.genomics-reporting-3.0.0.tgz"]


def expected(path: Path) -> tuple[Counter[str], Counter[str]]:
    """(conformance, examples): resource type -> count, read straight from the tar."""
    conformance: Counter[str] = Counter()
    examples: Counter[str] = Counter()
    with tarfile.open(path) as tar:
        for member in tar:
            parts = member.name.split("/")
            handle = tar.extractfile(member) if member.name.endswith(".json") else None
            if handle is None or parts[0] != "package" or len(parts) > 3:
                continue
            value = json.loads(handle.read())
            if not isinstance(value, dict) or "resourceType" not in value:
                continue
            if len(parts) == 2 and isinstance(value.get("url"), str):
                conformance[value["resourceType"]] += 1
            elif len(parts) == 2 or parts[1] == "example":
                examples[value["resourceType"]] += 1
    return conformance, examples


def created(result: InstallResult, action: Action) -> Counter[str]:
    """Resource type -> how many the install did ``action`` to."""
    return Counter({t: n for (t, a), n in result.counts.items() if a == action})


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("name", PACKAGES)
async def test_a_published_package_installs_whole(
    name: str, service: FhirService, tmp_path: Path
) -> None:
    path = shared_package(name)
    conformance, examples = expected(path)
    installer = PackageInstaller(service)

    started = time.perf_counter()
    first = await installer.install(path, InstallOptions(reindex_barrier_seconds=0))
    seconds = time.perf_counter() - started
    assert created(first, "create") == conformance
    assert first.skipped == []

    again = await installer.install(path, InstallOptions(reindex_barrier_seconds=0))
    assert not again.changed and created(again, "unchanged") == conformance

    options = InstallOptions(examples=True, reindex_barrier_seconds=0)
    with_examples = await installer.install(path, options)
    assert created(with_examples, "create") == examples
    assert created(with_examples, "unchanged") == conformance

    for step in with_examples.steps:  # every resource reads back as the package has it
        assert step.id is not None
        stored = jsonformat.loads((await service.read(step.type, step.id)).content)
        assert stored.get("url") == step.candidate.resource.get("url")
    record = await InstalledPackages(service.repository.records).get(
        first.manifest.name, first.manifest.version
    )
    assert record is not None and record.examples
    assert len(record.resources) == sum(conformance.values()) + sum(examples.values())
    assert any("hl7.terminology.r4" in w for w in first.warnings)  # not installed: a warning
    print(f"{name}: {sum(conformance.values())} conformance resources in {seconds:.2f} s")
