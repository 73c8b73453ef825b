"""A clinician's patients: the care relationships that open a patient's record to ``user/`` scopes.

SMART App Launch 2.x, https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html:
``user/`` scopes grant "resources the current user is permitted to access". With the setting
``user_access = "care-team"`` (the default) a user may access the records (the Patient
compartment, https://hl7.org/fhir/R4/compartmentdefinition-patient.html) of the patients they
have a care relationship with, their *care set*. A user whose ``fhirUser``
(https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html#fhiruser) is

* ``Practitioner/X`` acts as X and as each of X's PractitionerRoles
  (https://hl7.org/fhir/R4/practitionerrole.html, those not ``active: false``);
  ``PractitionerRole/R`` acts as R and R's practitioner. Their patients are those
  - whose ``Patient.generalPractitioner`` names one of them
    (https://hl7.org/fhir/R4/patient-definitions.html#Patient.generalPractitioner);
  - who are the subject of a CareTeam (https://hl7.org/fhir/R4/careteam.html) with one of them
    as ``participant.member`` and a status of ``active`` or ``proposed`` (or none);
  - who are the subject of an Encounter (https://hl7.org/fhir/R4/encounter.html) with one of them
    as ``participant.individual`` that is planned, arrived, triaged, in progress or on leave, or
    finished with ``period.end`` (``period.start`` when it has no end) within
    ``care_relationship_days``;
* ``Patient/P`` (a patient holding ``user/`` scopes): P only;
* ``RelatedPerson/R``: the patient of R (none when R is not ``active``);
* anything else, or no ``fhirUser``: no patient.

Users with the ``admin`` or :data:`ALL_PATIENTS` role, and ``user_access = "all"``, are not held
to a care set (:mod:`healthbridge.security.access` decides who is). The set is found with a
few searches of the unrestricted repository (the search parameters Patient
``general-practitioner``, CareTeam ``participant``/``status``, Encounter
``participant``/``status``/``date``, PractitionerRole ``practitioner``) and remembered in the
token's :attr:`~healthbridge.security.context.AccessContext.memo` for :attr:`CareRelationships.ttl`
seconds, so requests in between run no extra query. It may therefore be that long out of date: a
relationship made or ended by someone else shows within that time; the token's own writes of the
types it is built from (:data:`RELATIONSHIP_TYPES`) drop it at once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any, Literal

from healthbridge.fhir import jsonformat
from healthbridge.fhir.datetimes import period_micros, to_micros
from healthbridge.fhir.errors import Gone, NotFound
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.fhir.types import Resource
from healthbridge.security.context import MEMO_SIZE, AccessContext
from healthbridge.store.instants import Clock, system_clock, utc
from healthbridge.store.repository import Repository, StoredResource

UserAccess = Literal["care-team", "all"]
ALL_PATIENTS = "all-patients"
"""The role of users who may see every patient (health information management staff,
emergency physicians): not held to a care set."""
TTL_SECONDS = 30.0
RELATIONSHIP_TYPES = frozenset(
    {"Patient", "CareTeam", "Encounter", "PractitionerRole", "RelatedPerson"}
)
"""What a care set is built from: a write of one of these may change it."""
ACTIVE_ENCOUNTER = "planned,arrived,triaged,in-progress,onleave"
ACTIVE_CARE_TEAM = "active,proposed"
PAGE_SIZE = 1000
_MEMO_KEY = "care-set"


def care_relationships(
    user_access: UserAccess, repository: Repository, days: int
) -> CareRelationships | None:
    """The care relationships of the setting ``user_access`` (None for ``all``: ``user/``
    scopes cover every patient)."""
    return CareRelationships(repository, days=days) if user_access == "care-team" else None


def _target(reference: object) -> tuple[str, str] | None:
    """``(type, id)`` of a relative or absolute literal reference (``_history`` dropped)."""
    if not isinstance(reference, str):
        return None
    parts = reference.partition("/_history/")[0].rsplit("/", 2)
    if len(parts) < 2 or not parts[-2] or not parts[-1]:
        return None
    return parts[-2], parts[-1]


def _patient_of(element: object) -> str | None:
    """The Patient id a Reference element points at (None for a Group or anything else)."""
    found = _target(element.get("reference")) if isinstance(element, dict) else None
    return found[1] if found is not None and found[0] == "Patient" else None


class CareRelationships:
    """Finds and remembers each ``user/`` token's care set (module docstring)."""

    def __init__(
        self,
        repository: Repository,
        *,
        days: int = 30,
        ttl: float = TTL_SECONDS,
        clock: Clock = system_clock,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.repository = repository  # unrestricted
        self.days = days
        self.ttl = ttl
        self._clock = clock
        self._monotonic = monotonic

    async def patients(self, access: AccessContext, parser: SearchParser) -> frozenset[str]:
        """The ids of the patients ``access``'s user has a care relationship with, as found at
        most :attr:`ttl` seconds ago."""
        now = self._monotonic()
        found: tuple[float, frozenset[str]] | None = access.memo.get(_MEMO_KEY)
        if found is not None and now < found[0]:
            return found[1]
        patients = await self.find(access.fhir_user, parser)
        if len(access.memo) < MEMO_SIZE or _MEMO_KEY in access.memo:
            access.memo[_MEMO_KEY] = (now + self.ttl, patients)
        return patients

    def forget(self, access: AccessContext) -> None:
        """Find ``access``'s care set afresh on its next use (it just wrote a relationship)."""
        access.memo.pop(_MEMO_KEY, None)

    async def find(self, fhir_user: str | None, parser: SearchParser) -> frozenset[str]:
        """The care set of the user ``fhir_user`` (``Type/id``, or an absolute URL ending so)."""
        who = _target(fhir_user)
        if who is None:
            return frozenset()
        kind, id = who
        if kind == "Patient":
            return frozenset((id,))
        if kind == "RelatedPerson":
            person = await self._read(kind, id)
            patient = _patient_of(person.get("patient")) if person is not None else None
            return frozenset((patient,)) if patient is not None else frozenset()
        if kind == "Practitioner":
            roles = self._search(parser, "PractitionerRole", [("practitioner", f"{kind}/{id}")])
            actors = [f"{kind}/{id}"]
            actors += [f"PractitionerRole/{r.id}" async for r in roles if _active(r)]
        elif kind == "PractitionerRole":
            role = await self._read(kind, id)
            if role is None:
                return frozenset()
            practitioner = _target((role.get("practitioner") or {}).get("reference"))
            actors = [f"{kind}/{id}"]
            if practitioner is not None and practitioner[0] == "Practitioner":
                actors.append("/".join(practitioner))
        else:
            return frozenset()
        return await self._patients_of(actors, parser)

    async def _patients_of(self, actors: Sequence[str], parser: SearchParser) -> frozenset[str]:
        who = ",".join(actors)
        found: set[str] = set()
        async for stored in self._search(parser, "Patient", [("general-practitioner", who)]):
            found.add(stored.id)
        for status in (("status", ACTIVE_CARE_TEAM), ("status:missing", "true")):
            async for stored in self._search(parser, "CareTeam", [("participant", who), status]):
                found.update(_subjects(stored))
        active = [("participant", who), ("status", ACTIVE_ENCOUNTER)]
        async for stored in self._search(parser, "Encounter", active):
            found.update(_subjects(stored))
        since = utc(self._clock()) - timedelta(days=self.days)
        finished = [
            ("participant", who),
            ("status", "finished"),
            ("date", "ge" + since.strftime("%Y-%m-%dT%H:%M:%SZ")),
        ]
        async for stored in self._search(parser, "Encounter", finished):
            if _ended_since(stored, to_micros(since)):
                found.update(_subjects(stored))
        return frozenset(found)

    async def _search(
        self, parser: SearchParser, resource_type: str, params: list[tuple[str, str]]
    ) -> AsyncIterator[StoredResource]:
        """Every match, page after page."""
        query = replace(parser.parse(resource_type, params), count=PAGE_SIZE, total="none")
        cursor: str | None = None
        while True:
            page = await self.repository.search(query, cursor)
            for stored in page.matches:
                yield stored
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def _read(self, resource_type: str, id: str) -> Resource | None:
        """The resource, unless it is missing, deleted or not ``active``."""
        try:
            stored = await self.repository.read(resource_type, id)
        except (NotFound, Gone):
            return None
        resource: Resource = jsonformat.loads(stored.content)
        return resource if resource.get("active") is not False else None


def _active(stored: StoredResource) -> bool:
    return jsonformat.loads(stored.content).get("active") is not False


def _subjects(stored: StoredResource) -> list[str]:
    resource: dict[str, Any] = jsonformat.loads(stored.content)
    patient = _patient_of(resource.get("subject"))
    return [patient] if patient is not None else []


def _ended_since(stored: StoredResource, since: int) -> bool:
    """Whether a finished Encounter's ``period.end`` (or ``start``, when it has no end) is at
    or after ``since`` (microseconds)."""
    period = jsonformat.loads(stored.content).get("period")
    if not isinstance(period, dict):
        return False
    when = period.get("end") or period.get("start")
    if not isinstance(when, str):
        return False
    try:
        return period_micros(when)[1] > since
    except ValueError:
        return False
