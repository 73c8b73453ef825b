"""Installing a FHIR NPM package (https://hl7.org/fhir/packages.html) on every backend: what is
installed, under which ids, idempotency, invalid resources and dependencies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import NotFound
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.jobs.search_registry import SearchRegistry
from healthbridge.packages import (
    InstalledPackages,
    InstallOptions,
    InvalidPackage,
    PackageInstaller,
)
from healthbridge.rest.service import FhirService
from tests.packages import builder

FAST = InstallOptions(reindex_barrier_seconds=0)
WITH_EXAMPLES = InstallOptions(examples=True, reindex_barrier_seconds=0)


async def install(service: FhirService, path: Path, options: InstallOptions = FAST) -> Any:
    return await PackageInstaller(service).install(path, options)


async def search(service: FhirService, resource_type: str, **params: str) -> list[dict[str, Any]]:
    """A search with the parameters in force now (core + custom ones a finished reindex made
    searchable), as the server's search registry sees them."""
    registry = SearchRegistry(service.definitions)
    await registry.refresh(service.repository.jobs)
    query = SearchParser(registry.search_definitions).parse(
        resource_type, list(params.items()), strict=True
    )
    page = await service.repository.search(query)
    return [jsonformat.loads(m.content) for m in page.matches]


async def test_conformance_resources_are_installed_under_their_ids(
    service: FhirService, tmp_path: Path
) -> None:
    result = await install(service, builder.sample_package(tmp_path / "p.tgz"))
    assert sorted((t, a, n) for (t, a), n in result.counts.items()) == [
        ("CodeSystem", "create", 1),
        ("SearchParameter", "create", 1),
        ("StructureDefinition", "create", 2),
        ("ValueSet", "create", 1),
    ]
    profile = jsonformat.loads(
        (await service.read("StructureDefinition", "colorful-patient")).content
    )
    assert profile["url"] == builder.PROFILE and profile["version"] == "1.0.0"
    found = await search(service, "ValueSet", url=builder.VALUE_SET)
    assert [v["id"] for v in found] == ["colors"]
    with pytest.raises(NotFound):  # examples only on request
        await service.read("Patient", "blue")


async def test_installing_again_changes_nothing(service: FhirService, tmp_path: Path) -> None:
    path = builder.sample_package(tmp_path / "p.tgz")
    first = await install(service, path, WITH_EXAMPLES)
    before = await service.read("StructureDefinition", "colorful-patient")
    again = await install(service, path, WITH_EXAMPLES)
    assert first.changed and not again.changed
    assert {a for (_, a) in again.counts} == {"unchanged"}
    assert sum(again.counts.values()) == sum(first.counts.values()) == 7
    after = await service.read("StructureDefinition", "colorful-patient")
    assert after.version_id == before.version_id == 1
    assert again.record.installed == first.record.installed  # the record is not rewritten


async def test_a_changed_resource_is_updated_in_place(service: FhirService, tmp_path: Path) -> None:
    await install(service, builder.sample_package(tmp_path / "p.tgz"))
    files = builder.conformance()
    files["ValueSet-colors.json"]["title"] = "The colors"
    result = await install(service, builder.build(tmp_path / "q.tgz", files))
    assert result.counts[("ValueSet", "update")] == 1
    assert result.counts[("StructureDefinition", "unchanged")] == 2
    stored = await service.read("ValueSet", "colors")
    assert stored.version_id == 2 and jsonformat.loads(stored.content)["title"] == "The colors"


async def test_a_new_version_lives_beside_the_old_under_a_new_id(
    service: FhirService, tmp_path: Path
) -> None:
    """url|version identifies a canonical resource; the package id is kept only when free."""
    await install(service, builder.sample_package(tmp_path / "v1.tgz"))
    await install(service, builder.sample_package(tmp_path / "v2.tgz", version="2.0.0"))
    found = await search(service, "StructureDefinition", url=builder.PROFILE)
    assert sorted(r["version"] for r in found) == ["1.0.0", "2.0.0"]
    by_version = {r["version"]: r["id"] for r in found}
    assert by_version["1.0.0"] == "colorful-patient" != by_version["2.0.0"]
    record = await InstalledPackages(service.repository.records).get(
        "example.fhir.test-ig", "2.0.0"
    )
    assert record is not None
    assert f"StructureDefinition/{by_version['2.0.0']}" in {r.reference for r in record.resources}


