"""ICD-10-CM from the CMS/NCHS order file: https://www.cms.gov/medicare/coding-billing/icd-10-codes
and https://terminology.hl7.org/ICD10CM.html (system ``http://hl7.org/fhir/sid/icd-10-cm``).

``icd10cm_order_YYYY.txt`` (also ``icd10cm-order-YYYY.txt``, ``icd10cm-order-April-YYYY.txt``)
is fixed-width ASCII, one code per line in tabular order: columns 1-5 order number, 7-13 the code
without its dot, 15 ``1`` when the code is valid for HIPAA-covered transactions (billable) and
``0`` for a header, 17-76 the short description, 78 onwards the long description.

Codes are given dotted (``A0101`` is ``A01.01``) as FHIR expects. A code's parent is the
nearest preceding code that is a prefix of it (``S00.01XA`` is-a ``S00.01``; the ``X``
placeholder codes are not in the file): the tabular order lists every parent before its
children, so a stack of open ancestors suffices (constant memory). Headers carry the property
``notSelectable = true``; the long description is the display and the short one a synonym.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from healthbridge.fhir.terminology.concepts import (
    CodeSystemInfo,
    Concept,
    ConceptProperty,
    PropertyDefinition,
)
from healthbridge.terminology.release import Release, ReleaseError
from healthbridge.terminology.source import Source, synonym

URL = "http://hl7.org/fhir/sid/icd-10-cm"
REVISION = "icd10cm-1"
NOT_SELECTABLE = "http://hl7.org/fhir/concept-properties#notSelectable"
FILE_NAME = re.compile(r"icd10cm[-_]order[-_](?:([a-z]+)[-_])?(\d{4})", re.IGNORECASE)
LINE = re.compile(r"^(\d{5}) (.{7}) ([01]) (.{1,60})(?: (.*))?$")


def dotted(code: str) -> str:
    """``A0101`` -> ``A01.01``; three-character categories have no dot."""
    return code if len(code) <= 3 else f"{code[:3]}.{code[3:]}"


def concepts(lines: Iterable[str], where: str = "order file") -> Iterator[Concept]:
    """The concepts of an order file, with parents, in file order."""
    open_ancestors: list[str] = []  # undotted codes, each a prefix of the next
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        match = LINE.match(line)
        if match is None:
            raise ReleaseError(
                f"{where} line {number} is not an ICD-10-CM order file line (expected: 5-digit "
                "order number, code, 0/1 header flag, short and long description in fixed columns)"
            )
        code = match.group(2).strip()
        while open_ancestors and not code.startswith(open_ancestors[-1]):
            open_ancestors.pop()
        parents = (dotted(open_ancestors[-1]),) if open_ancestors else ()
        open_ancestors.append(code)
        short, long = match.group(4).strip(), (match.group(5) or "").strip()
        header = match.group(3) == "0"
        yield Concept(
            code=dotted(code),
            display=long or short,
            designations=(synonym(short, "en-US"),) if short and short != long else (),
            properties=(ConceptProperty("notSelectable", header),),
            parents=parents,
        )


def info(version: str) -> CodeSystemInfo:
    return CodeSystemInfo(
        url=URL,
        version=version,
        name="ICD10CM",
        title="International Classification of Diseases, 10th Revision, Clinical Modification",
        case_sensitive=False,
        properties=(
            PropertyDefinition(
                "notSelectable",
                "boolean",
                NOT_SELECTABLE,
                "A header: not valid for HIPAA-covered transactions (not billable)",
            ),
        ),
        publisher="National Center for Health Statistics (NCHS)",
        source="icd10cm",
    )


def source(release: Release, version: str | None) -> Source:
    """The ICD-10-CM order file in ``release``."""
    file = release.require("ICD-10-CM order", "icd10cm[-_]order*.txt")
    named = FILE_NAME.search(file.basename)
    if not version and named:
        month, year = named.group(1), named.group(2)
        version = f"{year}-{month.lower()}" if month else year
    if not version:
        raise ReleaseError(f"cannot read the year from {file.name}: pass --version YYYY")
    with release.open_text(file, "latin-1") as text:
        total = sum(1 for line in text if line.strip())

    def stream() -> Iterator[Concept]:
        with release.open_text(file, "latin-1") as text:
            yield from concepts(text, f"{release.path}: {file.name}")

    fingerprint = release.fingerprint([file], REVISION, version)
    return Source(info(version), fingerprint, total, stream)
