"""A FHIR package's manifest and index: https://hl7.org/fhir/packages.html#2.1.10.4.

``package/package.json`` names the package (``name``, ``version``), the FHIR versions it is for
(``fhirVersions``) and the packages it depends on (``dependencies``: name -> version).
``package/.index.json`` (index-version 1 or 2) lists the resource files of the folder with
``filename``, ``resourceType``, ``id``, ``url`` and ``version``; packages published without one
(both HL7 packages the tests use) get the same index built from their files (:func:`index_of`).

This server is R4: a package for other FHIR versions only (``fhirVersions`` without a 4.0.x) is
refused; one that names none is taken as R4.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from healthbridge.packages.archive import Archive, PackageError, PackageFile

CORE = "hl7.fhir.r4.core"
"""The R4 core package: built into this server, so never a missing dependency."""
_NAME = re.compile(r"[a-z0-9][a-z0-9._\-]{0,213}", re.IGNORECASE)
_VERSION = re.compile(r"[A-Za-z0-9.\-+_]{1,64}")


@dataclass(frozen=True, slots=True)
class Manifest:
    name: str
    version: str
    fhir_versions: tuple[str, ...]
    dependencies: Mapping[str, str]
    title: str
    canonical: str | None

    @property
    def key(self) -> str:
        """``name#version``, the way FHIR tooling names one package version."""
        return f"{self.name}#{self.version}"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def read_manifest(raw: Mapping[str, Any]) -> Manifest:
    """The manifest of ``package.json`` (PackageError when it cannot identify the package)."""
    name, version = _text(raw.get("name")), _text(raw.get("version"))
    if not _NAME.fullmatch(name) or not _VERSION.fullmatch(version):
        raise PackageError(
            f"package/package.json must give a package name and version (found name={name!r}, "
            f"version={version!r}); this is not a FHIR package"
        )
    fhir = raw.get("fhirVersions") or raw.get("fhir-version-list") or []
    fhir_versions = tuple(v for v in fhir if isinstance(v, str)) if isinstance(fhir, list) else ()
    if fhir_versions and not any(v.startswith("4.0") for v in fhir_versions):
        raise PackageError(
            f"{name}#{version} is for FHIR {', '.join(fhir_versions)}; this server is FHIR R4 "
            "(4.0.1): install the package's R4 edition"
        )
    found = raw.get("dependencies") or {}
    dependencies = (
        {str(k): str(v) for k, v in found.items() if isinstance(k, str)}
        if isinstance(found, dict)
        else {}
    )
    canonical = raw.get("canonical")
    return Manifest(
        name,
        version,
        fhir_versions,
        dependencies,
        _text(raw.get("title")) or _text(raw.get("description"))[:120],
        canonical if isinstance(canonical, str) else None,
    )


def _entry(file: PackageFile) -> dict[str, Any]:
    resource = file.resource
    entry: dict[str, Any] = {
        "filename": file.name.rsplit("/", 1)[-1],
        "resourceType": resource["resourceType"],
    }
    for key in ("id", "url", "version"):
        if isinstance(resource.get(key), str):
            entry[key] = resource[key]
    return entry


def index_of(archive: Archive, folder: str) -> list[dict[str, Any]]:
    """The ``.index.json`` entries of ``folder`` (``package`` or ``example``): the package's own
    index when it has one for the package folder, else built from the files."""
    if folder == "package" and archive.index is not None:
        files = archive.index.get("files")
        if isinstance(files, list):
            return [f for f in files if isinstance(f, dict)]
    return [_entry(f) for f in archive.files if f.folder == folder]


def missing_dependencies(
    manifest: Manifest, installed: Mapping[str, Sequence[str]]
) -> list[tuple[str, str, tuple[str, ...]]]:
    """The dependencies not installed at the version asked for: (name, version wanted,
    versions installed). The R4 core package is built in."""
    missing = []
    for name, wanted in sorted(manifest.dependencies.items()):
        if name == CORE:
            continue
        have = tuple(installed.get(name, ()))
        if wanted not in have:
            missing.append((name, wanted, have))
    return missing
