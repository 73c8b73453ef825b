"""What every REST handler needs, built once by the app (no globals)."""

from __future__ import annotations

from dataclasses import dataclass

from healthbridge.rest.http import HttpLimits
from healthbridge.rest.service import FhirService


@dataclass(frozen=True, slots=True)
class RestContext:
    service: FhirService
    limits: HttpLimits
    software_version: str
