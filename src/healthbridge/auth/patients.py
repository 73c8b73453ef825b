"""The patients a sign-in can be about: the practitioner's patient picker of a standalone launch
(https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html#launch-context-arrives-with-your-access_token:
"launch/patient ... the EHR SHALL ... prompt the user to select a patient"), the checks that a
chosen or launched patient exists, and the patient a RelatedPerson account acts for.

Reads go to the repository directly: the authorization server itself decides who may pick whom
(practitioners: any patient; patients: themselves; related persons: the patient of their
RelatedPerson resource).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from healthbridge.fhir.errors import FhirError
from healthbridge.fhir.search.parse import SearchParser
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
    def __init__(self, repository: Repository, parser: SearchParser) -> None:
        self._repository = repository
        self._parser = parser

    async def search(self, text: str = "") -> list[PatientChoice]:
        """Up to :data:`MAX_CHOICES` patients whose name matches ``text`` (all when empty)."""
        params = [("_count", str(MAX_CHOICES)), ("_sort", "family,given")]
        if text.strip():
            params.append(("name", text.strip()[:100]))
        try:
            page = await self._repository.search(self._parser.parse("Patient", params))
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
