"""Profile validation wired into the server: https://hl7.org/fhir/R4/profiling.html.

:class:`ProfileCatalog` knows the profiles (stored and shipped) and keeps them current;
:class:`ProfileRules` applies them to writes and to ``$validate``.
"""

from __future__ import annotations

from healthbridge.rest.profiles.catalog import ProfileCatalog
from healthbridge.rest.profiles.rules import MissingProfiles, ProfileRules

__all__ = ["MissingProfiles", "ProfileCatalog", "ProfileRules"]
