"""The fixed list of typical searches the search benchmark times (https://hl7.org/fhir/R4/search.html).

Each query is a request template; ``{name}`` placeholders are filled per repetition by a
:class:`Draw` seeded by (query, repetition), so both databases see exactly the same requests.
Three kinds, each with the issue's target for p95:

* ``patient``: scoped to one patient (by reference, compartment, identifier or ``_id``), 30 ms;
* ``query``: everything else on the list, 250 ms;
* ``count``: ``_summary=count`` over the whole set, 1 s.
"""

from __future__ import annotations

import random
import urllib.parse
from dataclasses import dataclass
from typing import Any

from bench.search_data import SYNTHEA_ID, Generator

TARGET_MS = {"patient": 30.0, "query": 250.0, "count": 1000.0}
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CHOICES = {
    "lab": ("4548-4", "2339-0", "2093-3", "718-7", "38483-4"),  # HbA1c, glucose, chol., Hb, creat.
    "vital": (
        "8302-2",
        "29463-7",
        "55284-4",
        "39156-5",
        "72514-3",
    ),  # height, weight, BP, BMI, pain
    "condition": ("44054006", "38341003", "15777000", "55822004", "162864005"),  # diabetes, HTN...
    "word": ("diabetes", "hypertension", "sinusitis", "fracture", "pharyngitis"),
    "rx": ("316049", "316672", "310325", "849574", "745679"),  # HCTZ, simvastatin, iron...
    "gender": ("female", "male"),
    "category": ("vital-signs", "laboratory", "survey"),
}


class Draw:
    """The values of one repetition of one query, drawn on first use (``draw["family"]``)."""

    def __init__(self, g: Generator, name: str, rep: int) -> None:
        self.g = g
        self.rng = random.Random(f"{name}:{rep}")
        self.i = self.rng.randrange(g.patients)
        self.pid = g.patient_id(self.i)
        self._values: dict[str, str] = {"pid": self.pid}

    def __getitem__(self, key: str) -> str:
        if key not in self._values:
            self._values.update(self._draw(key))
        return self._values[key]

    def _draw(self, key: str) -> dict[str, str]:
        if key in CHOICES:
            return {key: self.rng.choice(CHOICES[key])}
        if key.startswith("since_"):  # since_2008_2016: January 1st of a year in that range
            low, high = map(int, key.split("_")[1:])
            return {key: f"{self.rng.randint(low, high)}-01-01"}
        if key.startswith("between_"):  # between_80_100: an integer in that range
            low, high = map(int, key.split("_")[1:])
            return {key: str(self.rng.randint(low, high))}
        if key.startswith("lab_"):
            return self._own_lab()
        if key == "family":
            return {key: self.rng.choice(self.g.t.families)}
        if key == "prac":
            return {key: f"prac-{self.rng.randrange(self.g.practitioners):05d}"}
        if key == "identifier":
            patient = self.g.patient_resource(self.i)
            value = next(i["value"] for i in patient["identifier"] if i["system"] == SYNTHEA_ID)
            return {key: value}
        raise KeyError(key)

    def _own_lab(self) -> dict[str, str]:
        """One of the patient's laboratory results, so that a patient-scoped lab search finds
        something: ``lab_code``, ``lab_since`` (up to 3 years before it), ``lab_low`` (90 % of
        its value). A patient without labs gets a common code."""
        labs: list[dict[str, Any]] = [
            r
            for t, _, r in self.g.patient(self.i)
            if t == "Observation" and r["category"][0]["coding"][0]["code"] == "laboratory"
        ]
        if not labs:
            return {"lab_code": self["lab"], "lab_since": self["since_2008_2016"], "lab_low": "0"}
        lab = self.rng.choice(labs)
        value = lab.get("valueQuantity", {}).get("value", 0)
        date = lab["effectiveDateTime"][:10]
        return {
            "lab_code": lab["code"]["coding"][0]["code"],
            "lab_since": f"{int(date[:4]) - self.rng.randint(0, 3)}{date[4:]}",
            "lab_low": f"{float(value) * 0.9:.1f}",
        }


