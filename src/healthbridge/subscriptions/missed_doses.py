"""The missed-dose scheduler: a scheduled dose with no administration recorded by its due time
plus a grace period is recorded as a ``not-done`` MedicationAdministration.

MedicationRequest https://hl7.org/fhir/R4/medicationrequest.html, MedicationAdministration
https://hl7.org/fhir/R4/medicationadministration.html (``status`` not-done, ``statusReason``,
``request``), conditional create https://hl7.org/fhir/R4/http.html#ccreate. Every
``missed_dose_scan_seconds`` one server process (the holder of the :class:`~.lease.Lease`):

* pages through the live MedicationRequests with status ``active``, an intent that orders
  (:data:`INTENTS`) and a configured category (``inpatient`` by default: outpatient and community
  prescriptions are taken at home, where nobody records administrations);
* expands each one's dose times (:mod:`.dose_schedule`) for the doses due in the look-back window
  whose grace period has passed (``due + grace <= now``, ``due >= now - lookback``);
* looks for MedicationAdministrations of the request (``request`` = it; any status but
  entered-in-error) in each dose's recording window (half-way to the neighbouring doses, at most
  12 hours either side);
* for a dose with none, creates a ``not-done`` MedicationAdministration (:func:`missed_dose`)
  through the FHIR service: validation, outbox (so subscriptions and the audit trail see it) and
  a conditional create on its identifier ``urn:healthbridge:missed-dose|<request id>/<due>``,
  race-free across processes, so that a re-run, a second scheduler or a lease handed over in the
  middle of a scan never records a dose twice. The writes are authored by
  :data:`ACTOR`, the server's scheduler.

The ``missed-medication-dose`` topic (``data/missed-medication-dose.json``) fires on those
creates.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from healthbridge.audit.records import Who
from healthbridge.fhir import jsonformat
from healthbridge.fhir.datetimes import parse_period
from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import FhirError
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.fhir.types import Resource
from healthbridge.fhir.validation import Validator
from healthbridge.infra.logging import get_logger
from healthbridge.infra.tasks import forever
from healthbridge.rest.service import FhirService
from healthbridge.settings import Settings
from healthbridge.store.actor import acting_as
from healthbridge.store.instants import Clock, system_clock
from healthbridge.store.repository import Repository
from healthbridge.subscriptions.dose_schedule import MAX_WINDOW, due_times, recording_windows
from healthbridge.subscriptions.lease import Lease

SYSTEM: Final = "urn:healthbridge:missed-dose"
"""Identifier system of the MedicationAdministrations the scheduler records."""
REASON: Final = "No administration recorded by the due time plus grace period"
INTENTS: Final = "order,original-order,reflex-order,filler-order,instance-order"
RECORDED: Final = "in-progress,not-done,on-hold,completed,stopped,unknown"
"""Administration statuses that record a dose (all but entered-in-error)."""
ACTOR: Final = Who(subject="server:missed-dose-scheduler").actor()
"""The author of the scheduler's writes in the outbox and the audit trail."""
LEASE: Final = "missed-dose-scheduler"
_log = get_logger("healthbridge.subscriptions.missed_doses")


@dataclass(frozen=True, slots=True)
class MissedDoseRules:
    grace: timedelta = timedelta(minutes=60)
    lookback: timedelta = timedelta(hours=24)
    zone: tzinfo = UTC
    """Where dates and ``timeOfDay`` are local times."""
    categories: str = "inpatient"
    """MedicationRequest ``category`` search value (comma-separated codes); empty: any."""
    page_size: int = 100


def instant(moment: datetime) -> str:
    """``moment`` as a FHIR instant in UTC (fractions of a second only when there are some)."""
    moment = moment.astimezone(UTC)
    fraction = f".{moment.microsecond:06d}" if moment.microsecond else ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def dose_key(request_id: str, due: datetime) -> str:
    """The identifier value of a dose: ``<MedicationRequest id>/<due instant>``."""
    return f"{request_id}/{instant(due)}"


def missed_dose(request_id: str, request: Resource, due: datetime) -> Resource:
    """The ``not-done`` MedicationAdministration recording that the dose of ``request`` due at
    ``due`` was not recorded (subject, encounter as context, medication copied)."""
    administration: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "identifier": [{"system": SYSTEM, "value": dose_key(request_id, due)}],
        "status": "not-done",
        "statusReason": [{"text": REASON}],
        "subject": request.get("subject"),
        "effectiveDateTime": instant(due),
        "request": {"reference": f"MedicationRequest/{request_id}"},
    }
    for medication in ("medicationCodeableConcept", "medicationReference"):
        if medication in request:
            administration[medication] = request[medication]
    if "encounter" in request:
        administration["context"] = request["encounter"]
    return administration


