"""Patching resources: https://hl7.org/fhir/R4/http.html#patch."""
