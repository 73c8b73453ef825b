"""Which Patients an audited resource concerns: its Patient compartment membership.

BALP's patient-centric shapes (https://profiles.ihe.net/ITI/BALP/) name the Patient of the data
read or written, so that a patient's accesses can be listed. A resource belongs to a Patient's
compartment when one of the parameters the Patient CompartmentDefinition lists for its type
(https://hl7.org/fhir/R4/compartmentdefinition-patient.html) refers to that Patient; a Patient
is in its own (:func:`healthbridge.fhir.compartments.compartment_owners`). This runs in the
background, for the resources a request returned or a change wrote.
"""

from __future__ import annotations

from healthbridge.fhir import jsonformat
from healthbridge.fhir.compartments import compartment_owners
from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import InvalidRequest
from healthbridge.fhir.search import Indexer
from healthbridge.fhir.types import Resource

MAX_PATIENTS = 100
"""Most Patients one resource is audited for (a Group may list thousands of members)."""


class PatientFinder:
    def __init__(self, definitions: Definitions) -> None:
        self._definitions = definitions
        self._indexer = Indexer(definitions)

    def patients(self, resource: Resource) -> list[str]:
        """The ids of the Patients whose compartment ``resource`` is in, sorted, at most
        :data:`MAX_PATIENTS`."""
        owners = compartment_owners(self._definitions, self._indexer, "Patient", resource)
        return sorted(owners)[:MAX_PATIENTS]

    def patients_in(self, content: bytes) -> list[str]:
        """:meth:`patients` of stored JSON bytes (none when they do not decode)."""
        if not content:
            return []
        try:
            resource = jsonformat.loads(content)
        except InvalidRequest:
            return []
        return self.patients(resource) if isinstance(resource, dict) else []
