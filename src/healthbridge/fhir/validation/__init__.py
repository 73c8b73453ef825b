"""StructureDefinition-driven validation of R4 resources: https://hl7.org/fhir/R4/validation.html.

``Validator(load_definitions()).check(resource)`` raises InvalidRequest with one issue per
problem; ``validate`` returns the issues instead.
"""

from __future__ import annotations

from healthbridge.fhir.validation.validator import Validator

__all__ = ["Validator"]
