"""A transaction Bundle: https://hl7.org/fhir/R4/http.html#transaction and #trules.

All writes are one database transaction: they all commit or none does, and an error names the
entry at fault (``Bundle.entry[3]``). Processing follows the spec's rules:

1. Every entry is read and checked (:mod:`.entries`) and the limits applied before anything runs.
2. Conditional references (``Patient?identifier=sys|v``) are resolved by search to exactly one
   resource; none or several fail the transaction (412).
3. Each write gets its identity, in the spec's order (DELETE, POST, PUT/PATCH): a new id for a
   create, the URL's id for an update, or the resource a conditional entry's search finds
   (``ifNoneExist``, ``PUT/DELETE/PATCH [type]?criteria``). Two writes to one identity fail the
   transaction (400).
4. ``fullUrl``s (``urn:uuid:``, ``urn:oid:`` or URLs) and conditional references are replaced
   in every resource (:mod:`healthbridge.fhir.references`); patches are applied; every resource
   is validated.
5. The writes run as one group (:meth:`~healthbridge.store.repository.Repository.apply`). When
   any entry is conditional, steps 3-5 run inside a unit of work that first takes a lock per
   criteria, so concurrent transactions with the same conditions take turns (race-free
   conditional creates).
6. GET and HEAD entries are answered after the writes commit (they see the transaction's
   result) through the same router as plain requests.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import (
    FhirError,
    InvalidRequest,
    NotFound,
    PreconditionFailed,
)
from healthbridge.fhir.references import Links, find_links, rewrite
from healthbridge.fhir.types import Resource
from healthbridge.rest.bundle.entries import ORDER, WRITES, Entry, at
from healthbridge.rest.bundle.responses import write_entry
from healthbridge.rest.service import FhirService
from healthbridge.store.repository import (
    Applied,
    Change,
    ChangeFailed,
    StoredResource,
    Transaction,
)
from healthbridge.store.versioning import new_id

Read = Callable[[str, str], Awaitable[StoredResource]]
Answer = Callable[[Entry], Awaitable[dict[str, Any]]]
"""Answers a GET/HEAD entry through the router (:mod:`.replay`)."""


@dataclass(slots=True)
class _Step:
    """What one write entry will do, once its identity is known."""

    entry: Entry
    change: Change | None = None  # None: nothing to write (a match of ifNoneExist, no delete)
    found: StoredResource | None = None  # the existing resource an ifNoneExist matched
    patch: Any = None


@dataclass(slots=True)
class _Plan:
    steps: list[_Step] = field(default_factory=list)
    identities: dict[str, int] = field(default_factory=dict)  # "Type/id" -> entry index
    links: dict[str, str] = field(default_factory=dict)  # fullUrl / conditional ref -> Type/id


class TransactionRun:
    """One transaction Bundle's entries, run by :meth:`run`."""

    def __init__(
        self,
        service: FhirService,
        entries: list[Entry],
        answer: Answer,
        prefer: str,
        base_url: str = "",
    ) -> None:
        self.service = service
        self.entries = entries
        self.answer = answer
        self.prefer = prefer
        self.base_url = base_url
        self._links: dict[int, Links] = {}

    async def run(self) -> list[dict[str, Any]]:
        """The response entries, in the order of the request's entries."""
        writes = sorted((e for e in self.entries if e.method in WRITES), key=_order)
        for entry in self.entries:
            self._check_type(entry)
        _check_full_urls(self.entries)
        links = await self._resolve_references(writes)
        conditional = [e for e in writes if e.conditional]
        if conditional:
            names = [self._criteria(e)[1] for e in conditional]
            for entry in writes:  # the features' network lookups, before the locks are held
                if isinstance(entry.resource, dict):
                    try:
                        await self.service.prepare_write(entry.resource_type, entry.resource)
                    except FhirError as exc:
                        raise at(entry, exc) from None
            async with self.service.locked(names) as tx:
                plan = await self._plan(writes, links, tx.read)
                applied = await self._apply(plan, tx)
        else:
            plan = await self._plan(writes, links, self.service.repository.read)
            applied = await self._apply(plan, None)
        await self.service.written(*(a.stored for a in applied if a is not None))
        answers = {
            s.entry.index: write_entry(s.found, a, self.prefer, self.base_url)
            for s, a in zip(plan.steps, applied, strict=True)
        }
        for entry in self.entries:
            if entry.method not in WRITES:
                answers[entry.index] = await self.answer(entry)
        return [answers[entry.index] for entry in self.entries]

    # -- checks ---------------------------------------------------------------------------
    def _check_type(self, entry: Entry) -> None:
        """Unknown types and malformed ids fail the transaction before anything is written,
        reads included (a read of a type this server does not have could never succeed)."""
        if entry.method not in WRITES and entry.resource_type[:1] in ("", "_", "$"):
            return  # a system-level read: [base]?..., _history, $operation
        try:
            self.service.check_type(entry.resource_type)
            if entry.method in WRITES:
                self.service.check_writable(entry.resource_type)
            if entry.id is not None:
                self.service.check_id(entry.id)
        except FhirError as exc:
            raise at(entry, exc) from None

    def _criteria(self, entry: Entry) -> tuple[Any, str]:
        criteria = entry.if_none_exist if entry.method == "POST" else entry.query
        assert criteria is not None
        criteria = criteria.lstrip("?").removeprefix(f"{entry.resource_type}?")
        what = "ifNoneExist" if entry.method == "POST" else f"A conditional {entry.method}"
        try:
            return self.service.criteria(entry.resource_type, criteria, what)
        except FhirError as exc:
            raise at(entry, exc) from None

    # -- step 2: conditional references ----------------------------------------------------
    async def _resolve_references(self, writes: Sequence[Entry]) -> dict[str, str]:
        """Find, in one pass per resource, the strings that may need replacing; resolve the
        conditional references among them."""
        targets = {e.full_url for e in writes if e.full_url is not None}
        lengths = {len(target) for target in targets}
        resolved: dict[str, str] = {}
        for entry in writes:
            if entry.method not in ("POST", "PUT"):
                continue
            found = find_links(entry.resource, targets, lengths)
            self._links[entry.index] = found
            for reference in sorted(found.conditional):
                if reference not in resolved:
                    resolved[reference] = await self._resolve(entry, reference)
        return resolved

    async def _resolve(self, entry: Entry, reference: str) -> str:
        resource_type, _, criteria = reference.partition("?")
        try:
            self.service.check_type(resource_type)
            query, _ = self.service.criteria(resource_type, criteria, "A conditional reference")
            found = (await self.service.repository.search(query)).matches
        except FhirError as exc:
            raise at(entry, exc) from None
        if len(found) != 1:
            how = "no resource" if not found else "several resources"
            raise at(
                entry,
                PreconditionFailed(
                    f"The conditional reference {reference} matches {how}; it must match "
                    "exactly one",
                    code="not-found" if not found else "multiple-matches",
                ),
            )
        return f"{resource_type}/{found[0].id}"

    # -- step 3-4: identities, links, patches, validation ---------------------------------
    async def _plan(self, writes: Sequence[Entry], links: dict[str, str], read: Read) -> _Plan:
        plan = _Plan(links=dict(links))
        for entry in writes:
            try:
                step = await self._identify(entry, read)
            except FhirError as exc:
                raise at(entry, exc) from None
            plan.steps.append(step)
            self._claim(plan, step)
        for step in plan.steps:
            try:
                await self._finish(step, plan.links, read)
            except FhirError as exc:
                raise at(step.entry, exc) from None
        return plan

    async def _identify(self, entry: Entry, read: Read) -> _Step:
        kind = entry.resource_type
        if entry.method == "POST":
            if entry.if_none_exist is not None:
                found = await self._match(entry, allow_none=True)
                if found is not None:
                    return _Step(entry, found=found)
            return _Step(entry, Change("create", kind, new_id(), entry.resource))
        target = entry.id
        if target is None:
            found = await self._match(entry, allow_none=entry.method != "PATCH")
            if found is None and entry.method == "DELETE":
                return _Step(entry)
            target = found.id if found is not None else _given_id(entry.resource) or new_id()
        if entry.method == "PUT":
            _check_body_id(entry.resource, target)
        if entry.method == "DELETE":
            return _Step(entry, Change("delete", kind, target, None, entry.if_match))
        if entry.method == "PATCH":
            return _Step(
                entry, Change("update", kind, target, None, entry.if_match), patch=entry.resource
            )
        return _Step(entry, Change("update", kind, target, entry.resource, entry.if_match))

    async def _match(self, entry: Entry, *, allow_none: bool) -> StoredResource | None:
        query, _ = self._criteria(entry)
        found = await self.service.single_match(query, entry.if_none_exist or entry.url)
        if found is None and not allow_none:
            raise NotFound(f"The criteria {entry.url} match no resource")
        return found

    def _claim(self, plan: _Plan, step: _Step) -> None:
        entry = step.entry
        identity = (
            f"{step.change.resource_type}/{step.change.id}"
            if step.change is not None
            else f"{step.found.resource_type}/{step.found.id}"
            if step.found is not None
            else None
        )
        if identity is None:
            return
        if step.change is not None:
            earlier = plan.identities.get(identity)
            if earlier is not None:
                raise at(
                    entry,
                    InvalidRequest(
                        f"{identity} is also written by Bundle.entry[{earlier}]; a transaction "
                        "may change each resource only once",
                        code="duplicate",
                    ),
                )
            plan.identities[identity] = entry.index
        if entry.full_url and entry.method != "DELETE":
            plan.links[entry.full_url] = identity

    async def _finish(self, step: _Step, links: dict[str, str], read: Read) -> None:
        """Replace links in the entry's resource, apply its patch, validate it."""
        change = step.change
        if change is None or change.method == "delete":
            return
        if step.patch is not None:
            rewrite(step.patch, links)
            current = await read(change.resource_type, change.id)
            if change.if_match is not None and change.if_match != current.version_id:
                raise PreconditionFailed(
                    f"ifMatch version {change.if_match} does not match the current version "
                    f"{current.version_id} of {change.resource_type}/{change.id}"
                )
            patched = self.service.apply_patch(
                change.resource_type,
                change.id,
                jsonformat.loads(current.content),
                _patch_document(step.patch),
            )
            await self.service.check_write(change.resource_type, patched)
            step.change = replace(change, resource=patched, if_match=current.version_id)
            return
        resource = change.resource
        assert isinstance(resource, dict)
        self._links[step.entry.index].rewrite(links)
        if change.method == "update":
            resource["id"] = change.id
        self.service.check_body(change.resource_type, resource)
        await self.service.check_write(change.resource_type, resource)

    # -- step 5: the writes ------------------------------------------------------------------
    async def _apply(self, plan: _Plan, tx: Transaction | None) -> list[Applied | None]:
        changes = [s.change for s in plan.steps if s.change is not None]
        owners = [s for s in plan.steps if s.change is not None]
        try:
            if tx is not None:
                applied = await tx.apply(changes)
            else:
                applied = await self.service.repository.apply(changes)
        except ChangeFailed as failed:
            raise at(owners[failed.index].entry, failed.error) from None
        by_step = iter(applied)
        return [next(by_step) if s.change is not None else None for s in plan.steps]


