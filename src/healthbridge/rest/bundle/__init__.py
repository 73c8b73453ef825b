"""Transaction and batch Bundles: https://hl7.org/fhir/R4/http.html#transaction.

:class:`BundleProcessor` runs a ``transaction`` (all entries in one database transaction, all
or nothing) or a ``batch`` (each entry on its own) and returns the response Bundle.
"""

from __future__ import annotations

from healthbridge.rest.bundle.processor import BundleLimits, BundleProcessor

__all__ = ["BundleLimits", "BundleProcessor"]
