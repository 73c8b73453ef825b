"""Synthea patients for the US Core search checks (tests/rest/test_search_uscore.py).

The first ``PATIENTS`` of the 100 Synthea patients in ``../shared/data/synthea``, made ready to
store: ``urn:uuid:`` references rewritten to ``Type/id``, Claim and ExplanationOfBenefit left
out, and what this Synthea export lacks added: one Provenance per Encounter (targets: the
encounter and every record of it) and one per Patient, and ``medicationReference`` to a
Medication (``rx-<RxNorm code>``) on every other MedicationRequest. The expectation helpers read
that JSON in plain Python and follow the wording of https://hl7.org/fhir/R4/search.html, never
the server's matcher. The last helpers store the bundles and search through the repository or
the REST API (https://hl7.org/fhir/R4/http.html#search, following ``next`` links).
"""

from __future__ import annotations

import tarfile
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.testclient import TestClient

from healthbridge.fhir import jsonformat
from healthbridge.store.repository import Repository
from tests.store.search_fixtures import all_pages, parse, ref

SYNTHEA = Path(__file__).resolve().parents[2].parent / "shared/data/synthea"
ARCHIVE = SYNTHEA / "synthea-r4-100-patients.tar.gz"
PATIENTS = 20
SKIPPED = frozenset({"Claim", "ExplanationOfBenefit"})
Resource = dict[str, Any]


def _rewrite(node: Any, urls: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: urls.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, urls)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite(v, urls) for v in node]
    return node


def _bundles() -> Iterator[list[Resource]]:
    with tarfile.open(ARCHIVE, "r:gz") as tar:
        members = sorted(
            (m for m in tar if m.isfile() and m.name.endswith(".json")), key=lambda m: m.name
        )
        patients = [m for m in members if "Information" not in m.name][:PATIENTS]
        for member in patients:
            handle = tar.extractfile(member)
            assert handle is not None
            bundle = jsonformat.loads(handle.read())
            urls = {
                e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
                for e in bundle["entry"]
            }
            yield [_rewrite(e["resource"], urls) for e in bundle["entry"]]


def _provenances(records: list[Resource]) -> list[Resource]:
    """One Provenance per Encounter (the encounter and its records), one per Patient."""
    by_encounter: dict[str, list[str]] = {}
    for r in records:
        if r["resourceType"] == "Encounter":
            by_encounter.setdefault(r["id"], []).insert(0, f"Encounter/{r['id']}")
        elif "encounter" in r and isinstance(r["encounter"], dict):
            encounter = r["encounter"]["reference"].removeprefix("Encounter/")
            by_encounter.setdefault(encounter, []).append(f"{r['resourceType']}/{r['id']}")
    out = [_provenance(f"prov-{encounter}", targets) for encounter, targets in by_encounter.items()]
    out += [
        _provenance(f"prov-{r['id']}", [f"Patient/{r['id']}"])
        for r in records
        if r["resourceType"] == "Patient"
    ]
    return out


def _provenance(id: str, targets: list[str]) -> Resource:
    return {
        "resourceType": "Provenance",
        "id": id,
        "target": [{"reference": t} for t in targets],
        "recorded": "2019-06-01T00:00:00Z",
        "agent": [{"who": {"display": "Synthea"}}],
    }


def _medications(records: list[Resource], counter: Iterator[int]) -> list[Resource]:
    """Every other MedicationRequest refers to a Medication instead of carrying the code."""
    medications: list[Resource] = []
    for r in records:
        if r["resourceType"] != "MedicationRequest" or next(counter) % 2:
            continue
        concept = r.pop("medicationCodeableConcept")
        code = concept["coding"][0]["code"]
        r["medicationReference"] = {"reference": f"Medication/rx-{code}"}
        medications.append({"resourceType": "Medication", "id": f"rx-{code}", "code": concept})
    return medications


@cache
def synthea() -> tuple[tuple[Resource, ...], ...]:
    """The resources to load, one tuple per patient bundle (no id twice across bundles)."""
    seen: set[tuple[str, str]] = set()
    counter = iter(range(10**9))
    bundles: list[tuple[Resource, ...]] = []
    for bundle in _bundles():
        records = [r for r in bundle if r["resourceType"] not in SKIPPED]
        records += _medications(records, counter) + _provenances(records)
        unique = []
        for r in records:
            if (r["resourceType"], r["id"]) not in seen:
                seen.add((r["resourceType"], r["id"]))
                unique.append(r)
        bundles.append(tuple(unique))
    return tuple(bundles)


def everything() -> list[Resource]:
    return [r for bundle in synthea() for r in bundle]


def of_type(resource_type: str) -> list[Resource]:
    return [r for r in everything() if r["resourceType"] == resource_type]


def patients() -> list[Resource]:
    return of_type("Patient")


def belongs_to(r: Resource, patient_id: str) -> bool:
    subject = r.get("subject") or r.get("patient") or {}
    return bool(subject.get("reference") == f"Patient/{patient_id}")


def records(resource_type: str, patient_id: str) -> list[Resource]:
    return [r for r in of_type(resource_type) if belongs_to(r, patient_id)]