@dataclass(frozen=True)
class BenchQuery:
    name: str
    kind: str  # patient | query | count
    request: str  # "Type?name=value&..." with {placeholders}; "Patient/{pid}/Type?..." for a
    # compartment search
    http: bool = False  # also timed through the REST API

    @property
    def target_ms(self) -> float:
        return TARGET_MS[self.kind]

    def render(self, d: Draw) -> tuple[str, str | None, list[tuple[str, str]]]:
        """(resource type, compartment patient id or None, parameters) for one draw."""
        path, _, query = self.request.partition("?")
        params = [(name, value.format_map(d)) for name, value in _pairs(query)]
        parts = path.format_map(d).split("/")
        return parts[-1], parts[1] if len(parts) == 3 else None, params

    def url(self, d: Draw) -> str:
        """The request as the REST API takes it (values percent-encoded)."""
        resource_type, patient, params = self.render(d)
        prefix = f"Patient/{patient}/" if patient else ""
        return f"{prefix}{resource_type}?{urllib.parse.urlencode(params)}"

    def describe(self, d: Draw) -> str:
        resource_type, patient, params = self.render(d)
        prefix = f"Patient/{patient}/" if patient else ""
        return f"{prefix}{resource_type}?" + "&".join(f"{k}={v}" for k, v in params)


def _pairs(query: str) -> list[tuple[str, str]]:
    return [(pair.partition("=")[0], pair.partition("=")[2]) for pair in query.split("&")]


L, S, R = f"{LOINC}|", f"{SNOMED}|", f"{RXNORM}|"
QUERIES: tuple[BenchQuery, ...] = tuple(
    BenchQuery(name, kind, request.replace("L|", L).replace("S|", S).replace("R|", R), http)
    for name, kind, request, http in (
        # --- patient-scoped (p95 <= 30 ms) ----------------------------------------------------
        ("patient-lab-code-date", "patient",
         "Observation?patient={pid}&code=L|{lab_code}&date=ge{lab_since}", True),
        ("patient-labs-sorted", "patient",
         "Observation?patient={pid}&category=laboratory&_sort=-date&_count=20", False),
        ("patient-vitals-or", "patient",
         "Observation?subject=Patient/{pid}&code=L|8302-2,L|29463-7&_sort=-date", False),
        ("patient-lab-value", "patient",
         "Observation?patient={pid}&code=L|{lab_code}&value-quantity=ge{lab_low}", False),
        ("patient-vital-include-encounter", "patient",
         "Observation?patient={pid}&code=L|{vital}&_sort=-date&_count=10"
         "&_include=Observation:encounter", False),
        ("patient-compartment-obs", "patient", "Patient/{pid}/Observation?code=L|{vital}", False),
        ("patient-count", "patient", "Observation?patient={pid}&_summary=count", False),
        ("patient-conditions-active", "patient",
         "Condition?patient={pid}&clinical-status=active", False),
        ("patient-medreq-include-med", "patient",
         "MedicationRequest?patient={pid}&_include=MedicationRequest:medication", False),
        ("patient-encounters-sorted", "patient",
         "Encounter?patient={pid}&date=ge{since_2005_2015}&_sort=-date", False),
        ("patient-revinclude-provenance", "patient",
         "Patient?_id={pid}&_revinclude=Provenance:target", True),
        ("patient-by-identifier", "patient",
         f"Patient?identifier={SYNTHEA_ID}|{{identifier}}", False),
        ("patient-chain-identifier", "patient",
         f"Observation?subject:Patient.identifier={SYNTHEA_ID}|{{identifier}}&code=L|29463-7",
         False),
        # --- population queries (p95 <= 250 ms) -------------------------------------------------
        ("name-gender", "query", "Patient?name={family}&gender={gender}", True),
        ("chain-name-code", "query", "Observation?subject:Patient.name={family}&code=L|4548-4",
         False),
        ("has-condition-gender", "query",
         "Patient?_has:Condition:patient:code=S|{condition}&gender=female", False),
        ("has-obs-birthdate", "query",
         "Patient?_has:Observation:patient:code=L|4548-4&birthdate=lt{since_1940_1970}", False),
        ("code-date-sorted", "query",
         "Observation?code=L|{lab}&date=ge{since_2018_2021}&_sort=-date", True),
        ("code-value-global", "query",
         "Observation?code=L|2339-0&value-quantity=gt{between_80_100}", False),
        ("practitioner-encounters", "query",
         "Encounter?practitioner=Practitioner/{prac}&date=ge{since_2010_2018}&_sort=-date", False),
        ("medreq-code-include-patient", "query",
         "MedicationRequest?code=R|{rx}&status=active&_include=MedicationRequest:patient", False),
        ("condition-total-accurate", "query", "Condition?code=S|{condition}&_total=accurate",
         False),
        ("text-condition", "query", "Condition?_text={word}", False),
        ("birthdate-sort-family", "query",
         "Patient?birthdate=ge{since_1985_2000}&gender=female&_sort=family", False),
        # --- counts over the whole set (p95 <= 1 s) ---------------------------------------------
        ("count-common-code", "count", "Observation?code=L|{vital}&_summary=count", True),
        ("count-category", "count", "Observation?category={category}&_summary=count", False),
    )
)  # fmt: skip
