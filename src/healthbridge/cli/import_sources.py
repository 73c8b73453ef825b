"""What ``healthbridge import`` reads: files found under the given paths, cut into units of work.

Formats: FHIR JSON (https://hl7.org/fhir/R4/json.html) holding one resource or a Bundle
(https://hl7.org/fhir/R4/bundle.html), and NDJSON as written by FHIR Bulk Data export
(https://hl7.org/fhir/uv/bulkdata/export.html#bulk-data-output-file-format): one resource per line.
Either may be gzip-compressed (``.json.gz``, ``.ndjson.gz``).

A ``transaction`` or ``batch`` Bundle becomes one :class:`BundleUnit` (the bundle processor runs
it); every other resource becomes an :class:`Item` of a :class:`Resources` unit, at most
``batch_size`` to a unit, each written on its own. Lines and entries that cannot be read become
:class:`Broken` records in the unit that holds their neighbours, so they are reported in order.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

from healthbridge.fhir import jsonformat
from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import FhirError, InvalidRequest
from healthbridge.fhir.types import Resource

SUFFIXES = (".ndjson.gz", ".json.gz", ".ndjson", ".json")
LOADED_AS_RESOURCES = frozenset({"collection", "searchset", "document"})
"""Bundle types whose entries are loaded as resources (their requests, if any, are ignored)."""
_RESOURCE_TYPE = re.compile(rb'"resourceType"\s*:\s*"([A-Za-z]+)"')
UNREADABLE = (OSError, EOFError, zlib.error)
"""A missing or unreadable file, or a damaged gzip stream."""
SCAN_CHUNK = 1 << 20
SCAN_OVERLAP = 256


@dataclass(frozen=True, slots=True)
class Where:
    """A place in the input: a file, a line of an NDJSON file, or an entry of a Bundle."""

    file: Path
    line: int | None = None
    entry: int | None = None

    def __str__(self) -> str:
        if self.line is not None:
            return f"{self.file}:{self.line}"
        if self.entry is not None:
            return f"{self.file}: Bundle.entry[{self.entry}]"
        return str(self.file)


@dataclass(frozen=True, slots=True)
class Item:
    where: Where
    resource: Resource


@dataclass(frozen=True, slots=True)
class Broken:
    where: Where
    diagnostics: str


@dataclass(slots=True)
class Resources:
    """Resources written one by one through the FHIR service."""

    source: Path
    items: list[Item] = field(default_factory=list)
    broken: list[Broken] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items) + len(self.broken)


@dataclass(frozen=True, slots=True)
class BundleUnit:
    """A transaction or batch Bundle, processed as the spec says (http.html#transaction)."""

    source: Path
    kind: Literal["transaction", "batch"]
    bundle: Resource


Unit = Resources | BundleUnit


# -- discovery --------------------------------------------------------------------------------
def is_data_file(path: Path) -> bool:
    return path.name.lower().endswith(SUFFIXES)


def discover(paths: Iterable[Path]) -> list[Path]:
    """The files to load: each given file as is, and the data files under each given directory
    (recursively, sorted, hidden ones skipped); a file found twice is loaded once."""
    found: dict[Path, None] = {}
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                hidden = any(part.startswith(".") for part in child.relative_to(path).parts)
                if child.is_file() and is_data_file(child) and not hidden:
                    found.setdefault(child, None)
        else:
            found.setdefault(path, None)
    return list(found)


def _open(path: Path) -> BinaryIO:
    if path.name.lower().endswith(".gz"):
        return cast(BinaryIO, gzip.open(path, "rb"))
    return path.open("rb")


def resource_types(path: Path) -> Iterator[str]:
    """The ``resourceType``s named in the file, in order, found by a scan of its bytes (no
    parse, one chunk in memory at a time), without the Bundles that hold them; nothing when
    the file cannot be read."""
    tail = b""
    try:
        with _open(path) as file:
            while chunk := file.read(SCAN_CHUNK):
                data = tail + chunk
                for found in _RESOURCE_TYPE.findall(data):
                    if found != b"Bundle":
                        yield found.decode()
                tail = data[-SCAN_OVERLAP:]  # a match cut by the chunk's end is found again
    except UNREADABLE:
        return


def holds_shared_only(path: Path, definitions: Definitions) -> bool:
    """True when every resource in the file is outside the Patient compartment
    (https://hl7.org/fhir/R4/compartmentdefinition-patient.html): Organization, Practitioner,
    Location, Medication... Such files load first, so that patient data can refer to them. The
    scan stops at the first patient resource (the first line of a patient NDJSON file)."""
    seen = False
    for type_ in resource_types(path):
        if type_ == "Patient" or definitions.compartment_params("Patient", type_):
            return False
        seen = True
    return seen


# -- reading ----------------------------------------------------------------------------------
def read_units(path: Path, batch_size: int) -> Iterator[Unit]:
    """The units of work of one file, read lazily (NDJSON line by line)."""
    try:
        if ".ndjson" in path.name.lower():
            yield from _ndjson(path, batch_size)
        else:
            yield from _document(path, batch_size)
    except UNREADABLE as exc:
        yield Resources(path, broken=[Broken(Where(path), f"Cannot read the file: {exc}")])


def _ndjson(path: Path, batch_size: int) -> Iterator[Resources]:
    unit = Resources(path)
    with _open(path) as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            where = Where(path, line=number)
            try:
                unit.items.append(Item(where, _resource(jsonformat.loads(line))))
            except FhirError as exc:
                unit.broken.append(Broken(where, str(exc)))
            if len(unit) >= batch_size:
                yield unit
                unit = Resources(path)
    if len(unit):
        yield unit


def _resource(value: Any) -> Resource:
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise InvalidRequest("Not a FHIR resource: a JSON object with a resourceType is expected")
    return value


def _document(path: Path, batch_size: int) -> Iterator[Unit]:
    with _open(path) as file:
        data = file.read()
    try:
        document = jsonformat.loads(data)
    except FhirError as exc:
        yield Resources(path, broken=[Broken(Where(path), str(exc))])
        return
    if isinstance(document, dict) and document.get("resourceType") == "Bundle":
        yield from _bundle(path, document, batch_size)
    else:
        item: Item | Broken
        try:
            item = Item(Where(path), _resource(document))
        except FhirError as exc:
            item = Broken(Where(path), str(exc))
        yield from _batches(path, [item], batch_size)


def _bundle(path: Path, bundle: Resource, batch_size: int) -> Iterator[Unit]:
    kind = bundle.get("type")
    if kind in ("transaction", "batch"):
        yield BundleUnit(path, kind, bundle)
    elif kind in LOADED_AS_RESOURCES:
        yield from _batches(path, _entries(path, bundle), batch_size)
    else:
        diagnostics = f"A Bundle of type {kind!r} cannot be loaded; expected one of " + ", ".join(
            ["transaction", "batch", *sorted(LOADED_AS_RESOURCES)]
        )
        yield Resources(path, broken=[Broken(Where(path), diagnostics)])


def _entries(path: Path, bundle: Resource) -> Iterator[Item | Broken]:
    entries = bundle.get("entry", [])
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        where = Where(path, entry=index)
        if not isinstance(entry, dict):
            yield Broken(where, "A Bundle entry must be a JSON object")
        elif (entry.get("search") or {}).get("mode") == "outcome":
            continue  # a searchset's OperationOutcome about the search, not data
        elif "resource" not in entry:
            yield Broken(where, "The entry has no resource")
        else:
            try:
                yield Item(where, _resource(entry["resource"]))
            except FhirError as exc:
                yield Broken(where, str(exc))


def _batches(path: Path, found: Iterable[Item | Broken], batch_size: int) -> Iterator[Resources]:
    unit = Resources(path)
    for thing in found:
        if isinstance(thing, Item):
            unit.items.append(thing)
        else:
            unit.broken.append(thing)
        if len(unit) >= batch_size:
            yield unit
            unit = Resources(path)
    if len(unit):
        yield unit
