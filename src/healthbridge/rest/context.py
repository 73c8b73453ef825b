"""What every REST handler needs, built once by the app (no globals)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from healthbridge.fhir.search.parse import SearchParser
from healthbridge.rest.bundle import BundleProcessor
from healthbridge.rest.http import HttpLimits
from healthbridge.rest.service import FhirService
from healthbridge.rest.terminology.sources import Resolver
from healthbridge.store.audit import AuditLog


@dataclass(frozen=True, slots=True)
class RestContext:
    service: FhirService
    limits: HttpLimits
    software_version: str
    search: SearchParser  # with the page sizes of the settings (search.html#count)
    refresh_search: Callable[[], Awaitable[bool]] | None = None
    """Bring the search parameters up to date (custom ones from another process); True when
    they changed. Called when a search names a parameter the parser does not know."""
    bundles: BundleProcessor | None = None
    """Runs transaction and batch Bundles (``POST [base]``)."""
    audit: AuditLog | None = None
    """The audit trail, searched by auditors (``GET [base]/AuditEvent``, audit_events.py)."""
    terminology: Resolver | None = None
    """The terminology service's code systems and value sets, for search's token ``:in`` and
    ``:below`` (search_terminology.py); None: one over ``service.unrestricted`` per search."""
