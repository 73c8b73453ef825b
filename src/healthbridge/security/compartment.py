"""The records of confined tokens: searches kept inside patients' compartments, writes kept there.

https://hl7.org/fhir/R4/compartmentdefinition-patient.html (what a patient's record holds) and
https://hl7.org/fhir/R4/search.html#compartments. A ``patient/`` grant is confined to its launch
patient, a ``user/`` grant held to a care set (:mod:`.care_team`) to those patients:
:func:`confine` narrows a search to their compartments (one patient: a compartment search;
several: ``SearchQuery.within``, an OR over them; none: no result), :func:`passed_through`
finds the patient data a search of other types would reach, and :func:`check_patient_write`
and :func:`check_care_write` refuse (403) writes that would put data in another patient's
record or name another patient. Pure: :mod:`.access` applies them.
"""

from __future__ import annotations

from dataclasses import replace

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import Forbidden
from healthbridge.fhir.search.filter import clauses_of
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.fhir.search.query import Clause, ReferenceQuery, SearchQuery
from healthbridge.fhir.types import Resource

PATIENT = "Patient"


def patients_referenced(resource: Resource) -> set[str]:
    """The ids of the Patients any ``reference`` in ``resource`` names (relative or absolute,
    with or without ``_history``), at any depth, extensions and contained resources included."""
    found: set[str] = set()
    stack: list[object] = [resource]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "reference" and isinstance(value, str):
                    parts = value.partition("/_history/")[0].rsplit("/", 2)
                    if len(parts) >= 2 and parts[-2] == PATIENT:
                        found.add(parts[-1])
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(item for item in node if isinstance(item, dict | list))
    return found


def confine(
    search: SearchParser, query: SearchQuery, patients: frozenset[str], *, patient_context: bool
) -> SearchQuery:
    """``query`` kept to the records of ``patients``: one patient's as a compartment search,
    several as ``within`` (an OR over their compartments), none as no result. A search of a
    Patient compartment outside them finds nothing; ``patient_context`` tokens may not search
    other compartments (``Encounter/1/Observation``), a care set narrows them."""
    compartment = query.compartment
    if compartment is not None and compartment[0] == PATIENT:
        if compartment[1] in patients:
            return query
        return replace(query, clauses=(*query.clauses, _nothing(search, query)))
    if compartment is not None and patient_context:
        raise Forbidden(
            f"A patient-context token searches the Patient compartment only, not "
            f"{compartment[0]}/{compartment[1]}",
            code="forbidden",
        )
    if compartment is None and _already_confined(search.definitions, query, patients):
        return query
    if compartment is None and len(patients) == 1:
        return replace(query, compartment=(PATIENT, next(iter(patients))))
    return replace(query, within=(PATIENT, patients))


def passed_through(query: SearchQuery) -> set[str]:
    """The resource types the chains and ``_has`` steps of ``query`` reach
    (https://hl7.org/fhir/R4/search.html#chaining, #has). From a type outside the patients'
    records, such a step into patient data would tell what other patients' records hold."""
    leaves = clauses_of(query.filter) if query.filter is not None else []
    found: set[str] = set()
    for clause in (*query.clauses, *leaves):
        if clause.chain or clause.has:
            found.add(clause.resource_type)
            found.update(step.target_type for step in clause.chain)
            found.update(step.resource_type for step in clause.has)
    return found


def _already_confined(
    definitions: Definitions, query: SearchQuery, patients: frozenset[str]
) -> bool:
    """True when a criterion of ``query`` already keeps it inside the compartments of
    ``patients``: plain references to some of them (no modifier other than ``:Patient``, no
    chain) on one of the compartment's parameters of the type, as in
    ``Observation?patient=123``. Adding the compartment to such a search would only make the
    database do the same work twice."""
    if query.resource_type is None:
        return False
    params = definitions.compartment_params(PATIENT, query.resource_type)
    for clause in query.clauses:
        if (
            clause.param in params
            and clause.param_type == "reference"
            and not clause.chain
            and not clause.has
            and clause.modifier in (None, PATIENT)
            and clause.values
            and all(
                isinstance(value, ReferenceQuery)
                and value.url is None
                and value.resource_type == PATIENT
                and value.id in patients
                for value in clause.values
            )
        ):
            return True
    return False


def _nothing(search: SearchParser, query: SearchQuery) -> Clause:
    """A criterion no resource meets (another patient's compartment: no results)."""
    clause = search.clause(query.resource_type or "Resource", "_id", "-")
    assert clause is not None
    return clause


def check_patient_write(
    definitions: Definitions,
    patient: str,
    owners: set[str],
    resource_type: str,
    resource: Resource,
) -> None:
    """A write under a ``patient/`` grant: in ``patient``'s record only (``owners``: the
    patients whose compartments the resource is in), naming no other patient."""
    if not definitions.compartment_params(PATIENT, resource_type):
        raise Forbidden(
            f"A patient-context token may not write {resource_type} (it is not part of "
            "a patient's record)",
            code="forbidden",
        )
    if owners != {patient}:
        records = ", ".join(sorted(f"Patient/{o}" for o in owners)) or "no patient"
        raise Forbidden(
            f"This {resource_type} must belong to Patient/{patient} only (it would be "
            f"in the record of {records})",
            code="forbidden",
        )
    for link in patients_referenced(resource):
        if link != patient:
            raise Forbidden(
                f"This {resource_type} refers to Patient/{link}, another patient",
                code="forbidden",
            )


def check_care_write(
    patients: frozenset[str], owners: set[str], resource_type: str, resource: Resource
) -> None:
    """A write of patient data by a user held to the care set ``patients``: in their records
    only (``owners`` as above) and naming no other patient. A Patient itself is not held by
    its own id (registration; an existing one must have been visible to be changed)."""
    own = {resource.get("id")} if resource_type == PATIENT else set()
    owners = owners - own
    if not owners and resource_type != PATIENT:
        raise Forbidden(
            f"This {resource_type} is in no patient's record: a user held to the patients "
            "in their care writes this type only for them",
            code="forbidden",
        )
    outside = sorted((owners | patients_referenced(resource)) - own - patients)
    if outside:
        raise Forbidden(
            f"This {resource_type} refers to Patient/{outside[0]}, a patient this user has no "
            "care relationship with",
            code="forbidden",
        )