class MissedDoseScheduler:
    def __init__(
        self,
        service: FhirService,
        rules: MissedDoseRules,
        *,
        every_s: float = 60.0,
        lease: Lease | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.service = service  # unrestricted: the server's own work
        self.rules = rules
        self.every_s = every_s
        self.lease = lease
        self._clock = clock

    async def scan(self) -> int:
        """Look at every active request once; the number of missed doses recorded."""
        now = self._clock()
        start, end = now - self.rules.lookback, now - self.rules.grace
        if end < start:
            return 0
        recorded = 0
        with acting_as(ACTOR):
            async for request_id, request in self._requests():
                recorded += await self._check(request_id, request, start, end)
        return recorded

    async def _requests(self) -> AsyncIterator[tuple[str, Resource]]:
        pairs = [("status", "active"), ("intent", INTENTS), ("_count", str(self.rules.page_size))]
        if self.rules.categories:
            pairs.append(("category", self.rules.categories))
        query = self.service.search.parse("MedicationRequest", pairs, strict=True)
        cursor: str | None = None
        while True:
            page = await self.service.repository.search(query, cursor)
            for stored in page.matches:
                yield stored.id, jsonformat.loads(stored.content)
            cursor = page.next_cursor
            if cursor is None or (self.lease is not None and not await self.lease.hold()):
                return  # done, or another process holds the lease now

    async def _check(
        self, request_id: str, request: Resource, start: datetime, end: datetime
    ) -> int:
        """Record the missed doses of one request due in ``[start, end]``."""
        zone = self.rules.zone
        around = due_times(request, start - MAX_WINDOW, end + MAX_WINDOW, zone)
        doses = [
            (due, window)
            for due, window in zip(around, recording_windows(around), strict=True)
            if start <= due <= end
        ]
        if not doses:
            return 0
        given = await self._administered(request_id, doses[0][1][0], doses[-1][1][1])
        recorded = 0
        for due, (low, high) in doses:
            if not any(low <= at <= high for at in given):
                recorded += await self._record(request_id, request, due)
        return recorded

    async def _administered(self, request_id: str, low: datetime, high: datetime) -> list[datetime]:
        """When the administrations of the request between ``low`` and ``high`` took place."""
        pairs = [
            ("request", f"MedicationRequest/{request_id}"),
            ("status", RECORDED),
            ("effective-time", f"ge{instant(low)}"),
            ("effective-time", f"le{instant(high)}"),
            ("_count", str(self.rules.page_size)),
        ]
        query = self.service.search.parse("MedicationAdministration", pairs, strict=True)
        found: list[datetime] = []
        cursor: str | None = None
        while True:
            page = await self.service.repository.search(query, cursor)
            found += [at for s in page.matches if (at := _effective(jsonformat.loads(s.content)))]
            if (cursor := page.next_cursor) is None:
                return found

    async def _record(self, request_id: str, request: Resource, due: datetime) -> int:
        """Create the not-done administration unless it exists; 1 when this call created it."""
        key = dose_key(request_id, due)
        criteria = urlencode({"identifier": f"{SYSTEM}|{key}"})
        try:
            stored, created = await self.service.conditional_create(
                "MedicationAdministration", missed_dose(request_id, request, due), criteria
            )
        except FhirError as exc:  # e.g. the request has no subject or medication: invalid
            _log.warning("missed dose not recorded", dose=key, error=str(exc))
            return 0
        if created:
            _log.info("missed dose recorded", dose=key, id=stored.id)
        return int(created)

    async def run(self) -> None:
        """Scan every ``every_s`` seconds while holding the lease; errors are logged and the
        next scan tries again."""

        async def once() -> float:
            if self.lease is None or await self.lease.hold():
                await self.scan()
            return self.every_s

        await forever(
            once,
            what="missed-dose scan",
            log=_log,
            transient=(FhirError,),
            transient_pause=self.every_s,
            error_pause=self.every_s,
        )

    async def close(self) -> None:
        """Hand the lease over at once (the next process asking takes it)."""
        if self.lease is not None:
            with contextlib.suppress(Exception):
                await self.lease.release()


def _effective(administration: Resource) -> datetime | None:
    """When an administration took place: ``effectiveDateTime``, else the period's start (or
    end)."""
    period = administration.get("effectivePeriod") or {}
    for value in (administration.get("effectiveDateTime"), period.get("start"), period.get("end")):
        if isinstance(value, str):
            try:
                return parse_period(value)[0]
            except ValueError:
                continue
    return None


def missed_dose_scheduler(
    settings: Settings, repository: Repository, definitions: Definitions, owner: str
) -> MissedDoseScheduler | None:
    """The scheduler as the settings describe it (None when ``missed_dose_enabled`` is off),
    writing through a FHIR service of its own over the unrestricted ``repository`` and holding
    the lease as ``owner``; a process that dies loses the lease after two scans' time."""
    if not settings.missed_dose_enabled:
        return None
    validator = Validator(definitions, max_string_length=settings.max_string_chars)
    service = FhirService(repository, definitions, validator, SearchParser(definitions))
    rules = MissedDoseRules(
        grace=timedelta(minutes=settings.missed_dose_grace_minutes),
        lookback=timedelta(hours=settings.missed_dose_lookback_hours),
        zone=ZoneInfo(settings.missed_dose_timezone),
        categories=settings.missed_dose_categories.strip(),
    )
    every = settings.missed_dose_scan_seconds
    lease = Lease(repository.records, LEASE, owner, seconds=2 * every + 30)
    return MissedDoseScheduler(service, rules, every_s=every, lease=lease)
