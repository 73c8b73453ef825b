"""Plain types shared by the pure FHIR layer.

Resources are plain ``dict`` objects as decoded from FHIR JSON
(https://hl7.org/fhir/R4/json.html): decimals are ``decimal.Decimal`` so that ``72.50`` stays
``72.50``; everything else is the JSON type.
"""

from __future__ import annotations

from typing import Any, TypeAlias

Resource: TypeAlias = dict[str, Any]
