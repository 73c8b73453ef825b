"""Patching resources: https://hl7.org/fhir/R4/http.html#patch.

Two formats: JSON Patch (RFC 6902, :mod:`.json_patch`) and FHIRPath Patch
(https://hl7.org/fhir/R4/fhirpatch.html, :mod:`.fhirpath_patch`).
"""

from healthbridge.fhir.patch.fhirpath_patch import apply_fhirpath_patch
from healthbridge.fhir.patch.json_patch import apply_json_patch

__all__ = ["apply_fhirpath_patch", "apply_json_patch"]
