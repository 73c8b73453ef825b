"""A deterministic, Synthea-shaped data set of any size for the search benchmark
(https://hl7.org/fhir/R4/search.html; data shapes from https://github.com/synthetichealth/synthea).

The 100 real Synthea R4 patients in ``../shared/data/synthea`` are the templates: every generated
patient copies one template patient's demographics (with a new name, identifiers and birth date)
and samples its Encounters, Observations (LOINC codes, categories, value units and distributions
as Synthea wrote them, values jittered by up to 10 %), Conditions (SNOMED) and MedicationRequests
(RxNorm). All of a patient's dates move by one offset, Observations, Conditions and
MedicationRequests take the date of the encounter they belong to. Shared resources come first:
Organizations and Practitioners copied from Synthea's hospital and practitioner bundles, one
Medication per RxNorm code (a quarter of MedicationRequests refer to it instead of carrying the
code), and each patient gets a Provenance naming its Patient and Encounters as targets. Conditions
carry a generated narrative (for ``_text``).

Ids are stable: ``p000042`` is patient 42, ``p000042-o017`` its 18th Observation (``-e`` Encounter,
``-c`` Condition, ``-m`` MedicationRequest, ``-prov`` Provenance); ``org-0007``, ``prac-00012``,
``med-{rxnorm}``. Patient ``i`` depends only on ``(seed, i)``, so any slice of patients can be
generated on its own, and the same seed always gives the same bytes.
"""

from __future__ import annotations

import random
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from healthbridge.fhir import jsonformat

Json = dict[str, Any]
Item = tuple[str, str, Json]  # (resource type, id, resource)
SYNTHEA = "synthea/synthea-r4-100-patients.tar.gz"
GENERATOR_VERSION = 2
PER_PATIENT = {"Encounter": (6, 14), "Observation": (50, 110), "Condition": (2, 8)}
MEDICATIONS_PER_PATIENT = (2, 8)
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SYNTHEA_ID = "https://github.com/synthetichealth/synthea"
_IDENTIFIERS = {  # Synthea's identifier systems -> a unique value per patient (default: a UUID)
    "http://hl7.org/fhir/sid/us-ssn": "999-{hi:02d}-{lo:04d}",
    "urn:oid:2.16.840.1.113883.4.3.25": "S99{i:06d}",  # driver's licence
    "http://standardhealthrecord.org/fhir/StructureDefinition/passportNumber": "X{i:08d}X",
}


@dataclass
class Template:
    """One Synthea patient's resources."""

    patient: Json
    by_type: dict[str, list[Json]] = field(default_factory=dict)


@dataclass
class Templates:
    patients: list[Template]
    organizations: list[Json]
    practitioners: list[Json]
    everyone: dict[str, list[Json]]  # every template resource of a type, for patients without
    families: list[str]
    givens: dict[str, list[str]]  # by gender
    medications: dict[str, Json]  # RxNorm code -> coding


def load_templates(data: Path) -> Templates:
    """Read the Synthea bundles (decimals kept exact, as the REST layer decodes them)."""
    bundles: list[list[Json]] = []
    with tarfile.open(data / SYNTHEA, "r:gz") as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None and member.name.endswith(".json"):
                bundles.append([e["resource"] for e in jsonformat.loads(handle.read())["entry"]])
    shared = [r for b in bundles if b[0]["resourceType"] != "Patient" for r in b]
    patients = [b for b in bundles if b[0]["resourceType"] == "Patient"]
    templates: list[Template] = []
    everyone: dict[str, list[Json]] = {}
    for bundle in patients:
        template = Template(bundle[0])
        for resource in bundle[1:]:
            template.by_type.setdefault(resource["resourceType"], []).append(resource)
            everyone.setdefault(resource["resourceType"], []).append(resource)
        template.by_type.get("Encounter", []).sort(key=lambda e: e["period"]["start"])
        templates.append(template)
    givens: dict[str, list[str]] = {}
    for t in templates:
        givens.setdefault(t.patient["gender"], []).extend(t.patient["name"][0]["given"])
    medications = {
        coding["code"]: coding
        for m in everyone["MedicationRequest"]
        for coding in m["medicationCodeableConcept"]["coding"][:1]
    }
    return Templates(
        templates,
        [r for r in shared if r["resourceType"] == "Organization"],
        [r for r in shared if r["resourceType"] == "Practitioner"],
        everyone,
        sorted({t.patient["name"][0]["family"] for t in templates}),
        {g: sorted(set(names)) for g, names in givens.items()},
        dict(sorted(medications.items())),
    )


