"""The storage contract every backend implements (memory fake, SQLite, PostgreSQL).

Semantics follow the FHIR RESTful API (https://hl7.org/fhir/R4/http.html): every change makes a
new version; ``versionId`` counts 1, 2, 3... per resource; a delete is a version with no content;
history keeps every version. Every committed change also writes one :class:`OutboxEvent` in the same
database transaction, so that side effects (subscriptions, audit export, workflow) are never lost
and never describe a write that did not commit.

``Repository.create``/``update``/``delete`` are each a unit of work of their own: when one
returns, its change is committed and durable; when it raises, nothing of it was written (save the
case no database can rule out: a connection lost while the server commits). A backend may commit
several concurrent ones together (group commit), but one failing never affects another, and a
failed commit fails every one of them with ``Unavailable``.

Errors are raised from :mod:`healthbridge.fhir.errors`: ``NotFound`` (never existed),
``Gone`` (current version is a delete), ``PreconditionFailed`` (If-Match mismatch),
``Conflict`` (create with an id that exists), ``Unavailable`` (database unreachable; nothing was
written).

Backends receive resources that the REST layer has already validated; they set ``id`` and
``meta.versionId``/``meta.lastUpdated`` themselves (client values are overridden) and store the
encoded bytes once. Reads return those exact bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import FhirError
from healthbridge.fhir.search.query import SearchQuery
from healthbridge.fhir.types import Resource
from healthbridge.store.audit import AuditLog
from healthbridge.store.jobs import JobStore
from healthbridge.store.records import RecordStore
from healthbridge.store.reindexing import Reindexer
from healthbridge.store.subscriptions import DeliveryQueue
from healthbridge.store.terminology import TerminologyStore

Method = Literal["create", "update", "delete"]
VersionKey = tuple[str, str, int]
"""(resource type, id, version id)."""


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One version of one resource as stored."""

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime  # timezone-aware, UTC
    deleted: bool
    content: bytes  # the exact JSON bytes served on read; b"" for a delete
    method: Method

    @property
    def etag(self) -> str:
        return f'W/"{self.version_id}"'


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """History at system (both None), type (id None) or instance level.

    https://hl7.org/fhir/R4/http.html#history: ``since`` keeps versions with
    ``last_updated >= since``; ``at`` keeps, per resource, the version current at that instant.
    ``cursor`` is the opaque ``next_cursor`` of the previous page.
    """

    resource_type: str | None = None
    id: str | None = None
    since: datetime | None = None
    at: datetime | None = None
    count: int = 50
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryPage:
    entries: list[StoredResource]  # newest first
    next_cursor: str | None
    total: int | None  # None when not cheaply known


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    seq: int  # strictly increasing in commit order of a single writer
    resource_type: str
    id: str
    version_id: int
    method: Method
    recorded: datetime
    actor: str | None = None
    """Who made the change (:mod:`healthbridge.store.actor`), as the request set it."""


