"""Package files that are not installable are refused with a clear reason, and nothing is
written (https://hl7.org/fhir/packages.html: a gzipped tar of ``package/`` members)."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import pytest

from healthbridge.fhir.errors import NotFound
from healthbridge.packages import ArchiveLimits, InstallOptions, PackageError, PackageInstaller
from healthbridge.packages.archive import read_archive
from healthbridge.packages.manifest import index_of, read_manifest
from healthbridge.rest.service import FhirService
from tests.packages import builder


def _with_member(path: Path, info: tarfile.TarInfo, data: bytes = b"") -> Path:
    builder.build(path, builder.conformance())
    with tarfile.open(path, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar if m.isfile()]  # type: ignore[union-attr]
    with tarfile.open(path, "w:gz") as tar:
        for member, content in members:
            tar.addfile(member, io.BytesIO(content))
        info.size = len(data) if info.isfile() else 0
        tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def test_a_member_climbing_out_of_the_package_refuses_the_file(tmp_path: Path) -> None:
    path = _with_member(tmp_path / "p.tgz", tarfile.TarInfo("package/../../etc/evil.json"), b"{}")
    with pytest.raises(PackageError, match="points outside the package"):
        read_archive(path)


def test_absolute_and_link_members_refuse_the_file(tmp_path: Path) -> None:
    path = _with_member(tmp_path / "a.tgz", tarfile.TarInfo("/package/x.json"), b"{}")
    with pytest.raises(PackageError, match="outside the package"):
        read_archive(path)
    link = tarfile.TarInfo("package/link.json")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(PackageError, match="link or a special file"):
        read_archive(_with_member(tmp_path / "l.tgz", link))


def test_a_file_that_is_not_a_package(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"this is not gzip")
    with pytest.raises(PackageError, match="not a readable package file"):
        read_archive(junk)
    no_manifest = tmp_path / "nomanifest.tgz"
    with tarfile.open(no_manifest, "w:gz") as tar:
        data = b'{"resourceType": "Patient"}'
        info = tarfile.TarInfo("package/Patient-1.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(PackageError, match=re.escape("no package/package.json")):
        read_archive(no_manifest)
    unnamed = builder.build(tmp_path / "unnamed.tgz", package_json={"title": "x"})
    with pytest.raises(PackageError, match="name and version"):
        read_manifest(read_archive(unnamed).manifest)
    r5 = builder.build(tmp_path / "r5.tgz", package_json=builder.manifest(fhirVersions=["5.0.0"]))
    with pytest.raises(PackageError, match="R4 edition"):
        read_manifest(read_archive(r5).manifest)


def test_size_limits(tmp_path: Path) -> None:
    path = builder.sample_package(tmp_path / "p.tgz")
    with pytest.raises(PackageError, match="over the 100 a package member may have"):
        read_archive(path, ArchiveLimits(max_member_bytes=100))
    with pytest.raises(PackageError, match="larger than a package may be"):
        read_archive(path, ArchiveLimits(max_members=3))


def test_what_is_read_and_what_is_passed_over(tmp_path: Path) -> None:
    path = builder.build(
        tmp_path / "p.tgz",
        builder.conformance(),
        builder.examples(),
        raw={
            "package/xml/ValueSet-colors.xml": b"<ValueSet/>",
            "package/other/spec.internals": b"{}",
            "package/other/validation-oo.json": b'{"resourceType": "OperationOutcome"}',
            "package/openapi/x.json": b"{}",
            "package/ig-notes.json": b'{"notes": true}',
        },
    )
    archive = read_archive(path)
    assert sorted(f.name for f in archive.files if f.folder == "example") == [
        "package/example/Patient-blue.json",
        "package/example/Patient-red.json",
    ]
    assert len([f for f in archive.files if f.folder == "package"]) == 5
    assert archive.ignored == ["package/ig-notes.json"]
    assert {e["filename"] for e in index_of(archive, "package")} == set(builder.conformance())


async def test_corrupt_json_installs_nothing(service: FhirService, tmp_path: Path) -> None:
    files: dict[str, object] = dict(builder.conformance())
    files["ValueSet-truncated.json"] = b'{"resourceType": "ValueSet", "id": '
    path = builder.build(tmp_path / "p.tgz", files)
    with pytest.raises(
        PackageError, match=re.escape("package/ValueSet-truncated.json is not valid JSON")
    ):
        await PackageInstaller(service).install(path, InstallOptions())
    assert (await service.repository.records.records("package")) == []
    with pytest.raises(NotFound):
        await service.read("ValueSet", "colors")
