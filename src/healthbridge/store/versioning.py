"""Version rules shared by every backend: https://hl7.org/fhir/R4/http.html#versioning.

* create (http.html#create) stores version 1; a client-chosen id that already exists (even as a
  delete) is a Conflict, because history keeps every version under that id.
* update (http.html#update) stores the next version; an absent or deleted resource is created
  ("update as create"); ``If-Match`` (http.html#concurrency) must equal the current version id,
  else PreconditionFailed, also when there is no current version. The current version of a
  deleted resource is its delete version.
* delete (http.html#delete) records a version without content; deleting nothing returns None.

:class:`VersionWriter` implements these rules once over three storage primitives, so the memory
fake and the SQL backends cannot drift apart.
"""

from __future__ import annotations

import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from healthbridge.fhir.errors import (
    Conflict,
    FhirError,
    Gone,
    InvalidRequest,
    NotFound,
    PreconditionFailed,
)
from healthbridge.fhir.meta import stamped_bytes
from healthbridge.fhir.types import Resource
from healthbridge.store.instants import Clock, next_instant
from healthbridge.store.repository import Applied, Change, ChangeFailed, Method, StoredResource

# https://hl7.org/fhir/R4/datatypes.html#id and the resource type names of R4.
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")
ATTEMPTS = 3
"""Reads of the current version one update or delete may make while others change it."""


@dataclass(frozen=True, slots=True)
class Current:
    """What a writer needs to know about the current version of one resource."""

    version_id: int
    last_updated: datetime
    deleted: bool


def new_id() -> str:
    """A server-assigned logical id."""
    return str(uuid.uuid4())


def is_valid_key(resource_type: str, id: str) -> bool:
    return _TYPE.fullmatch(resource_type) is not None and _ID.fullmatch(id) is not None


def require_valid_key(resource_type: str, id: str) -> None:
    if not is_valid_key(resource_type, id):
        raise InvalidRequest(
            f"{resource_type!r}/{id!r} is not a valid resource type and id "
            "(ids are 1-64 of A-Z a-z 0-9 - .)",
            code="value",
        )


def not_found(resource_type: str, id: str, version_id: int | None = None) -> NotFound:
    what = f"{resource_type}/{id}" + ("" if version_id is None else f"/_history/{version_id}")
    return NotFound(f"Resource {what} is not known")


def require_live(stored: StoredResource) -> StoredResource:
    """``stored`` itself, or Gone when it is a delete (http.html#read: 410 after delete)."""
    if stored.deleted:
        raise Gone(
            f"Resource {stored.resource_type}/{stored.id} was deleted "
            f"(version {stored.version_id})",
            headers={"ETag": stored.etag},
        )
    return stored


def check_if_match(
    resource_type: str, id: str, current: Current | None, if_match: int | None
) -> None:
    if if_match is None:
        return
    if current is None:
        raise PreconditionFailed(
            f"If-Match version {if_match} given but {resource_type}/{id} does not exist"
        )
    if current.version_id != if_match:
        raise PreconditionFailed(
            f"If-Match version {if_match} does not match the current version "
            f"{current.version_id} of {resource_type}/{id}"
        )


def next_version(
    clock: Clock,
    resource_type: str,
    id: str,
    *,
    current: Current | None,
    method: Method,
    resource: Resource | None,
) -> StoredResource:
    """The version after ``current``; ``resource`` None makes a delete."""
    version_id = 1 if current is None else current.version_id + 1
    last_updated = next_instant(clock, None if current is None else current.last_updated)
    content = (
        b""
        if resource is None
        else stamped_bytes(resource, resource_type, id, version_id, last_updated)
    )
    return StoredResource(
        resource_type, id, version_id, last_updated, resource is None, content, method
    )


class Contended(Conflict):
    """Another writer changed the resource between our read and our write, every attempt."""


class VersionWriter(ABC):
    """create / update / delete of one unit of work, over three storage primitives.

    ``_insert_next`` is a compare-and-set on the version read by ``_current``: a writer that holds
    the current row locked always succeeds; a lock-free writer retries with a fresh read, up to
    ``attempts`` times, and then raises :class:`Contended`.
    """

    def __init__(self, clock: Clock, attempts: int = ATTEMPTS) -> None:
        self._clock = clock
        self._attempts = attempts

    @abstractmethod
    async def _current(self, resource_type: str, id: str) -> Current | None:
        """The current version (locked against concurrent writers, if this writer locks)."""

    @abstractmethod
    async def _insert_first(self, stored: StoredResource, resource: Resource) -> bool:
        """Store version 1 (``resource`` is its content before stamping, for search indexes)
        with its history and outbox rows; False if the id exists already."""

    @abstractmethod
    async def _insert_next(self, stored: StoredResource, resource: Resource | None) -> bool:
        """Replace version ``stored.version_id - 1`` (``resource`` None for a delete) and add
        history and outbox rows; False (and nothing written) if the current version is no
        longer that one."""

    async def create(
        self, resource_type: str, resource: Resource, id: str | None = None
    ) -> StoredResource:
        if id is None:
            id = new_id()
        require_valid_key(resource_type, id)
        stored = next_version(
            self._clock, resource_type, id, current=None, method="create", resource=resource
        )
        if not await self._insert_first(stored, resource):
            raise Conflict(f"Resource {resource_type}/{id} already exists", code="duplicate")
        return stored

    async def update(
        self, resource_type: str, id: str, resource: Resource, if_match: int | None = None
    ) -> tuple[StoredResource, bool]:
        require_valid_key(resource_type, id)
        for _ in range(self._attempts):
            current = await self._current(resource_type, id)
            check_if_match(resource_type, id, current, if_match)
            stored = next_version(
                self._clock, resource_type, id, current=current, method="update", resource=resource
            )
            if current is None:
                if await self._insert_first(stored, resource):
                    return stored, True
            elif await self._insert_next(stored, resource):
                return stored, current.deleted
            # A concurrent writer changed it after we looked: build on its version instead.
        raise _contended(resource_type, id)

    async def delete(
        self, resource_type: str, id: str, if_match: int | None = None
    ) -> StoredResource | None:
        require_valid_key(resource_type, id)
        for _ in range(self._attempts):
            current = await self._current(resource_type, id)
            check_if_match(resource_type, id, current, if_match)
            if current is None or current.deleted:
                return None
            stored = next_version(
                self._clock, resource_type, id, current=current, method="delete", resource=None
            )
            if await self._insert_next(stored, None):
                return stored
        raise _contended(resource_type, id)

    async def apply(self, changes: Sequence[Change]) -> list[Applied]:
        """The changes one after the other; the first failure is :class:`ChangeFailed`."""
        applied: list[Applied] = []
        for index, change in enumerate(changes):
            try:
                applied.append(await self._apply_one(change))
            except FhirError as exc:
                raise ChangeFailed(index, exc) from exc
        return applied

    async def _apply_one(self, change: Change) -> Applied:
        if change.method == "delete":
            return Applied(
                await self.delete(change.resource_type, change.id, change.if_match), False
            )
        if change.resource is None:
            raise InvalidRequest(f"A {change.method} needs a resource")
        if change.method == "create":
            return Applied(
                await self.create(change.resource_type, change.resource, change.id), True
            )
        stored, created = await self.update(
            change.resource_type, change.id, change.resource, change.if_match
        )
        return Applied(stored, created)


def _contended(resource_type: str, id: str) -> Contended:
    return Contended(f"Resource {resource_type}/{id} is being changed concurrently; retry")
