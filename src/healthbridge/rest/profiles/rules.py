"""Profile validation on write and in ``$validate``: https://hl7.org/fhir/R4/profiling.html.

On every write (:meth:`ProfileRules.check`, called by ``FhirService.check_body`` after the base
validation) a resource is validated against

* the profiles it claims in ``meta.profile`` that this server knows. A claimed profile the
  server does not know is not an error: claims are common (Synthea claims US Core profiles)
  and the server cannot check what it has not installed;
* the profiles ``HEALTHBRIDGE_REQUIRED_PROFILES`` requires for its type.

Errors refuse the write with 422 Unprocessable Entity and an OperationOutcome listing the errors
and warnings with their FHIRPath locations (https://hl7.org/fhir/R4/http.html#2.21.0.9: a
resource that does not conform to a profile the server requires is 422; the base validation,
whose failures are malformed content, stays 400). Warnings and information never block a write,
and must-support information is reported by ``$validate`` only. A resource that claims no
profile, of a type with no required profile, costs one dict lookup.

A required profile the server does not know is a configuration error: the server refuses to
start (:meth:`ProfileRules.verify`), naming the profile and ``healthbridge packages install``,
rather than accept writes it was told to check and cannot. Should the definition be deleted
while the server runs, writes of that type are refused (422, naming the profile) until it is
installed again: the server fails closed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from healthbridge.fhir.errors import Issue, Unprocessable
from healthbridge.fhir.types import Resource
from healthbridge.fhir.validation.profiles import claimed_profiles
from healthbridge.rest.profiles.catalog import ProfileCatalog

INSTALL: Final = "install its package with healthbridge packages install"
_BLOCKING: Final = frozenset({"error", "fatal"})


class MissingProfiles(RuntimeError):
    """Required profiles the server does not know: it cannot start."""


def _not_known(url: str) -> str:
    return f"profile {url} is not known to this server; {INSTALL}"


class ProfileRules:
    def __init__(self, catalog: ProfileCatalog, required: Mapping[str, Sequence[str]]) -> None:
        self.catalog = catalog
        self.required = {t: tuple(urls) for t, urls in required.items() if urls}

    def verify(self) -> None:
        """Raise :class:`MissingProfiles` unless every required profile is known and usable."""
        problems = []
        for resource_type, urls in sorted(self.required.items()):
            for url in urls:
                found = self.catalog.structure(url)
                if found is None:
                    problems.append(f"{resource_type}: {_not_known(url)} <package>.tgz")
                elif found.get("type") != resource_type:
                    problems.append(
                        f"{resource_type}: profile {url} constrains {found.get('type')}, "
                        f"not {resource_type}"
                    )
                elif self.catalog.validator.compiled(url) is None:
                    problem = self.catalog.validator.problem(url)
                    problems.append(f"{resource_type}: profile {url} cannot be used: {problem}")
        if problems:
            raise MissingProfiles(
                "HEALTHBRIDGE_REQUIRED_PROFILES names profiles this server cannot check: "
                + "; ".join(problems)
            )

    def supported(self) -> dict[str, list[str]]:
        """Resource type -> the installed profiles of it and the required ones (for the
        CapabilityStatement's ``supportedProfile``)."""
        found = self.catalog.profiles_by_type()
        for resource_type, urls in self.required.items():
            known = found.setdefault(resource_type, [])
            known.extend(url for url in urls if url not in known)
        return found

    def _usable(self, url: str) -> bool:
        """A claimed profile that is worth checking: known, not a base type, compilable."""
        validator = self.catalog.validator
        if validator.is_base(url) or self.catalog.structure(url) is None:
            return False
        return validator.compiled(url) is not None

    def check(self, resource_type: str, resource: Resource) -> None:
        """Refuse (422) a resource that breaks a profile it claims or its type requires."""
        required = self.required.get(resource_type, ())
        meta = resource.get("meta")
        if not required and not (isinstance(meta, dict) and meta.get("profile")):
            return
        missing = [url for url in required if self.catalog.structure(url) is None]
        if missing:
            raise Unprocessable(
                issues=[Issue("error", "not-supported", _not_known(url)) for url in missing]
            )
        claimed = [u for u in claimed_profiles(resource) if u not in required and self._usable(u)]
        profiles = [*required, *claimed]
        if not profiles:
            return
        issues = self.catalog.validator.validate(resource, profiles)
        if any(issue.severity in _BLOCKING for issue in issues):
            shown = [i for i in issues if i.severity != "information"]
            raise Unprocessable(
                f"The {resource_type} does not conform to {', '.join(profiles)}", issues=shown
            )

    def validate(
        self, resource: Resource, resource_type: str, requested: Sequence[str]
    ) -> list[Issue]:
        """Every issue ``$validate`` reports against the requested profiles (unknown: error),
        the claimed ones (unknown: warning) and the required ones, must-support included."""
        issues: list[Issue] = []
        validator = self.catalog.validator
        profiles: list[str] = []
        required = self.required.get(resource_type, ())
        for url in dict.fromkeys([*requested, *required, *claimed_profiles(resource)]):
            if validator.is_base(url):
                continue
            if self.catalog.structure(url) is not None:
                profiles.append(url)
            elif url in requested or url in required:
                issues.append(Issue("error", "not-supported", _not_known(url)))
            else:
                message = f"claimed profile {url} is not known to this server and was not checked"
                issues.append(Issue("warning", "not-found", message, (f"{resource_type}.meta",)))
        issues.extend(validator.validate(resource, profiles))
        return issues