_ENCODED: dict[int, bytes] = {}


def _clone(template: Json) -> Json:
    """A deep copy of a template resource (decoding its cached JSON is ~5x faster than deepcopy)."""
    encoded = _ENCODED.get(id(template))
    if encoded is None:
        encoded = _ENCODED[id(template)] = jsonformat.dumps(template)
    return jsonformat.loads(encoded)  # type: ignore[no-any-return]


def _shift(value: str, days: int) -> str:
    """Move a FHIR date or dateTime by ``days``, keeping its precision."""
    if len(value) == 10:
        return (date.fromisoformat(value) + timedelta(days=days)).isoformat()
    moved = datetime.fromisoformat(value) + timedelta(days=days)
    return moved.isoformat(timespec="milliseconds" if "." in value else "seconds")


def _jitter(value: Decimal, rng: random.Random) -> Decimal:
    return Decimal(str(round(float(value) * rng.uniform(0.9, 1.1), 2)))


def _reference(resource_type: str, id: str) -> Json:
    return {"reference": f"{resource_type}/{id}"}


@dataclass(frozen=True)
class Plan:
    """How many of each a patient gets (drawn first, so sizes are known without generating)."""

    template: int
    encounters: int
    observations: int
    conditions: int
    medications: int
    shift_days: int
    practitioner: int

    @property
    def total(self) -> int:
        return 2 + self.encounters + self.observations + self.conditions + self.medications