def codings(concepts: Any) -> set[tuple[str | None, str | None]]:
    """(system, code) of a CodeableConcept or a list of them."""
    items = concepts if isinstance(concepts, list) else [concepts] if concepts else []
    return {(c.get("system"), c.get("code")) for cc in items for c in cc.get("coding", ())}


def span(text: str) -> tuple[datetime, datetime]:
    """[start, end) of a Synthea dateTime: all are to the second, with an offset."""
    start = datetime.fromisoformat(text)
    return start, start + timedelta(seconds=1)


def period(r: Resource, *names: str) -> tuple[datetime, datetime] | None:
    for name in names:
        value = r.get(name)
        if isinstance(value, str):
            return span(value)
        if isinstance(value, dict):
            start = span(value["start"])[0]
            return start, span(value["end"])[1] if "end" in value else datetime.max.replace(
                tzinfo=start.tzinfo
            )
    return None


def day(text: str) -> tuple[datetime, datetime]:
    start = datetime.fromisoformat(f"{text}T00:00:00+00:00")
    return start, start + timedelta(days=1)


def compare(prefix: str, target: tuple[datetime, datetime] | None, query: str) -> bool:
    """search.html#prefix, in the spec's words, for a target range and a query day or instant:
    eq "the search range fully contains the target range"; gt/lt "the range above/below the
    search value intersects the target"; ge/le the same "or" eq."""
    if target is None:
        return False
    low, high = day(query) if len(query) == 10 else span(query)
    contained = low <= target[0] and target[1] <= high
    return {
        "eq": contained,
        "gt": target[1] > high,
        "lt": target[0] < low,
        "ge": target[1] > high or contained,
        "le": target[0] < low or contained,
    }[prefix]


def ids_of(resources: Iterable[Resource]) -> set[str]:
    return {r["id"] for r in resources}


async def search(
    repo: Repository, resource_type: str, querystring: str
) -> tuple[set[str], set[str]]:
    """(match ids, included Type/id) over every page: a match appears once in the whole
    search, an included resource at most once per page and never as a match of that page."""
    pages = await all_pages(repo, parse(resource_type, f"{querystring}&_count=200"))
    matches = [s.id for p in pages for s in p.matches]
    assert len(matches) == len(set(matches)), querystring
    for page in pages:
        included = [ref(s) for s in page.included]
        assert len(included) == len(set(included)), querystring
        assert not set(included) & {ref(s) for s in page.matches}, querystring
    return set(matches), {ref(s) for p in pages for s in p.included}


class Mismatches:
    """Collects every failing query so that one run reports them all."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.checked = 0
        self.nonempty = 0

    def check(self, querystring: str, got: set[str], wanted: set[str]) -> None:
        self.checked += 1
        self.nonempty += bool(wanted)
        if got != wanted:
            self.items.append(
                f"{querystring}: {len(got)} found, {len(wanted)} wanted; "
                f"extra {sorted(got - wanted)[:3]}, missing {sorted(wanted - got)[:3]}"
            )

    def done(self, at_least: int) -> None:
        """All checks passed; at least ``at_least`` of them expected something."""
        assert self.items == [], "\n".join(self.items[:40])
        assert self.nonempty >= at_least, (self.nonempty, self.checked)


def middle_day(resources: list[Resource], *names: str) -> str | None:
    days = sorted({r[n][:10] for r in resources for n in names if isinstance(r.get(n), str)})
    return days[len(days) // 2] if days else None


def fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


# -- storing and searching -------------------------------------------------------------


async def load(repository: Repository, bundles: tuple[tuple[Resource, ...], ...]) -> None:
    """Store every bundle, one unit of work each."""
    for bundle in bundles:
        async with repository.transaction() as tx:
            for r in bundle:
                await tx.create(r["resourceType"], r, id=r["id"])


@dataclass(frozen=True)
class Loaded:
    """The loaded repository and its database URL (None for the in-memory one)."""

    repo: Repository
    url: str | None


class Shared:
    """The module's in-memory repository, lent to the app: the app's shutdown leaves it open."""

    def __init__(self, repo: Repository) -> None:
        self._repo = repo

    def __getattr__(self, name: str) -> object:
        return getattr(self._repo, name)

    async def close(self) -> None:
        return None


def rest_search(client: TestClient, url: str) -> tuple[set[str], set[str]]:
    """(match ids, included Type/id) of a GET search, following ``next`` links. A match appears
    once in the whole search; an included resource at most once per page (each page includes
    what its own matches need, search.html#include)."""
    matches: list[str] = []
    included: set[str] = set()
    while url:
        response = client.get(url)
        assert response.status_code == 200, (url, response.text[:500])
        bundle = response.json()
        assert bundle["type"] == "searchset"
        page_included: list[str] = []
        for entry in bundle.get("entry", ()):
            r, mode = entry["resource"], entry["search"]["mode"]
            key = f"{r['resourceType']}/{r['id']}"
            (matches if mode == "match" else page_included).append(key)
        assert len(page_included) == len(set(page_included)), url
        included.update(page_included)
        nexts = [link["url"] for link in bundle.get("link", ()) if link["relation"] == "next"]
        url = "?".join(urlsplit(nexts[0])[2:4]) if nexts else ""
    assert len(matches) == len(set(matches)), matches
    return {m.split("/", 1)[1] for m in matches}, included
