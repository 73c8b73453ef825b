"""Reading a FHIR NPM package file safely: https://hl7.org/fhir/packages.html.

A package is a gzipped tar whose members live under ``package/``: ``package/package.json`` (the
manifest), an optional ``package/.index.json``, the package's resources as
``package/*.json`` and its examples as ``package/example/*.json``. Other folders
(``package/xml``, ``package/other``, ``package/openapi``...) hold renderings this server does not
load and are passed over.

Nothing is ever extracted to disk: members are read into memory, with limits
(:class:`ArchiveLimits`) on the number of members, the size of one member and the total read,
so that a hostile file (a gzip bomb, millions of members) fails fast. An archive with a member
whose name is absolute or climbs out with ``..``, or with a link or device member, is refused
as a whole: such a file is not a package any tool made. JSON is parsed with exact decimals
(:mod:`healthbridge.fhir.jsonformat`), so ``72.50`` stays ``72.50``.
"""

from __future__ import annotations

import gzip
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import InvalidRequest

ROOT = "package"
EXAMPLE = "example"
MANIFEST = "package.json"
INDEX = ".index.json"


class PackageError(Exception):
    """The file cannot be installed as a package; nothing was written. The message says why
    and what to do."""


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    max_members: int = 20_000
    max_member_bytes: int = 64 * 1024 * 1024
    max_total_bytes: int = 1024 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PackageFile:
    """One resource file: ``name`` as in the archive (``package/example/Patient-1.json``) and
    ``folder``: ``package`` or ``example``."""

    name: str
    folder: str
    resource: dict[str, Any]


@dataclass(slots=True)
class Archive:
    """What a package file holds that the installer reads."""

    manifest: dict[str, Any]
    index: dict[str, Any] | None
    files: list[PackageFile] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    """JSON files in the resource folders that are not FHIR resources (no ``resourceType``)."""


def _place(member: tarfile.TarInfo) -> tuple[str, str] | None:
    """(folder, file name) of a member the installer reads, None for one it passes over;
    PackageError for a member no package may have."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or "\\" in member.name:
        raise PackageError(
            f"The archive member {member.name!r} points outside the package; this file is not "
            "a FHIR package (refusing it as a whole). Get the package from its publisher."
        )
    if not (member.isfile() or member.isdir()):
        raise PackageError(
            f"The archive member {member.name!r} is a link or a special file, which FHIR "
            "packages never contain; refusing the file. Get the package from its publisher."
        )
    parts = path.parts[1:] if path.parts[:1] == (".",) else path.parts
    if not member.isfile() or not parts or parts[0] != ROOT or not parts[-1].endswith(".json"):
        return None
    if len(parts) == 2:
        return ROOT, parts[1]
    if len(parts) == 3 and parts[1] == EXAMPLE:
        return EXAMPLE, parts[2]
    return None


def _json(tar: tarfile.TarFile, member: tarfile.TarInfo, limits: ArchiveLimits) -> Any:
    if member.size > limits.max_member_bytes:
        raise PackageError(
            f"{member.name} is {member.size:,} bytes, over the {limits.max_member_bytes:,} a "
            "package member may have"
        )
    handle = tar.extractfile(member)
    data = handle.read() if handle is not None else b""
    try:
        return jsonformat.loads(data)
    except (InvalidRequest, ValueError) as exc:
        reason = str(exc).removeprefix("The body is not valid JSON: ")
        raise PackageError(
            f"{member.name} is not valid JSON ({reason}); the package is damaged: download it "
            "again from its publisher"
        ) from None


def read_archive(path: Path, limits: ArchiveLimits | None = None) -> Archive:
    """The manifest, index and resource files of the package at ``path`` (PackageError when it
    is not a readable FHIR package)."""
    limits = limits or ArchiveLimits()
    try:
        with tarfile.open(path, "r:*") as tar:
            return _read(tar, path, limits)
    except (tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise PackageError(
            f"{path} is not a readable package file (.tgz): {exc}. A FHIR package is a gzipped "
            "tar such as hl7.fhir.uv.ips-2.0.0.tgz from https://packages.fhir.org"
        ) from None


def _read(tar: tarfile.TarFile, path: Path, limits: ArchiveLimits) -> Archive:
    manifest: Any = None
    index: Any = None
    files: list[PackageFile] = []
    ignored: list[str] = []
    seen: set[str] = set()
    total = members = 0
    for member in tar:
        members += 1
        total += max(member.size, 0)
        if members > limits.max_members or total > limits.max_total_bytes:
            raise PackageError(
                f"{path} is larger than a package may be here ({limits.max_members:,} members, "
                f"{limits.max_total_bytes:,} bytes)"
            )
        place = _place(member)
        if place is None:
            continue
        folder, name = place
        if member.name in seen:
            raise PackageError(f"{member.name} is in the archive twice; this package is damaged")
        seen.add(member.name)
        value = _json(tar, member, limits)
        if folder == ROOT and name == MANIFEST:
            manifest = value
        elif name == INDEX:
            index = value if folder == ROOT else index
        elif isinstance(value, dict) and isinstance(value.get("resourceType"), str):
            files.append(PackageFile(member.name, folder, value))
        else:
            ignored.append(member.name)
    if not isinstance(manifest, dict):
        raise PackageError(
            f"{path} has no package/package.json: it is not a FHIR NPM package "
            "(https://hl7.org/fhir/packages.html)"
        )
    return Archive(manifest, index if isinstance(index, dict) else None, files, ignored)