class Generator:
    """``shared()`` then ``patient(i)`` for ``i in range(patients)`` is the whole data set."""

    def __init__(self, templates: Templates, seed: int, resources: int) -> None:
        self.t = templates
        self.seed = seed
        self.organizations = max(5, resources // 5000)
        self.practitioners = max(10, resources // 1000)
        shared = self.organizations + self.practitioners + len(templates.medications)
        self.patients = 0
        self.size = shared
        while self.size < resources:
            self.size += self.plan(self.patients).total
            self.patients += 1

    def plan(self, i: int) -> Plan:
        rng = random.Random(f"plan:{self.seed}:{i}")
        return Plan(
            template=rng.randrange(len(self.t.patients)),
            encounters=rng.randint(*PER_PATIENT["Encounter"]),
            observations=rng.randint(*PER_PATIENT["Observation"]),
            conditions=rng.randint(*PER_PATIENT["Condition"]),
            medications=rng.randint(*MEDICATIONS_PER_PATIENT),
            shift_days=rng.randint(-3 * 365, 4 * 365),
            practitioner=rng.randrange(self.practitioners),
        )

    @staticmethod
    def patient_id(i: int) -> str:
        return f"p{i:06d}"

    def organization_of(self, practitioner: int) -> int:
        return practitioner % self.organizations

    # --- shared resources -------------------------------------------------------------------

    def shared(self) -> Iterator[Item]:
        for n in range(self.organizations):
            org = _clone(self.t.organizations[n % len(self.t.organizations)])
            org["id"] = f"org-{n:04d}"
            org["identifier"] = [{"system": SYNTHEA_ID, "value": org["id"]}]
            yield "Organization", org["id"], org
        rng = random.Random(f"shared:{self.seed}")
        for n in range(self.practitioners):
            prac = _clone(self.t.practitioners[n % len(self.t.practitioners)])
            prac["id"] = f"prac-{n:05d}"
            prac["identifier"] = [{"system": "http://hl7.org/fhir/sid/us-npi", "value": str(n)}]
            given = self.t.givens[prac.get("gender", "male")]
            prac["name"] = [
                {
                    "family": rng.choice(self.t.families),
                    "given": [rng.choice(given)],
                    "prefix": ["Dr."],
                }
            ]
            yield "Practitioner", prac["id"], prac
        for code, coding in self.t.medications.items():
            med: Json = {"resourceType": "Medication", "id": f"med-{code}", "status": "active"}
            med["code"] = {"coding": [dict(coding)], "text": coding["display"]}
            yield "Medication", med["id"], med

    # --- one patient ------------------------------------------------------------------------

    def _maker(self, i: int) -> _PatientMaker:
        plan = self.plan(i)
        rng = random.Random(f"patient:{self.seed}:{i}")
        return _PatientMaker(self, plan, rng, self.t.patients[plan.template], self.patient_id(i))

    def patient_resource(self, i: int) -> Json:
        """Patient ``i`` alone (what queries need to name it by identifier or name)."""
        return self._maker(i).patient(i)

    def patient(self, i: int) -> list[Item]:
        make = self._maker(i)
        plan, rng, template, pid = make.plan, make.rng, make.template, make.pid
        items: list[Item] = [("Patient", pid, make.patient(i))]
        encounters = make.encounters()
        items += [("Encounter", e["id"], e) for e in encounters]
        for kind, count, build in (
            ("Observation", plan.observations, make.observation),
            ("Condition", plan.conditions, make.condition),
            ("MedicationRequest", plan.medications, make.medication_request),
        ):
            pool = template.by_type.get(kind) or self.t.everyone[kind]
            for n in range(count):
                resource = build(n, _clone(rng.choice(pool)))
                items.append((kind, resource["id"], resource))
        items.append(("Provenance", f"{pid}-prov", make.provenance(encounters)))
        return items


class _PatientMaker:
    """Builds one patient's resources from its template (all share one rng and date offset)."""

    def __init__(
        self, g: Generator, plan: Plan, rng: random.Random, template: Template, pid: str
    ) -> None:
        self.g, self.plan, self.rng, self.template, self.pid = g, plan, rng, template, pid
        self.practitioner = f"prac-{plan.practitioner:05d}"
        self.organization = f"org-{g.organization_of(plan.practitioner):04d}"
        self.encounter_of: dict[str, tuple[str, str]] = {}  # template urn -> (id, start)
        self.chosen: list[tuple[str, str]] = []

    def patient(self, i: int) -> Json:
        p = _clone(self.template.patient)
        rng, days = self.rng, self.plan.shift_days
        p["id"] = self.pid
        family = rng.choice(self.g.t.families)
        given = rng.choice(self.g.t.givens[p["gender"]])
        p["name"] = [{"use": "official", "family": family, "given": [given]}]
        record = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        for ident in p.get("identifier", []):
            ident["value"] = _IDENTIFIERS.get(ident.get("system", ""), "{record}").format(
                record=record, i=i, hi=i // 10000 % 100, lo=i % 10000
            )
        for key in ("birthDate", "deceasedDateTime"):
            if key in p:
                p[key] = _shift(p[key], days)
        p["telecom"] = [
            {"system": "phone", "value": f"555-{rng.randint(100, 999)}-{i % 10000:04d}"}
        ]
        for address in p.get("address", []):
            for ext in address.get("extension", []):
                for part in ext.get("extension", []):
                    part["valueDecimal"] += Decimal(rng.randint(-500, 500)) / 10000
        p["generalPractitioner"] = [_reference("Practitioner", self.practitioner)]
        p["managingOrganization"] = _reference("Organization", self.organization)
        p["text"] = {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{given} {family}, '
            f"born {p['birthDate']}</div>",
        }
        return p

    def encounters(self) -> list[Json]:
        pool = self.template.by_type.get("Encounter") or self.g.t.everyone["Encounter"]
        count = self.plan.encounters
        if len(pool) >= count:
            picks = sorted(self.rng.sample(range(len(pool)), count))
        else:
            picks = sorted(self.rng.randrange(len(pool)) for _ in range(count))
        out: list[Json] = []
        for n, index in enumerate(picks):
            e = _clone(pool[index])
            extra = 0 if index not in picks[:n] else self.rng.randint(30, 400)
            e["id"] = f"{self.pid}-e{n:02d}"
            for key in ("start", "end"):
                if key in e["period"]:
                    e["period"][key] = _shift(e["period"][key], self.plan.shift_days + extra)
            e["subject"] = _reference("Patient", self.pid)
            e["participant"] = [{"individual": _reference("Practitioner", self.practitioner)}]
            e["serviceProvider"] = _reference("Organization", self.organization)
            self.encounter_of.setdefault(pool[index]["id"], (e["id"], e["period"]["start"]))
            self.chosen.append((e["id"], e["period"]["start"]))
            out.append(e)
        return out

    def _attach(self, r: Json) -> str:
        """Point ``r`` at this patient and one of its encounters; the encounter's start."""
        original = r.get("encounter", {}).get("reference", "").removeprefix("urn:uuid:")
        encounter, start = self.encounter_of.get(original) or self.rng.choice(self.chosen)
        r["subject"] = _reference("Patient", self.pid)
        r["encounter"] = _reference("Encounter", encounter)
        return start

    def observation(self, n: int, o: Json) -> Json:
        o["id"] = f"{self.pid}-o{n:03d}"
        start = self._attach(o)
        o["effectiveDateTime"] = start
        o["issued"] = start.replace("+00:00", ".530+00:00")
        for holder in (o, *o.get("component", [])):
            quantity = holder.get("valueQuantity")
            if quantity is not None:
                quantity["value"] = _jitter(quantity["value"], self.rng)
        return o

    def condition(self, n: int, c: Json) -> Json:
        c["id"] = f"{self.pid}-c{n}"
        start = self._attach(c)
        if "abatementDateTime" in c:
            lasted = datetime.fromisoformat(c["abatementDateTime"]) - datetime.fromisoformat(
                c["onsetDateTime"]
            )
            c["abatementDateTime"] = _shift(start, max(lasted.days, 1))
        c["onsetDateTime"] = c["recordedDate"] = start
        c.pop("text", None)
        c["text"] = {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{c["code"]["text"]}, '
            f"onset {start[:10]}</div>",
        }
        return c

    def medication_request(self, n: int, m: Json) -> Json:
        m["id"] = f"{self.pid}-m{n}"
        m["authoredOn"] = self._attach(m)
        m.pop("reasonReference", None)
        m["requester"] = _reference("Practitioner", self.practitioner)
        if self.rng.random() < 0.25:
            code = m.pop("medicationCodeableConcept")["coding"][0]["code"]
            m["medicationReference"] = _reference("Medication", f"med-{code}")
        return m

    def provenance(self, encounters: list[Json]) -> Json:
        targets = [_reference("Patient", self.pid)] + [
            _reference("Encounter", e["id"]) for e in encounters
        ]
        author = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
        return {
            "resourceType": "Provenance",
            "id": f"{self.pid}-prov",
            "target": targets,
            "recorded": encounters[-1]["period"].get("end", encounters[-1]["period"]["start"]),
            "agent": [
                {
                    "type": {"coding": [{"system": author, "code": "author"}], "text": "Author"},
                    "who": _reference("Practitioner", self.practitioner),
                    "onBehalfOf": _reference("Organization", self.organization),
                }
            ],
        }


def generate(g: Generator, patients: range) -> Iterator[Item]:
    """The shared resources (when ``patients`` starts at 0) then each patient's, in order."""
    if patients.start == 0:
        yield from g.shared()
    for i in patients:
        yield from g.patient(i)
