"""The patients a sign-in can be about: the practitioner's patient picker of a standalone launch
(https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html#launch-context-arrives-with-your-access_token:
"launch/patient ... the EHR SHALL ... prompt the user to select a patient"), the checks that a
chosen or launched patient exists, and the patient a RelatedPerson account acts for.

Reads go to the repository directly: the authorization server itself decides who may pick whom
(patients: themselves; related persons: the patient of their RelatedPerson resource;
practitioners: the patients they have a care relationship with, the same care set that holds
their ``user/`` scopes (:mod:`healthbridge.security.care_team`), or any patient when the server
gives ``user/`` scopes every patient or the user has the ``admin`` or ``all-patients`` role).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from healthbridge.fhir.errors import FhirError
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.security.care_team import ALL_PATIENTS, CareRelationships
from healthbridge.store.repository import Repository

MAX_CHOICES = 25


@dataclass(frozen=True, slots=True)
class PatientChoice:
    id: str
    label: str  # "Amara Okafor (born 1980-04-02)"


def _label(resource: dict[str, Any]) -> str:
    names = resource.get("name") or [{}]
    name = names[0] if isinstance(names[0], dict) else {}
    text = name.get("text") or " ".join([*name.get("given", []), name.get("family", "")]).strip()
    text = text or f"Patient {resource.get('id')}"
    born = resource.get("birthDate")
    return f"{text} (born {born})" if born else text


class PatientDirectory:
    def __init__(
        self, repository: Repository, parser: SearchParser, care: CareRelationships | None = None
    ) -> None:
        """``care`` None: a practitioner may pick any patient."""
        self._repository = repository
        self._parser = parser
        self._care = care

    async def pickable(self, fhir_user: str | None, roles: frozenset[str]) -> frozenset[str] | None:
        """The patients a user with ``fhir_user`` and ``roles`` may pick; None for any."""
        if self._care is None or "admin" in roles or ALL_PATIENTS in roles:
            return None
        return await self._care.find(fhir_user, self._parser)

    async def search(
        self, text: str = "", among: frozenset[str] | None = None
    ) -> list[PatientChoice]:
        """Up to :data:`MAX_CHOICES` patients whose name matches ``text`` (all when empty),
        only ``among`` these (ids) when given."""
        params = [("_count", str(MAX_CHOICES)), ("_sort", "family,given")]
        if text.strip():
            params.append(("name", text.strip()[:100]))
        try:
            query = self._parser.parse("Patient", params)
            if among is not None:
                query = replace(query, within=("Patient", among))
            page = await self._repository.search(query)
        except FhirError:
            return []
        choices = []
        for stored in page.matches:
            resource = json.loads(stored.content)
            choices.append(PatientChoice(stored.id, _label(resource)))
        return choices

    async def read(self, resource_type: str, id: str) -> dict[str, Any] | None:
        try:
            stored = await self._repository.read(resource_type, id)
        except FhirError:
            return None
        value: dict[str, Any] = json.loads(stored.content)
        return value

    async def exists(self, patient_id: str) -> bool:
        return await self.read("Patient", patient_id) is not None

    async def label(self, patient_id: str) -> str:
        resource = await self.read("Patient", patient_id)
        return _label(resource) if resource is not None else f"Patient {patient_id}"

    async def patient_of_related_person(self, related_person_id: str) -> str | None:
        resource = await self.read("RelatedPerson", related_person_id)
        reference = ((resource or {}).get("patient") or {}).get("reference") or ""
        kind, _, id = reference.rpartition("/")
        return id if kind.endswith("Patient") and id else None
