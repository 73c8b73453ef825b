"""R4 4.0.1 definitions generated from the official packages: https://hl7.org/fhir/R4/.

``load_definitions()`` returns the one immutable :class:`Definitions` (cached per process).
Regenerate the data with ``python scripts/generate_definitions.py``.
"""

from __future__ import annotations

from healthbridge.fhir.definitions.loader import load_definitions
from healthbridge.fhir.definitions.model import (
    Binding,
    ElementDef,
    SearchComponent,
    SearchParameter,
    TypeDef,
    TypeRef,
    ValueSetCodes,
)
from healthbridge.fhir.definitions.registry import Definitions

__all__ = [
    "Binding",
    "Definitions",
    "ElementDef",
    "SearchComponent",
    "SearchParameter",
    "TypeDef",
    "TypeRef",
    "ValueSetCodes",
    "load_definitions",
]