def _order(entry: Entry) -> tuple[int, int]:
    return ORDER[entry.method], entry.index


def _check_full_urls(entries: Sequence[Entry]) -> None:
    seen: dict[str, int] = {}
    for entry in entries:
        if entry.full_url is None or entry.method not in WRITES:
            continue
        if entry.full_url in seen:
            raise at(
                entry,
                InvalidRequest(
                    f"fullUrl {entry.full_url} is also the fullUrl of "
                    f"Bundle.entry[{seen[entry.full_url]}]",
                    code="duplicate",
                ),
            )
        seen[entry.full_url] = entry.index


def _given_id(resource: Any) -> str | None:
    given = resource.get("id") if isinstance(resource, dict) else None
    return given if isinstance(given, str) else None


def _check_body_id(resource: Resource, target: str) -> None:
    given = _given_id(resource)
    if given is not None and given != target:
        raise InvalidRequest(
            f"The resource's id {given!r} must be {target!r}, the id of the resource updated",
            code="invalid",
        )


def _patch_document(body: Resource) -> Any:
    """A PATCH entry's resource: a Parameters (FHIRPath Patch) as is, or a Binary holding a
    JSON Patch document (http.html#patch, "in a transaction")."""
    if body.get("resourceType") == "Parameters":
        return body
    if body.get("resourceType") == "Binary":
        content_type = str(body.get("contentType", ""))
        if content_type.split(";", maxsplit=1)[0].strip() != "application/json-patch+json":
            raise InvalidRequest(
                "A PATCH entry's Binary must have contentType application/json-patch+json",
                code="not-supported",
            )
        try:
            return jsonformat.loads(base64.b64decode(str(body.get("data", "")), validate=True))
        except (binascii.Error, ValueError):
            raise InvalidRequest("The Binary's data is not base64 JSON", code="invalid") from None
    raise InvalidRequest(
        "A PATCH entry's resource must be a Parameters (FHIRPath Patch) or a Binary holding a "
        "JSON Patch",
        code="not-supported",
    )