async def test_examples_keep_their_ids(service: FhirService, tmp_path: Path) -> None:
    result = await install(service, builder.sample_package(tmp_path / "p.tgz"), WITH_EXAMPLES)
    assert result.counts[("Patient", "create")] == 2
    blue = jsonformat.loads((await service.read("Patient", "blue")).content)
    assert blue["extension"][0]["url"] == builder.EXTENSION


async def test_an_installed_search_parameter_is_searchable_at_once(
    service: FhirService, tmp_path: Path
) -> None:
    result = await install(service, builder.sample_package(tmp_path / "p.tgz"), WITH_EXAMPLES)
    assert result.searchable == ["Patient.favorite-color"]
    found = await search(service, "Patient", **{"favorite-color": f"{builder.CODES}|blue"})
    assert [p["id"] for p in found] == ["blue"]
    # a patient written after the install is indexed with it too
    await service.update("Patient", "late", builder.patient("late", "blue"), None)
    found = await search(service, "Patient", **{"favorite-color": "blue"})
    assert sorted(p["id"] for p in found) == ["blue", "late"]


async def test_an_invalid_resource_installs_nothing_and_is_named(
    service: FhirService, tmp_path: Path
) -> None:
    files: dict[str, Any] = dict(builder.conformance())
    files["ValueSet-broken.json"] = {
        "resourceType": "ValueSet",
        "id": "broken",
        "url": f"{builder.BASE}/ValueSet/broken",
        "status": "finished",  # not a publication status
    }
    path = builder.build(tmp_path / "bad.tgz", files, builder.examples())
    with pytest.raises(InvalidPackage) as raised:
        await install(service, path, WITH_EXAMPLES)
    [invalid] = raised.value.invalid
    assert invalid.file == "package/ValueSet-broken.json"
    assert any("ValueSet.status" in i.expression for i in invalid.issues)
    assert "--skip-invalid" in str(raised.value)
    with pytest.raises(NotFound):
        await service.read("StructureDefinition", "colorful-patient")
    assert await InstalledPackages(service.repository.records).all() == []

    result = await install(
        service, path, InstallOptions(skip_invalid=True, reindex_barrier_seconds=0)
    )
    assert [s.file for s in result.skipped] == ["package/ValueSet-broken.json"]
    assert result.counts[("ValueSet", "create")] == 1
    await service.read("StructureDefinition", "colorful-patient")


async def test_missing_dependencies_are_a_warning_naming_what_to_install(
    service: FhirService, tmp_path: Path
) -> None:
    needs = {"hl7.fhir.r4.core": "4.0.1", "example.fhir.base": "0.1.0"}
    base = builder.build(
        tmp_path / "base.tgz", {}, package_json=builder.manifest("example.fhir.base", "0.1.0")
    )
    path = builder.build(
        tmp_path / "p.tgz", builder.conformance(), package_json=builder.manifest(dependencies=needs)
    )
    result = await install(service, path)
    [warning] = result.warnings
    assert "example.fhir.base#0.1.0" in warning and "hl7.fhir.r4.core" not in warning
    assert result.counts[("ValueSet", "create")] == 1  # installed all the same
    await install(service, base)
    again = await install(service, path)
    assert again.warnings == []


async def test_a_taken_id_is_not_overwritten(service: FhirService, tmp_path: Path) -> None:
    """The package id of a canonical resource is kept only if no other resource has it."""
    mine = {"resourceType": "ValueSet", "id": "colors", "status": "draft", "url": "http://mine"}
    await service.update("ValueSet", "colors", mine, None)
    result = await install(service, builder.sample_package(tmp_path / "p.tgz"))
    [step] = [s for s in result.steps if s.type == "ValueSet"]
    assert step.action == "create" and step.id not in (None, "colors")
    assert (
        jsonformat.loads((await service.read("ValueSet", "colors")).content)["url"] == "http://mine"
    )
    installed = jsonformat.loads((await service.read("ValueSet", str(step.id))).content)
    assert installed["url"] == builder.VALUE_SET


async def test_a_parameter_redefining_a_core_one_is_stored_with_a_warning(
    service: FhirService, tmp_path: Path
) -> None:
    files = builder.conformance()
    files["SearchParameter-patient-favorite-color.json"]["code"] = "name"  # core Patient.name
    result = await install(service, builder.build(tmp_path / "p.tgz", files))
    assert result.counts[("SearchParameter", "create")] == 1 and result.searchable == []
    assert any("is stored but not searchable" in w and "'name'" in w for w in result.warnings)
