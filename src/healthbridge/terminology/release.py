"""A terminology release as the operator downloaded it: a directory, the zip itself or one file.

https://hl7.org/fhir/R4/terminologies-systems.html lists the external code systems; each
publisher ships its release as a zip of text files (LOINC CSV, SNOMED CT RF2, RxNorm RRF, CMS
fixed-width ICD-10-CM, the CDC CVX table). This module is the I/O edge of the loaders: it finds
the files a format needs by name (anywhere under the directory or inside the zip, so the
publisher's folder layout may vary between releases), opens them as text streams, and computes the
fingerprint that makes a load resumable (the names, sizes and modification times of the files
read; for a zip, each member's name, size and CRC-32 from the zip's directory).
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO


class ReleaseError(ValueError):
    """The release is not what the format expects (a file is missing or malformed); the message
    names the file expected and where it was looked for."""


@dataclass(frozen=True, slots=True)
class ReleaseFile:
    """One file of a release: ``name`` is its path inside the directory or zip."""

    name: str
    size: int
    stamp: str  # modification time (directory) or CRC-32 (zip member)

    @property
    def basename(self) -> str:
        return self.name.rsplit("/", 1)[-1]


class Release:
    """The files of one release, in a directory tree or a zip file."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise ReleaseError(f"{path} does not exist: give the release zip or its directory")
        self.path = path
        single = path.is_file() and not zipfile.is_zipfile(path)
        self._root = path.parent if single else path
        self._zip = zipfile.ZipFile(path) if path.is_file() and not single else None
        self.files = self._listing(single)

    def _listing(self, single: bool) -> list[ReleaseFile]:
        if single:  # one text file given by itself (cvx.txt, an ICD-10-CM order file)
            stat = self.path.stat()
            return [ReleaseFile(self.path.name, stat.st_size, str(stat.st_mtime_ns))]
        if self._zip is not None:
            return [
                ReleaseFile(info.filename, info.file_size, f"{info.CRC:08x}")
                for info in self._zip.infolist()
                if not info.is_dir()
            ]
        found = []
        for file in sorted(self.path.rglob("*")):
            if file.is_file():
                stat = file.stat()
                name = file.relative_to(self.path).as_posix()
                found.append(ReleaseFile(name, stat.st_size, str(stat.st_mtime_ns)))
        return found

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def find(self, *patterns: str) -> ReleaseFile | None:
        """The first file whose base name matches one of the glob ``patterns`` (case-insensitive,
        tried in order), skipping macOS ``__MACOSX`` resource forks."""
        for pattern in patterns:
            for file in self.files:
                if "__MACOSX" in file.name:
                    continue
                if fnmatch.fnmatch(file.basename.lower(), pattern.lower()):
                    return file
        return None

    def find_all(self, pattern: str) -> list[ReleaseFile]:
        """Every file whose base name matches the glob ``pattern`` (case-insensitive)."""
        return [
            file
            for file in self.files
            if "__MACOSX" not in file.name
            and fnmatch.fnmatch(file.basename.lower(), pattern.lower())
        ]

    def require(self, what: str, *patterns: str) -> ReleaseFile:
        """Like :meth:`find`, but a missing file is a :class:`ReleaseError` naming it."""
        found = self.find(*patterns)
        if found is None:
            wanted = " or ".join(patterns)
            raise ReleaseError(
                f"{self.path} has no {what} file ({wanted}); give the unzipped release directory "
                "or the release zip as the publisher ships it"
            )
        return found

    @contextmanager
    def open_text(self, file: ReleaseFile, encoding: str = "utf-8-sig") -> Iterator[IO[str]]:
        """The file as text; ``newline=""`` so that the csv module sees quoted line breaks."""
        raw: IO[bytes]
        raw = self._zip.open(file.name) if self._zip else (self._root / file.name).open("rb")
        with raw, io.TextIOWrapper(raw, encoding=encoding, newline="") as text:
            yield text

    def fingerprint(self, files: Sequence[ReleaseFile | None], *extra: str) -> str:
        """A digest of the files a load reads (names, sizes, stamps) and ``extra`` facts (the
        parser's format revision, the version): the same release gives the same fingerprint,
        so an interrupted load resumes; a changed file starts the load over."""
        digest = hashlib.sha256()
        for part in extra:
            digest.update(part.encode() + b"\0")
        for file in files:
            if file is not None:
                digest.update(f"{file.name}\0{file.size}\0{file.stamp}\n".encode())
        return digest.hexdigest()