MAX_INCLUDED = 1000
"""Most resources ``_include``/``_revinclude`` add to one page (the rest are left out and
``SearchPage.included_truncated`` says so)."""


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of a search (https://hl7.org/fhir/R4/search.html).

    ``matches`` are the page's resources in result order (``_sort``, ties broken by a stable
    internal key; without ``_sort`` the order is stable but unspecified). ``included`` holds the
    resources ``_include``/``_revinclude`` (with ``:iterate``) add to this page, live resources
    only, none of them also in ``matches``. ``next_cursor`` is an opaque keyset cursor for the
    next page (None on the last page): page 2 continues after the last resource of page 1 even
    when other resources are written in between. ``total`` is the number of matches when
    ``_total=accurate`` or ``estimate`` or ``_summary=count`` asked for it, or when the whole
    result fits on this first page; otherwise None (``_total=none`` always gives None). With
    ``_summary=count`` the page holds no resources.
    """

    matches: list[StoredResource]
    included: list[StoredResource]
    next_cursor: str | None
    total: int | None
    included_truncated: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    """One write of an atomic group (:meth:`Transaction.apply`): ``create`` stores version 1
    under ``id`` (Conflict if it exists), ``update`` the next version (create-on-update),
    ``delete`` a delete version; ``if_match`` as in the single calls."""

    method: Method
    resource_type: str
    id: str
    resource: Resource | None = None
    if_match: int | None = None


@dataclass(frozen=True, slots=True)
class Applied:
    """What one :class:`Change` did: the version written (None for a delete of nothing) and
    whether it created the resource."""

    stored: StoredResource | None
    created: bool


class ChangeFailed(Exception):
    """Change number ``index`` of :meth:`Transaction.apply` failed with ``error``; the group
    wrote nothing."""

    def __init__(self, index: int, error: FhirError) -> None:
        super().__init__(f"change {index}: {error}")
        self.index = index
        self.error = error


class Transaction(Protocol):
    """A unit of work: every call inside it commits together or not at all. Reads see its writes."""

    async def read(self, resource_type: str, id: str) -> StoredResource: ...

    async def lock(self, name: str) -> None:
        """Wait until no other unit of work holds ``name``, then hold it until this one ends.
        After it returns, ``Repository.search`` sees every unit that held ``name`` before
        (conditional create: search, then create, without a race)."""
        ...

    async def create(
        self, resource_type: str, resource: Resource, id: str | None = None
    ) -> StoredResource:
        """Store version 1. ``id`` None assigns a new UUID; an existing ``id`` raises Conflict."""
        ...

    async def update(
        self, resource_type: str, id: str, resource: Resource, if_match: int | None = None
    ) -> tuple[StoredResource, bool]:
        """Store the next version (create-on-update when absent or deleted).

        Returns ``(stored, created)``. ``if_match`` must equal the current version, else
        PreconditionFailed (also when there is no current version).
        """
        ...

    async def delete(
        self, resource_type: str, id: str, if_match: int | None = None
    ) -> StoredResource | None:
        """Record a delete version; None when there was nothing live to delete."""
        ...

    async def apply(self, changes: Sequence[Change]) -> list[Applied]:
        """``changes`` in order (a FHIR transaction's writes), as cheaply as the backend can;
        the first that fails raises :class:`ChangeFailed` and the unit of work must not
        commit."""
        ...


class Repository(Protocol):
    @property
    def jobs(self) -> JobStore:
        """Background job state (:mod:`healthbridge.store.jobs`)."""
        ...

    @property
    def records(self) -> RecordStore:
        """Small durable key-value state of the authorization server
        (:mod:`healthbridge.store.records`)."""
        ...

    @property
    def terminology(self) -> TerminologyStore:
        """Large code systems loaded from release files (:mod:`healthbridge.store.terminology`)."""
        ...

    @property
    def audit(self) -> AuditLog:
        """The tamper-evident audit trail (:mod:`healthbridge.store.audit`)."""
        ...

    @property
    def subscriptions(self) -> DeliveryQueue:
        """The durable delivery queue of subscription notifications
        (:mod:`healthbridge.store.subscriptions`)."""
        ...

    @property
    def reindexer(self) -> Reindexer:
        """Rebuilds stored resources' search indexes (:mod:`healthbridge.store.reindexing`)."""
        ...

    def use_definitions(self, definitions: Definitions) -> None:
        """Index new writes and search with ``definitions`` from now on (they add custom
        SearchParameters to the core ones)."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """Open a unit of work; leaving the block normally commits, an exception rolls back."""
        ...

    async def read(self, resource_type: str, id: str) -> StoredResource: ...

    async def vread(self, resource_type: str, id: str, version_id: int) -> StoredResource:
        """A specific version; Gone when that version is a delete, NotFound when unknown."""
        ...

    async def versions(self, keys: Sequence[VersionKey]) -> list[StoredResource | None]:
        """Many versions in one read, in the order of ``keys``: each as stored (a delete
        included, ``deleted`` set), None where unknown."""
        ...

    async def history(self, query: HistoryQuery) -> HistoryPage: ...

    async def outbox_since(self, after_seq: int, limit: int = 100) -> list[OutboxEvent]: ...

    async def search(self, query: SearchQuery, cursor: str | None = None) -> SearchPage:
        """One page of ``query`` over the current, live resources; ``cursor`` is the
        ``next_cursor`` of the previous page. A malformed or foreign cursor raises
        InvalidRequest; a search that runs past the statement timeout raises TooCostly."""
        ...

    async def create(
        self, resource_type: str, resource: Resource, id: str | None = None
    ) -> StoredResource: ...

    async def update(
        self, resource_type: str, id: str, resource: Resource, if_match: int | None = None
    ) -> tuple[StoredResource, bool]: ...

    async def delete(
        self, resource_type: str, id: str, if_match: int | None = None
    ) -> StoredResource | None: ...

    async def apply(self, changes: Sequence[Change]) -> list[Applied]:
        """``changes`` in order as one atomic unit of work of their own (a FHIR transaction
        with nothing to search or lock first): all are committed and durable when this returns,
        or :class:`ChangeFailed` names the first that failed and nothing was written."""
        ...

    async def ping(self) -> None:
        """Raise Unavailable when the database cannot answer (readiness probe)."""
        ...

    async def close(self) -> None: ...
