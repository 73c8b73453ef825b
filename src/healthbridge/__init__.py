"""HealthBridge: an open-source HL7 FHIR R4 (4.0.1) server and healthcare API platform."""

from __future__ import annotations

__version__ = "0.1.0"
FHIR_VERSION = "4.0.1"
