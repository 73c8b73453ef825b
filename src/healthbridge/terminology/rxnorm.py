"""RxNorm from its RRF release: https://www.nlm.nih.gov/research/umls/rxnorm/docs/techdoc.html
and https://terminology.hl7.org/RxNorm.html (system ``http://www.nlm.nih.gov/research/umls/rxnorm``).

Files read from ``RxNorm_full_MMDDYYYY.zip`` (or its directory), pipe-delimited, UTF-8, each line
ending with a ``|``:

* ``rrf/RXNCONSO.RRF`` (required): ``RXCUI|LAT|TS|LUI|STT|SUI|ISPREF|RXAUI|SAUI|SCUI|SDUI|SAB|
  TTY|CODE|STR|SRL|SUPPRESS|CVF|``. Only ``SAB=RXNORM`` atoms are read. A concept's display is
  the atom of the most specific term type (``SCD``, ``SBD``, ``GPCK``... before ``PSN``, ``SY``,
  ``TMSY``), the other atoms are synonyms, every term type is a ``TTY`` property; a concept
  whose atoms are all suppressed (``SUPPRESS`` other than ``N``) is inactive.
* ``rrf/RXNREL.RRF`` (optional): ``RXCUI1|RXAUI1|STYPE1|REL|RXCUI2|RXAUI2|STYPE2|RELA|RUI|SRUI|
  SAB|SL|DIR|RG|SUPPRESS|CVF|``. ``RELA`` is what the second concept is to the first, so a row
  ``A|...|tradename_of|B`` gives B the property ``tradename_of = A``; the relationships in
  :data:`RELATIONS` become Coding properties.

The version is ``--version`` or the release date in the file name (``MMDDYYYY``).
Peak memory: one concept's atoms (atoms and relations are grouped in a workspace file).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

from healthbridge.fhir.terminology.concepts import (
    CodeSystemInfo,
    Concept,
    ConceptProperty,
    PropertyDefinition,
)
from healthbridge.terminology.release import Release, ReleaseError
from healthbridge.terminology.source import Source, synonym
from healthbridge.terminology.workspace import Workspace, grouped, merged

URL = "http://www.nlm.nih.gov/research/umls/rxnorm"
REVISION = "rxnorm-1"
TERM_TYPES = (
    "SCD", "SBD", "GPCK", "BPCK", "SCDG", "SBDG", "SCDF", "SBDF", "SCDFP", "SBDFP", "SCDGP",
    "SCDC", "SBDC", "MIN", "PIN", "IN", "BN", "DF", "DFG", "ET", "PSN", "SY", "TMSY",
)  # fmt: skip
"""Term types, the most fitting display first."""
RELATIONS = (
    "isa", "inverse_isa", "tradename_of", "has_tradename", "has_ingredient", "ingredient_of",
    "has_dose_form", "consists_of", "constitutes", "has_precise_ingredient", "form_of",
)  # fmt: skip
CONSO_WIDTH = 18
REL_WIDTH = 16
RELEASE_DATE = re.compile(r"RxNorm_(?:full|weekly|prescribe)_(\d{8})", re.IGNORECASE)


def atoms(lines: Iterable[str], where: str) -> Iterator[tuple[int, int, str, str, str, str]]:
    """``(rxcui, rank of its term type, rxaui, tty, string, suppress)`` of RXNORM atoms."""
    ranks = {tty: rank for rank, tty in enumerate(TERM_TYPES)}
    for number, line in enumerate(lines, 1):
        fields = line.rstrip("\r\n").split("|")
        if len(fields) < CONSO_WIDTH or not fields[0].isdigit():
            raise ReleaseError(
                f"{where} line {number} is not an RXNCONSO.RRF row "
                f"(expected {CONSO_WIDTH} fields separated by |, starting with the RXCUI)"
            )
        if fields[11] == "RXNORM":
            tty = fields[12]
            yield int(fields[0]), ranks.get(tty, len(ranks)), fields[7], tty, fields[14], fields[16]


def relations(lines: Iterable[str], where: str) -> Iterator[tuple[int, str, str]]:
    """``(rxcui2, rela, rxcui1)`` of RXNORM concept relationships named in :data:`RELATIONS`."""
    for number, line in enumerate(lines, 1):
        fields = line.rstrip("\r\n").split("|")
        if len(fields) < REL_WIDTH:
            raise ReleaseError(f"{where} line {number} is not an RXNREL.RRF row")
        if fields[10] == "RXNORM" and fields[2] == "CUI" and fields[7] in RELATIONS:
            yield int(fields[4]), fields[7], fields[0]


def concept(
    rxcui: str, atom_rows: Sequence[Sequence[str]], relation_rows: Sequence[Sequence[str]]
) -> Concept:
    """A concept from its atoms ``(tty, string, suppress)`` sorted best display first and its
    relations ``(rela, target rxcui)``."""
    current = [atom for atom in atom_rows if atom[2] == "N"]
    shown = (current or list(atom_rows))[0]
    names: list[str] = []
    for _, text, _ in current or atom_rows:
        if text != shown[1] and text not in names:
            names.append(text)
    term_types = dict.fromkeys(atom[0] for atom in atom_rows)
    properties = [ConceptProperty("TTY", tty) for tty in term_types]
    properties += [
        ConceptProperty(rela, (URL, target))
        for rela, target in sorted(set(map(tuple, relation_rows)))
    ]
    return Concept(
        code=rxcui,
        display=shown[1],
        designations=tuple(synonym(name) for name in names),
        properties=tuple(properties),
        inactive=not current,
    )


def info(version: str) -> CodeSystemInfo:
    definitions = [PropertyDefinition("TTY", "code", description="RxNorm term type")]
    definitions += [PropertyDefinition(rela, "Coding") for rela in RELATIONS]
    return CodeSystemInfo(
        url=URL,
        version=version,
        name="RxNorm",
        title="RxNorm",
        case_sensitive=False,
        hierarchy_meaning=None,
        properties=tuple(definitions),
        publisher="National Library of Medicine",
        source="rxnorm",
    )


def release_version(release: Release) -> str | None:
    for name in (release.path.name, *(file.name for file in release.files)):
        found = RELEASE_DATE.search(name)
        if found:
            return found.group(1)
    return None


def _concepts(workspace: Workspace) -> Iterator[Concept]:
    cuis = (row[0] for row in workspace.rows("SELECT DISTINCT cui FROM atom ORDER BY cui"))
    atom_rows = workspace.rows("SELECT cui, tty, str, suppress FROM atom ORDER BY cui, rank, aui")
    relation_rows = workspace.rows("SELECT cui, rela, target FROM rel ORDER BY cui, rela, target")
    for cui, (found, related) in merged(cuis, grouped(atom_rows), grouped(relation_rows)):
        yield concept(str(cui), [r[1:] for r in found], [r[1:] for r in related])


def source(release: Release, workspace: Workspace, version: str | None) -> Source:
    """The RxNorm release at ``release`` (atoms grouped in ``workspace``)."""
    conso = release.require("RxNorm concept names", "RXNCONSO.RRF")
    rel = release.find("RXNREL.RRF")
    version = version or release_version(release)
    if not version:
        raise ReleaseError(
            f"cannot read the RxNorm release date from {release.path.name}: pass --version "
            "MMDDYYYY (the date in RxNorm_full_MMDDYYYY.zip)"
        )
    workspace.table("atom", ("cui INTEGER", "rank", "aui", "tty", "str", "suppress"), ("cui",))
    workspace.table("rel", ("cui INTEGER", "rela", "target"), ("cui",))
    with release.open_text(conso) as text:
        workspace.fill("atom", 6, atoms(text, f"{release.path}: {conso.name}"))
    if rel is not None:
        with release.open_text(rel) as text:
            workspace.fill("rel", 3, relations(text, f"{release.path}: {rel.name}"))
    total = workspace.scalar("SELECT count(DISTINCT cui) FROM atom")
    fingerprint = release.fingerprint([conso, rel], REVISION, version)
    return Source(info(version), fingerprint, total, lambda: _concepts(workspace))
