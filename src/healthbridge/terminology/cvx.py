"""CVX vaccine codes from the CDC table: https://www2a.cdc.gov/vaccines/iis/iisstandards/vaccines.asp?rpt=cvx
and https://terminology.hl7.org/CVX.html (system ``http://hl7.org/fhir/sid/cvx``).

``cvx.txt`` (the "pipe delimited" download) has no header; each line is ``CVX code|short
description|full vaccine name|notes|status|internal id|nonvaccine|last updated`` (older copies
lack the internal id: 7 fields). Fields may carry trailing spaces and notes may contain line
breaks inside a field, so lines are joined until a record has its fields. The file is not
always UTF-8 (older ones are Windows-1252): it is decoded as UTF-8 when it can be.

Status ``Inactive``, ``Non-US`` and ``Never Active`` are inactive concepts. The version is
``--version`` or the latest "last updated" date (``YYYY-MM-DD``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from healthbridge.fhir.terminology.concepts import (
    CodeSystemInfo,
    Concept,
    ConceptProperty,
    PropertyDefinition,
)
from healthbridge.terminology.release import Release, ReleaseError, ReleaseFile
from healthbridge.terminology.source import Source, synonym

URL = "http://hl7.org/fhir/sid/cvx"
REVISION = "cvx-1"
INACTIVE = frozenset({"inactive", "non-us", "never active"})


def records(lines: Iterable[str], where: str = "cvx.txt") -> Iterator[list[str]]:
    """The fields of each record (7 or 8; records may span lines inside the notes field)."""
    pending = ""
    for number, raw in enumerate(lines, 1):
        text = raw.rstrip("\r\n")
        pending = f"{pending}\n{text}" if pending else text
        fields = pending.split("|")
        if len(fields) >= 7 and _complete(fields):
            yield [field.strip() for field in fields]
            pending = ""
        elif len(fields) > 8:
            raise ReleaseError(f"{where} line {number}: expected 7 or 8 fields separated by |")
    if pending.strip():
        raise ReleaseError(f"{where} ends inside a record: expected 7 or 8 fields separated by |")


def _complete(fields: list[str]) -> bool:
    """The last field is a date (or empty) and the field before it the nonvaccine flag."""
    last, flag = fields[-1].strip(), fields[-2].strip().lower()
    return (not last or _date(last) is not None) and flag in {"true", "false", "0", "1", ""}


def _date(text: str) -> str | None:
    for pattern in ("%m/%d/%Y", "%Y/%m/%d", "%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(text.split(" ", maxsplit=1)[0], pattern).date().isoformat()
        except ValueError:
            continue
    return None


def concept(fields: list[str]) -> Concept:
    code, short, full, notes, status = fields[:5]
    nonvaccine, updated = fields[-2].lower() in {"true", "1"}, _date(fields[-1])
    properties = [ConceptProperty("status", status), ConceptProperty("nonvaccine", nonvaccine)]
    if notes:
        properties.append(ConceptProperty("notes", notes))
    if updated:
        properties.append(ConceptProperty("lastUpdated", updated))
    return Concept(
        code=code,
        display=short or full,
        definition=full or None,
        designations=(synonym(full),) if full and full != short else (),
        properties=tuple(properties),
        inactive=status.lower() in INACTIVE,
    )


def info(version: str) -> CodeSystemInfo:
    return CodeSystemInfo(
        url=URL,
        version=version,
        name="CVX",
        title="CVX: Vaccines Administered",
        hierarchy_meaning=None,
        properties=(
            PropertyDefinition("status", "string", description="VaccineStatus"),
            PropertyDefinition("nonvaccine", "boolean"),
            PropertyDefinition("notes", "string"),
            PropertyDefinition("lastUpdated", "dateTime"),
        ),
        publisher="Centers for Disease Control and Prevention (CDC)",
        source="cvx",
    )


def _encoding(release: Release, file: ReleaseFile) -> str:
    try:
        with release.open_text(file) as text:
            for _ in text:
                pass
    except UnicodeDecodeError:
        return "cp1252"
    return "utf-8-sig"


def source(release: Release, version: str | None) -> Source:
    """The CVX table in ``release`` (``cvx.txt`` itself, or a directory or zip holding it)."""
    file = release.require("CVX table", "cvx*.txt", "web_cvx*.txt")
    encoding = _encoding(release, file)
    where = f"{release.path}: {file.name}"
    with release.open_text(file, encoding) as text:
        dates = [(fields[0], _date(fields[-1]) or "") for fields in records(text, where)]
    version = version or max((date for _, date in dates), default="") or None
    if not version:
        raise ReleaseError(f"{file.name} has no update dates: pass --version")

    def stream() -> Iterator[Concept]:
        with release.open_text(file, encoding) as text:
            yield from (concept(fields) for fields in records(text, where))

    fingerprint = release.fingerprint([file], REVISION, version)
    return Source(info(version), fingerprint, len(dates), stream)
