"""A small, deterministic demo data set: patients with encounters, observations (vital signs and
labs coded in LOINC with UCUM units), conditions (SNOMED CT) and medication requests (RxNorm),
and the demo clinician (``Practitioner/demo-practitioner-1``) with an active CareTeam
(https://hl7.org/fhir/R4/careteam.html) over each patient: the care relationship that lets the
clinician's ``user/`` scopes reach them (docs/access-control.md, "Clinicians: care
relationships").

The resources are generated, not copied from anywhere, and validate against the R4 definitions.
Ids are fixed (``demo-...``) so that loading twice changes nothing.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal

from healthbridge.fhir.types import Resource

_GIVEN = [
    "Amara",
    "Ben",
    "Chen",
    "Dalia",
    "Emeka",
    "Fatima",
    "Goran",
    "Hana",
    "Ivan",
    "Jia",
    "Kofi",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tariq",
]
_FAMILY = [
    "Okafor",
    "Lindqvist",
    "Nakamura",
    "Haddad",
    "Moreau",
    "Silva",
    "Kowalski",
    "Mensah",
    "Rahman",
    "Novak",
    "Ferreira",
    "O'Brien",
    "Yilmaz",
    "Schmidt",
    "Adeyemi",
]
# (LOINC code, display, UCUM unit, low, high, decimals, category)
_OBSERVATIONS = [
    ("8867-4", "Heart rate", "/min", 55, 105, 0, "vital-signs"),
    ("29463-7", "Body weight", "kg", 48, 120, 1, "vital-signs"),
    ("8302-2", "Body height", "cm", 150, 198, 1, "vital-signs"),
    ("8310-5", "Body temperature", "Cel", 36, 38, 1, "vital-signs"),
    ("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 70, 180, 0, "laboratory"),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4, 10, 1, "laboratory"),
]
_CONDITIONS = [
    ("44054006", "Diabetes mellitus type 2"),
    ("38341003", "Hypertensive disorder"),
    ("195967001", "Asthma"),
    ("55822004", "Hyperlipidemia"),
]
_MEDICATIONS = [
    ("860975", "metformin hydrochloride 500 MG Oral Tablet"),
    ("314076", "lisinopril 10 MG Oral Tablet"),
    ("745679", "albuterol 0.09 MG/ACTUAT Metered Dose Inhaler"),
    ("617312", "atorvastatin 10 MG Oral Tablet"),
]
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
PRACTITIONER_ID = "demo-practitioner-1"
PRACTITIONER: Resource = {
    "resourceType": "Practitioner",
    "id": PRACTITIONER_ID,
    "active": True,
    "name": [{"family": "Clinician", "given": ["Demo"], "prefix": ["Dr."]}],
}
"""The demo clinician (the ``demo-clinician`` account of ``serve --demo`` is this person)."""


def _patient(rng: random.Random, n: int) -> Resource:
    born = date(1940, 1, 1) + timedelta(days=rng.randrange(0, 365 * 65))
    return {
        "resourceType": "Patient",
        "id": f"demo-patient-{n}",
        "identifier": [{"system": "urn:healthbridge:demo:mrn", "value": f"MRN{1000 + n}"}],
        "active": True,
        "name": [{"use": "official", "family": rng.choice(_FAMILY), "given": [rng.choice(_GIVEN)]}],
        "gender": rng.choice(["female", "male"]),
        "birthDate": born.isoformat(),
        "address": [{"city": rng.choice(["Springfield", "Riverton", "Lakeside"]), "country": "US"}],
    }


def _care_team(patient: str) -> Resource:
    return {
        "resourceType": "CareTeam",
        "id": f"{patient.removeprefix('demo-')}-careteam",
        "status": "active",
        "name": "Primary care",
        "subject": {"reference": f"Patient/{patient}"},
        "participant": [
            {
                "role": [{"text": "Primary care physician"}],
                "member": {"reference": f"Practitioner/{PRACTITIONER_ID}"},
            }
        ],
    }


def _encounter(patient: str, n: int, day: date) -> Resource:
    return {
        "resourceType": "Encounter",
        "id": f"{patient.removeprefix('demo-')}-enc-{n}",
        "status": "finished",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "AMB",
            "display": "ambulatory",
        },
        "subject": {"reference": f"Patient/{patient}"},
        "period": {"start": f"{day.isoformat()}T09:00:00Z", "end": f"{day.isoformat()}T09:30:00Z"},
    }


def _observation(
    rng: random.Random, patient: str, encounter: str, kind: int, n: int, day: date
) -> Resource:
    code, display, unit, low, high, places, category = _OBSERVATIONS[kind]
    value = Decimal(rng.uniform(low, high)).quantize(Decimal(1).scaleb(-places))
    return {
        "resourceType": "Observation",
        "id": f"{patient.removeprefix('demo-')}-obs-{n}",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": category,
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{patient}"},
        "encounter": {"reference": f"Encounter/{encounter}"},
        "effectiveDateTime": f"{day.isoformat()}T09:15:00Z",
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def _condition(patient: str, n: int, code: str, display: str, onset: date) -> Resource:
    return {
        "resourceType": "Condition",
        "id": f"{patient.removeprefix('demo-')}-cond-{n}",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "confirmed",
                }
            ]
        },
        "code": {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{patient}"},
        "onsetDateTime": onset.isoformat(),
    }


def _medication_request(patient: str, n: int, code: str, display: str, day: date) -> Resource:
    return {
        "resourceType": "MedicationRequest",
        "id": f"{patient.removeprefix('demo-')}-medreq-{n}",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": code, "display": display}],
            "text": display,
        },
        "subject": {"reference": f"Patient/{patient}"},
        "authoredOn": day.isoformat(),
        "dosageInstruction": [
            {
                "text": "Take one tablet by mouth daily",
                "timing": {"repeat": {"frequency": 1, "period": Decimal("1"), "periodUnit": "d"}},
            }
        ],
    }


def demo_resources(patients: int = 10, seed: int = 7) -> Iterator[Resource]:
    """Yield the demo data set: the clinician, then each patient's resources after the
    patient."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not security
    yield dict(PRACTITIONER)
    for n in range(1, patients + 1):
        patient = _patient(rng, n)
        yield patient
        pid = patient["id"]
        yield _care_team(pid)
        for e in range(1, 3):
            day = date(2025, 1, 1) + timedelta(days=rng.randrange(0, 600))
            encounter = _encounter(pid, e, day)
            yield encounter
            for o in range(len(_OBSERVATIONS)):
                yield _observation(rng, pid, encounter["id"], o, (e - 1) * 10 + o, day)
        for c, (code, display) in enumerate(rng.sample(_CONDITIONS, 2), start=1):
            yield _condition(pid, c, code, display, date(2015, 1, 1) + timedelta(days=c * 400))
            med_code, med_display = _MEDICATIONS[_CONDITIONS.index((code, display))]
            yield _medication_request(pid, c, med_code, med_display, date(2025, 6, 1))
