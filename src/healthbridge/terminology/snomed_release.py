"""A SNOMED CT RF2 release joined concept by concept: https://hl7.org/fhir/R4/snomedct.html.

Reads the ``Snapshot`` files of an edition (International, US, ...) as SNOMED International or
the national release centre ships them (``SnomedCT_*RF2_PRODUCTION_*.zip`` or its directory):
``sct2_Concept_Snapshot_*``, every ``sct2_Description_Snapshot-*`` and
``sct2_TextDefinition_Snapshot-*``, ``sct2_Relationship_Snapshot_*`` and (optional)
``der2_cRefset_LanguageSnapshot-*`` and ``der2_ssRefset_ModuleDependencySnapshot_*``.

Descriptions, acceptabilities and is-a relationships are copied into a scratch SQLite file
(:mod:`healthbridge.terminology.workspace`) and read back sorted by concept id, then merged with
the sorted concepts: a sort-merge join whose memory use does not grow with the release (peak:
SQLite's 64 MB page cache plus one concept's rows). The file takes about 1 GB for the
International Edition and is deleted afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from healthbridge.fhir.terminology.concepts import Concept
from healthbridge.terminology import snomed
from healthbridge.terminology.release import Release, ReleaseError, ReleaseFile
from healthbridge.terminology.snomed import Description
from healthbridge.terminology.source import Source
from healthbridge.terminology.workspace import Workspace, grouped, merged

REVISION = "snomed-1"
CONCEPT_FILE = re.compile(r"sct2_Concept_Snapshot_([A-Za-z0-9]+)_(\d{8})\.txt$", re.IGNORECASE)
NAMESPACES = {"INT": "900000000000207008", "US1000124": "731000124108"}


def _copy(release: Release, file: ReleaseFile, kind: str) -> Iterator[list[str]]:
    with release.open_text(file) as text:
        yield from snomed.rows(text, kind, f"{release.path}: {file.name}")


def _fill(release: Release, workspace: Workspace, files: dict[str, list[ReleaseFile]]) -> None:
    workspace.table("concept", ("id INTEGER PRIMARY KEY", "row TEXT"))
    workspace.table(
        "descr", ("concept INTEGER", "id INTEGER", "type", "lang", "term"), ("concept",)
    )
    workspace.table("accept", ("description INTEGER", "refset"), ("description",))
    workspace.table("isa", ("concept INTEGER", "parent TEXT"), ("concept",))
    for file in files["concept"]:
        workspace.fill(
            "concept", 2, ((int(r[0]), "\t".join(r[:5])) for r in _copy(release, file, "concept"))
        )
    for file in files["description"]:
        rows = snomed.active(_copy(release, file, "description"))
        workspace.fill("descr", 5, ((int(r[4]), int(r[0]), r[6], r[5], r[7]) for r in rows))
    for file in files["language"]:
        rows = snomed.active(_copy(release, file, "language"))
        preferred = (r for r in rows if r[6] == snomed.PREFERRED)
        workspace.fill("accept", 2, ((int(r[5]), r[4]) for r in preferred))
    for file in files["relationship"]:
        rows = snomed.active(_copy(release, file, "relationship"))
        workspace.fill("isa", 2, ((int(r[4]), r[5]) for r in rows if r[7] == snomed.IS_A))


DESCRIPTIONS = f"""
SELECT d.concept, d.id, d.type, d.lang, d.term,
       coalesce((SELECT min(CASE a.refset WHEN '{snomed.US_ENGLISH}' THEN 0 ELSE 1 END)
                 FROM accept a WHERE a.description = d.id), 2)
FROM descr d ORDER BY d.concept, d.id
"""


def _concepts(workspace: Workspace) -> Iterator[Concept]:
    ids = (row[0] for row in workspace.rows("SELECT id FROM concept ORDER BY id"))
    rows = workspace.rows("SELECT id, row FROM concept ORDER BY id")
    descriptions = grouped(workspace.rows(DESCRIPTIONS))
    parents = grouped(workspace.rows("SELECT concept, parent FROM isa ORDER BY concept, parent"))
    for (_, (described, isa)), (_, row) in zip(
        merged(ids, descriptions, parents), rows, strict=True
    ):
        found = [Description(str(r[1]), r[2], r[3], r[4], r[5]) for r in described]
        unique = sorted({parent for _, parent in isa})
        yield snomed.concept(row.split("\t"), found, unique)


def _files(release: Release) -> dict[str, list[ReleaseFile]]:
    concept = release.require("SNOMED CT concept", "sct2_Concept_Snapshot*.txt")
    descriptions = release.find_all("sct2_Description_Snapshot*.txt")
    descriptions += release.find_all("sct2_TextDefinition_Snapshot*.txt")
    if not descriptions:
        raise ReleaseError(f"{release.path} has no sct2_Description_Snapshot-*.txt file")
    return {
        "concept": [concept],
        "description": descriptions,
        "relationship": [
            release.require("SNOMED CT relationship", "sct2_Relationship_Snapshot_*.txt")
        ],
        "language": release.find_all("der2_cRefset_LanguageSnapshot*.txt"),
        "module dependency": release.find_all("der2_ssRefset_ModuleDependencySnapshot*.txt"),
    }


def _version(release: Release, files: dict[str, list[ReleaseFile]]) -> tuple[str, str]:
    """(edition module, effective time) from the concept file's name and the module
    dependency reference set."""
    named = CONCEPT_FILE.search(files["concept"][0].basename)
    if named is None:
        raise ReleaseError(
            f"{files['concept'][0].name}: expected a name like "
            "sct2_Concept_Snapshot_INT_20240101.txt; pass --version "
            "http://snomed.info/sct/<module>/version/<YYYYMMDD>"
        )
    module = NAMESPACES.get(named.group(1).upper())
    if module is None:
        for file in files["module dependency"]:
            with release.open_text(file) as text:
                module = snomed.edition_module(
                    snomed.active(snomed.rows(text, "module dependency", file.name))
                )
    if module is None:
        raise ReleaseError(
            f"cannot tell which edition {release.path} is: pass --version "
            "http://snomed.info/sct/<edition module>/version/<YYYYMMDD>"
        )
    return module, named.group(2)


def source(release: Release, workspace: Workspace, version: str | None) -> Source:
    """The SNOMED CT edition at ``release`` (joined in ``workspace``)."""
    files = _files(release)
    if version:
        match = re.fullmatch(r"http://snomed\.info/sct/(\d+)/version/(\d{8})", version)
        if match is None:
            raise ReleaseError(
                f"--version {version}: expected http://snomed.info/sct/<module>/version/<YYYYMMDD>"
            )
        module, effective = match.group(1), match.group(2)
    else:
        module, effective = _version(release, files)
    _fill(release, workspace, files)
    total = workspace.scalar("SELECT count(*) FROM concept")
    every = [file for group in files.values() for file in group]
    fingerprint = release.fingerprint(every, REVISION, module, effective)
    return Source(snomed.info(module, effective), fingerprint, total, lambda: _concepts(workspace))
