"""Which live subscriptions a change can trigger, without trying every one.

Subscriptions are mostly about one patient: a Backport filter ``Observation?patient=Patient/1``
(https://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition-backport-filter-criteria.html)
or a classic ``Observation?subject=Patient/1`` (https://hl7.org/fhir/R4/subscription.html). A
reference clause without a modifier other than a target type matches only a resource whose index
holds a reference to one of the clause's ids (search.html#reference, the same test as
:func:`healthbridge.fhir.search.match.matches`). So, per loaded set of subscriptions and per
resource type, such subscriptions are filed under (parameter, referenced id); a change is then
tried against the subscriptions filed under the references it holds and those that have no such
clause, not against all. Trying is unchanged (:meth:`CompiledSubscription.triggers`): this only
leaves out subscriptions that could not match, in their original order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from healthbridge.fhir.search.query import Clause, ReferenceQuery
from healthbridge.fhir.search.values import ReferenceValue
from healthbridge.subscriptions.live import Live
from healthbridge.subscriptions.matching import Change, CompiledSubscription


@dataclass(slots=True)
class _OfType:
    """The subscriptions one resource type's changes can trigger, by position in the set."""

    unkeyed: list[int] = field(default_factory=list)
    keyed: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # param -> id -> at


def key_of(compiled: CompiledSubscription, resource_type: str) -> tuple[str, list[str]] | None:
    """The (parameter, referenced ids) one of whose references a ``resource_type`` change
    needs to trigger ``compiled``; None when no clause says so."""
    if compiled.classic is not None:
        criteria = compiled.classic if compiled.classic.resource_type == resource_type else None
    else:
        criteria = compiled.filters.get(resource_type)
    if criteria is None:
        return None
    for clause in criteria.clauses:
        ids = _referenced_ids(clause)
        if ids:
            return clause.param, ids
    return None


def _referenced_ids(clause: Clause) -> list[str] | None:
    if clause.param_type != "reference" or clause.chain or clause.has:
        return None
    if clause.modifier is not None and not clause.modifier[:1].isupper():  # :missing, :text...
        return None
    ids = []
    for value in clause.values:
        if not isinstance(value, ReferenceQuery) or value.id is None or value.url is not None:
            return None  # a URL or an identifier: left to the full test
        ids.append(value.id)
    return ids


class Candidates:
    """The subscriptions of one loaded set, filed for :meth:`of`."""

    def __init__(self, subscriptions: dict[str, Live]) -> None:
        self._lives = list(subscriptions.values())
        self._types: dict[str, _OfType] = {}
        for at, live in enumerate(self._lives):
            for resource_type in live.compiled.resource_types:
                of_type = self._types.setdefault(resource_type, _OfType())
                key = key_of(live.compiled, resource_type)
                if key is None:
                    of_type.unkeyed.append(at)
                    continue
                param, ids = key
                by_id = of_type.keyed.setdefault(param, {})
                for id in ids:
                    by_id.setdefault(id, []).append(at)
        self.types = frozenset(self._types)
        """The resource types whose changes some subscription can be triggered by."""

    def of(self, change: Change) -> list[Live]:
        """The subscriptions ``change`` might trigger, in the set's order."""
        of_type = self._types.get(change.resource_type)
        if of_type is None:
            return []
        if not of_type.keyed:
            return [self._lives[at] for at in of_type.unkeyed]
        found = set(of_type.unkeyed)
        rows = change.rows(current=change.current is not None)  # the focus, as filters see it
        for param, by_id in of_type.keyed.items():
            found.update(_filed(by_id, rows.get(param, [])))
        return [self._lives[at] for at in sorted(found)]


def _filed(by_id: dict[str, list[int]], values: Iterable[object]) -> Iterable[int]:
    for value in values:
        if isinstance(value, ReferenceValue) and value.target_id is not None:
            yield from by_id.get(value.target_id, ())
