"""Compartment membership (https://hl7.org/fhir/R4/compartmentdefinition.html): which
Patients' compartments a resource is in, from the parameters the Patient CompartmentDefinition
lists for its type."""

from __future__ import annotations

from healthbridge.fhir.compartments import compartment_owners
from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.search import Indexer

DEFS = load_definitions()
INDEXER = Indexer(DEFS)


def owners(resource: dict[str, object], compartment: str = "Patient") -> set[str]:
    return compartment_owners(DEFS, INDEXER, compartment, resource)


def test_an_observation_is_in_its_subjects_and_performers_compartments() -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient/a"},
        "performer": [{"reference": "Patient/b"}, {"reference": "Practitioner/p"}],
    }
    assert owners(observation) == {"a", "b"}
    assert owners(observation, "Practitioner") == {"p"}


def test_a_patient_is_in_its_own_compartment_and_its_links() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "a",
        "link": [{"other": {"reference": "Patient/b"}, "type": "seealso"}],
    }
    assert owners(patient) == {"a", "b"}


def test_references_that_are_not_patients_or_not_compartment_links_do_not_count() -> None:
    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "Group/g"},
        "serviceProvider": {"reference": "Organization/o"},
    }
    assert owners(encounter) == set()
    contained = {
        "resourceType": "Condition",
        "subject": {"reference": "#p"},
        "contained": [{"resourceType": "Patient", "id": "p"}],
    }
    assert owners(contained) == set()
    assert owners({"resourceType": "Organization", "id": "o"}) == set()
    assert not DEFS.compartment_params("Patient", "Organization")
    assert DEFS.compartment_params("Patient", "Observation")
