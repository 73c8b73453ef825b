"""LOINC from its CSV release: https://loinc.org/downloads/ and https://loinc.org/fhir/.

Files read (anywhere under the release directory or zip):

* ``LoincTable/Loinc.csv`` (required): one quoted-CSV row per term, UTF-8, with a header naming
  ``LOINC_NUM``, ``COMPONENT``, ``PROPERTY``, ``TIME_ASPCT``, ``SYSTEM``, ``SCALE_TYP``,
  ``METHOD_TYP``, ``CLASS``, ``CLASSTYPE``, ``STATUS``, ``SHORTNAME``, ``LONG_COMMON_NAME``,
  ``VersionLastChanged``...; columns are found by name, so their order may change.
* ``AccessoryFiles/ComponentHierarchyBySystem/ComponentHierarchyBySystem.csv`` (or the older
  ``MultiAxialHierarchy.csv``; optional): ``PATH_TO_ROOT, SEQUENCE, IMMEDIATE_PARENT, CODE,
  CODE_TEXT``. It gives terms their parent parts and adds the ``LP`` part codes themselves as
  concepts (as the LOINC FHIR terminology server does), so ``is-a`` filters work.

Concepts follow the LOINC FHIR conventions: display = ``LONG_COMMON_NAME``; the six-axis fully
specified name and ``SHORTNAME`` as designations; the axes, ``CLASS``, ``CLASSTYPE``, ``STATUS``
and ``ORDER_OBS`` as string properties; ``STATUS`` ``DEPRECATED`` is inactive. The version is
``--version`` or else the highest ``VersionLastChanged`` (the release's own version number).
Peak memory: one batch of rows (the hierarchy waits in a workspace file).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence

from healthbridge.fhir.terminology.concepts import (
    CodeSystemInfo,
    Concept,
    ConceptProperty,
    Designation,
    PropertyDefinition,
)
from healthbridge.terminology.release import Release, ReleaseError, ReleaseFile
from healthbridge.terminology.source import FSN, Source, synonym
from healthbridge.terminology.workspace import Workspace, grouped

URL = "http://loinc.org"
REVISION = "loinc-1"
AXES = ("COMPONENT", "PROPERTY", "TIME_ASPCT", "SYSTEM", "SCALE_TYP", "METHOD_TYP")
PROPERTIES = (*AXES, "CLASS", "CLASSTYPE", "STATUS", "ORDER_OBS")
REQUIRED = ("LOINC_NUM", *AXES, "STATUS")
LOINC_NUMBER = re.compile(r"^\d{1,7}-\d$")
LOOKUP_BATCH = 500
COPYRIGHT = (
    "This material contains content from LOINC (http://loinc.org). LOINC is copyright "
    "Regenstrief Institute, Inc. and the Logical Observation Identifiers Names and Codes (LOINC) "
    "Committee and is available at no cost under the license at http://loinc.org/license."
)


def info(version: str) -> CodeSystemInfo:
    definitions = tuple(
        PropertyDefinition(code, "string", f"{URL}/property/{code}") for code in PROPERTIES
    )
    return CodeSystemInfo(
        url=URL,
        version=version,
        name="LOINC",
        title="LOINC Code System",
        case_sensitive=False,
        properties=definitions,
        publisher="Regenstrief Institute, Inc.",
        copyright=COPYRIGHT,
        source="loinc",
    )


def check_header(header: Sequence[str] | None, where: str) -> None:
    missing = [name for name in REQUIRED if name not in (header or ())]
    if missing:
        raise ReleaseError(
            f"{where} is not a LOINC table: it lacks the columns {', '.join(missing)} "
            "(expected LoincTable/Loinc.csv from the LOINC CSV release)"
        )


def term(row: Mapping[str, str | None], parents: Sequence[str] = ()) -> Concept:
    """One ``Loinc.csv`` row as a concept (``parents``: its parts in the hierarchy file)."""

    def value(name: str) -> str:
        return (row.get(name) or "").strip()

    fsn = ":".join(value(axis) for axis in AXES)
    designations = [Designation(fsn, "en-US", FSN)]
    if value("SHORTNAME"):
        designations.append(synonym(value("SHORTNAME"), "en-US"))
    properties = tuple(ConceptProperty(name, value(name)) for name in PROPERTIES if value(name))
    return Concept(
        code=value("LOINC_NUM"),
        display=value("LONG_COMMON_NAME") or value("SHORTNAME") or fsn,
        designations=tuple(designations),
        properties=properties,
        parents=tuple(parents),
        inactive=value("STATUS").upper() == "DEPRECATED",
    )


def part(code: str, text: str, parents: Sequence[str]) -> Concept:
    """A hierarchy node that is not a term (an ``LP`` part) as a concept."""
    return Concept(code=code, display=text, parents=tuple(parents))


def hierarchy_rows(rows: Iterable[Mapping[str, str | None]]) -> Iterator[tuple[str, str, str]]:
    """``(code, parent, text)`` from the hierarchy file (``parent`` "" for the roots)."""
    for row in rows:
        code = (row.get("CODE") or "").strip()
        if code:
            parent = (row.get("IMMEDIATE_PARENT") or "").strip()
            yield code, parent, (row.get("CODE_TEXT") or "").strip()


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version))


def release_version(rows: Iterable[Mapping[str, str | None]]) -> tuple[str | None, int]:
    """The highest ``VersionLastChanged`` and the number of rows."""
    best: str | None = None
    count = 0
    for row in rows:
        count += 1
        changed = (row.get("VersionLastChanged") or "").strip()
        if changed and (best is None or _version_key(changed) > _version_key(best)):
            best = changed
    return best, count


def _terms(release: Release, table: ReleaseFile, workspace: Workspace) -> Iterator[Concept]:
    with release.open_text(table) as text:
        reader = csv.DictReader(text)
        while batch := [row for _, row in zip(range(LOOKUP_BATCH), reader, strict=False)]:
            codes = [(row.get("LOINC_NUM") or "").strip() for row in batch]
            marks = ",".join("?" * len(codes))
            found: dict[str, list[str]] = {}
            for code, parent in workspace.rows(
                f"SELECT code, parent FROM hierarchy WHERE code IN ({marks}) AND parent != '' "
                "ORDER BY code, parent",
                codes,
            ):
                if parent not in found.setdefault(code, []):
                    found[code].append(parent)
            for code, row in zip(codes, batch, strict=True):
                yield term(row, found.get(code, ()))


def _parts(workspace: Workspace) -> Iterator[Concept]:
    rows = workspace.rows("SELECT code, parent, text FROM hierarchy ORDER BY code, parent")
    for code, group in grouped(rows):
        if not LOINC_NUMBER.match(code):
            parents = sorted({parent for _, parent, _ in group if parent})
            yield part(code, group[0][2], parents)


def source(release: Release, workspace: Workspace, version: str | None) -> Source:
    """The LOINC release at ``release`` (hierarchy copied into ``workspace``)."""
    table = release.require("LOINC table", "Loinc.csv")
    hierarchy = release.find("ComponentHierarchyBySystem.csv", "MultiAxialHierarchy.csv")
    with release.open_text(table) as text:
        reader = csv.DictReader(text)
        check_header(reader.fieldnames, f"{release.path}: {table.name}")
        found, count = release_version(reader)
    version = version or found
    if not version:
        raise ReleaseError(f"{table.name} has no VersionLastChanged values: pass --version")
    workspace.table("hierarchy", ("code", "parent", "text"), ("code",))
    parts = 0
    if hierarchy is not None:
        with release.open_text(hierarchy) as text:
            workspace.fill("hierarchy", 3, hierarchy_rows(csv.DictReader(text)))
        distinct = workspace.rows("SELECT DISTINCT code FROM hierarchy")
        parts = sum(1 for (code,) in distinct if not LOINC_NUMBER.match(code))

    def concepts() -> Iterator[Concept]:
        yield from _terms(release, table, workspace)
        yield from _parts(workspace)

    fingerprint = release.fingerprint([table, hierarchy], REVISION, version)
    return Source(info(version), fingerprint, count + parts, concepts)
