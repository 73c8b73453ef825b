"""Value set membership for profile bindings: https://hl7.org/fhir/R4/terminologies.html#strength.

:func:`code_check` is the one place profile validation learns whether a code is in a value set
beyond the R4 required-binding expansions the validator already ships with. Today it expands,
from the resources alone (:func:`healthbridge.fhir.terminology.hierarchy.value_set_pairs`), the
ValueSets and CodeSystems stored on this server (installed packages, uploads) and then the R4
core ones shipped with it; it can later be swapped for the terminology service. It answers None
("cannot tell") whenever an expansion would need a code system it does not hold completely
(SNOMED CT, LOINC, a ``fragment``), an unsupported filter, or an unknown value set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

from healthbridge.fhir.terminology.core import core_terminology
from healthbridge.fhir.terminology.hierarchy import NotExpandable, value_set_pairs
from healthbridge.fhir.types import Resource
from healthbridge.fhir.validation.profiles import CodeCheck
from healthbridge.rest.profiles.holdings import Holdings

Pairs = frozenset[tuple[str, str]]
_UNKNOWN: Final = object()


def _core(url: str) -> Resource | None:
    core = core_terminology()
    plain = url.partition("|")[0]
    return core.value_sets.get(plain) or core.code_systems.get(plain)


class StoredValueSets:
    """Membership from ``holdings`` then the shipped R4 terminology; expansions are computed
    once per value set and kept as long as these holdings are current."""

    def __init__(self, holdings: Holdings) -> None:
        self.holdings = holdings
        self._expanded: dict[str, Pairs | None] = {}
        self._lock = threading.Lock()

    def resource(self, url: str) -> Resource | None:
        """A ValueSet or CodeSystem by canonical; a CodeSystem only when it lists every code."""
        found = self.holdings.value_sets.get(url) or self.holdings.code_systems.get(url)
        if found is None:
            found = _core(url)
        if found is not None and found.get("resourceType") == "CodeSystem":
            return found if found.get("content") == "complete" else None
        return found

    def expansion(self, url: str) -> Pairs | None:
        found = self._expanded.get(url, _UNKNOWN)
        if found is not _UNKNOWN:
            return found  # type: ignore[return-value]
        value_set = self.resource(url)
        pairs: Pairs | None = None
        if value_set is not None and value_set.get("resourceType") == "ValueSet":
            try:
                pairs = frozenset(value_set_pairs(value_set, self.resource))
            except (NotExpandable, RecursionError, KeyError, TypeError):
                pairs = None
        with self._lock:
            self._expanded[url] = pairs
        return pairs

    def __call__(self, value_set: str, system: str | None, code: str) -> bool | None:
        pairs = self.expansion(value_set)
        if pairs is None:
            return None
        if system is None:
            return any(found == code for _, found in pairs)
        return (system, code) in pairs


def code_check(holdings: Holdings) -> CodeCheck:
    """The CodeCheck profile validation uses over ``holdings`` (swap point for the terminology
    service)."""
    check: Callable[[str, str | None, str], bool | None] = StoredValueSets(holdings)
    return check
