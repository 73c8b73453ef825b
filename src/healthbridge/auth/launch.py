"""EHR launch contexts (https://hl7.org/fhir/smart-app-launch/app-launch.html#launch-app-ehr-launch).

An EHR (or an administrator) asks this server for a launch id bound to a patient and optionally
an encounter (``POST /auth/launch``, roles ``admin`` or ``ehr``) and opens the app at its launch
URL with ``iss`` and ``launch``. The app passes ``launch`` back in its authorization request;
the grant then carries that patient and encounter (returned as ``patient`` and ``encounter`` in
the token response). A launch id is random, lives :data:`LIFETIME`, may be bound to one client,
and an unknown or expired one gets no code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from healthbridge.auth import state
from healthbridge.infra import tokens
from healthbridge.store.instants import Clock, utc
from healthbridge.store.records import RecordStore

LIFETIME = timedelta(minutes=15)
MAX_ID = 128


@dataclass(frozen=True, slots=True)
class LaunchContext:
    launch: str
    patient: str | None
    encounter: str | None = None
    client_id: str | None = None  # when set, only this client may use the launch
    created_by: str | None = None

    def value(self) -> dict[str, Any]:
        return {
            "patient": self.patient,
            "encounter": self.encounter,
            "client_id": self.client_id,
            "created_by": self.created_by,
        }


class LaunchStore:
    def __init__(self, records: RecordStore, clock: Clock) -> None:
        self._records = records
        self._clock = clock

    async def create(
        self,
        patient: str | None,
        encounter: str | None = None,
        *,
        client_id: str | None = None,
        created_by: str | None = None,
    ) -> LaunchContext:
        launch = LaunchContext(tokens.new_secret(24), patient, encounter, client_id, created_by)
        expires = utc(self._clock()) + LIFETIME
        await self._records.put_record(state.LAUNCH, launch.launch, launch.value(), expires)
        return launch

    async def get(self, launch: str) -> LaunchContext | None:
        if not launch or len(launch) > MAX_ID:
            return None
        record = await self._records.get_record(state.LAUNCH, launch)
        if record is None:
            return None
        v = record.value
        return LaunchContext(
            launch, v.get("patient"), v.get("encounter"), v.get("client_id"), v.get("created_by")
        )
