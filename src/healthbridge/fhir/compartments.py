"""Compartment membership of a resource: https://hl7.org/fhir/R4/compartmentdefinition.html.

A resource is in the compartment of a Patient (or Encounter, RelatedPerson, Practitioner,
Device) when one of the search parameters the CompartmentDefinition lists for its type refers to
that resource: an Observation's ``subject`` or ``performer``, an Encounter's ``patient``...; the
compartment resource itself is in its own compartment. Access control uses this to
keep a patient-context token inside its patient's compartment, for what it reads and for what
it writes. Pure: the values come from the search index extraction.
"""

from __future__ import annotations

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.search import Indexer
from healthbridge.fhir.search.values import ReferenceValue
from healthbridge.fhir.types import Resource


def compartment_owners(
    definitions: Definitions, indexer: Indexer, compartment: str, resource: Resource
) -> set[str]:
    """The ids of the ``compartment`` resources (e.g. the Patients) whose compartment
    ``resource`` is in; empty when its type is not in that compartment at all."""
    resource_type = str(resource.get("resourceType", ""))
    params = definitions.compartment_params(compartment, resource_type)
    owners: set[str] = set()
    if not params:
        return owners
    own_id = resource.get("id")
    if resource_type == compartment and isinstance(own_id, str):
        owners.add(own_id)  # the compartment's own resource (R4 lists only Patient.link)
    for value in (v for code in params for v in indexer.values_of(resource, code)):
        if (
            isinstance(value, ReferenceValue)
            and value.target_type == compartment
            and value.target_id is not None
        ):
            owners.add(value.target_id)
    return owners
