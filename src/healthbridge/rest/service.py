"""The FHIR service layer: the one path every interaction takes to storage.

https://hl7.org/fhir/R4/http.html. HTTP handlers, and later bundles and features, call this
class; it checks resource types and ids, validates every write against the R4 definitions, and
then calls the repository (which stamps ids and meta and writes the outbox event).
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

from healthbridge.fhir import jsonformat
from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import (
    Conflict,
    InvalidRequest,
    Issue,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
    Unprocessable,
)
from healthbridge.fhir.patch.fhirpath_patch import apply_fhirpath_patch
from healthbridge.fhir.patch.json_patch import apply_json_patch
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.fhir.search.query import SearchQuery
from healthbridge.fhir.types import Resource
from healthbridge.fhir.validation import Validator
from healthbridge.rest.profiles import ProfileRules
from healthbridge.rest.write_hooks import WriteHooks, inside_unit_of_work
from healthbridge.security.context import UNRESTRICTED, AccessContext
from healthbridge.store.repository import (
    HistoryPage,
    HistoryQuery,
    Repository,
    StoredResource,
    Transaction,
)

MAX_CONDITIONAL_DELETES = 100
LOCK_STRIPES = 64
CONDITIONAL_AT_ONCE = 4
"""Conditional operations in flight per process. Each holds a unit of work (a connection) and
searches on a second one: waiting for the named lock in process first, and bounding how many
run at once, keeps them from exhausting the connection pool and waiting on each other."""

PATCH_ATTEMPTS = 4
"""Lock-free tries of one PATCH without If-Match while other writers change the resource, before
it takes its turn under a lock (:meth:`FhirService.patch`)."""

SERVER_WRITTEN = frozenset({"AuditEvent"})
"""Types only the server writes: the audit trail (https://hl7.org/fhir/R4/auditevent.html) is
immutable through the API."""

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


class FhirService:
    def __init__(
        self,
        repository: Repository,
        definitions: Definitions,
        validator: Validator,
        search: SearchParser | None = None,
        profiles: ProfileRules | None = None,
        hooks: WriteHooks | None = None,
    ):
        self.repository = repository
        self.hooks = hooks or WriteHooks()
        """Features' checks of writes by type (rest/write_hooks.py)."""
        self.access: AccessContext = UNRESTRICTED
        """Whose requests this service answers (:meth:`using`); the write hooks get it."""
        self.profiles = profiles
        """Profile validation of writes (rest/profiles); None checks the base rules only."""
        self.definitions = definitions
        self.validator = validator
        self.search = search or SearchParser(definitions)
        """Parses conditional operations' criteria (the app passes the parser search uses)."""
        self._stripes = [asyncio.Lock() for _ in range(LOCK_STRIPES)]
        self._conditional = asyncio.Semaphore(CONDITIONAL_AT_ONCE)
        self.unrestricted = repository
        """The repository without any request's access checks: for the server's own lookups
        (terminology expansion, search registry), never for what a client reads."""

    def using(self, repository: Repository, access: AccessContext | None = None) -> FhirService:
        """This service over ``repository`` (one request's access-controlled wrapper of it,
        for ``access``), sharing the locks that serialise conditional operations and PATCH."""
        service = FhirService.__new__(FhirService)
        service.__dict__.update(self.__dict__)  # per request: copy.copy costs 5x as much
        service.repository = repository
        if access is not None:
            service.access = access
        return service

    # -- checks ---------------------------------------------------------------------------
    def check_target(self, resource_type: str) -> None:
        """A write's type: one this server has (404) and one the API may write (405)."""
        self.check_type(resource_type)
        self.check_writable(resource_type)

    @staticmethod
    def check_writable(resource_type: str) -> None:
        """405 for the types only the server writes: the audit trail (``AuditEvent``) is
        immutable through the API, whoever asks, ``--no-auth`` included."""
        if resource_type in SERVER_WRITTEN:
            raise MethodNotAllowed(
                f"{resource_type} resources are written by the server only: they cannot be "
                "created, changed or deleted through the API",
                headers={"Allow": "GET"},
            )

    def check_type(self, resource_type: str) -> None:
        if not self.definitions.is_resource_type(resource_type):
            raise NotFound(
                f"Unknown resource type {resource_type!r}; see /fhir/metadata for the types "
                "this server supports",
                code="not-supported",
            )

    @staticmethod
    def check_id(id: str) -> None:
        if not _ID.fullmatch(id):
            raise InvalidRequest(
                f"{id!r} is not a valid resource id (1-64 characters of A-Z, a-z, 0-9, '-', '.')",
                code="value",
                expression="id",
            )

    def check_body(self, resource_type: str, body: Any) -> Resource:
        """The decoded body must be a resource of the URL's type that passes validation."""
        if not isinstance(body, dict):
            raise InvalidRequest(
                "The body must be a JSON object (a FHIR resource)", code="structure"
            )
        found = body.get("resourceType")
        if found != resource_type:
            raise InvalidRequest(
                f"The body's resourceType is {found!r} but the URL is for {resource_type!r}",
                code="invalid",
                expression="resourceType",
            )
        self.validator.check(body, resource_type)
        if self.profiles is not None:
            self.profiles.check(resource_type, body)  # 422 when it breaks a profile
        return body

    async def prepare_write(self, resource_type: str, resource: Resource) -> None:
        """The features' slow checks ahead of a unit of work (rest/write_hooks.py)."""
        if resource_type in self.hooks:
            await self.hooks.prepare(resource_type, resource, self.access)

    async def check_write(self, resource_type: str, resource: Resource) -> None:
        """The features' checks of a write (rest/write_hooks.py), after :meth:`check_body`."""
        if resource_type in self.hooks:
            await self.hooks.check(resource_type, resource, self.access)

    def validate(self, body: Any, resource_type: str | None) -> list[Issue]:
        return self.validator.validate(body, resource_type)

    async def written(self, *stored: StoredResource | None) -> None:
        """Committed writes: new or changed StructureDefinitions, ValueSets and CodeSystems are
        used by profile validation at once."""
        if self.profiles is not None:
            await self.profiles.catalog.written([s for s in stored if s is not None])
        await self.hooks.written(stored, self.access)

    # -- interactions ---------------------------------------------------------------------
    async def read(self, resource_type: str, id: str) -> StoredResource:
        self.check_type(resource_type)
        self.check_id(id)
        return await self.repository.read(resource_type, id)

    async def vread(self, resource_type: str, id: str, version: str) -> StoredResource:
        self.check_type(resource_type)
        self.check_id(id)
        if not version.isdigit() or len(version) > 18:
            raise NotFound(f"{resource_type}/{id} has no version {version!r}")
        return await self.repository.vread(resource_type, id, int(version))

    async def create(self, resource_type: str, body: Any) -> StoredResource:
        """https://hl7.org/fhir/R4/http.html#create: the body's id (if any) is ignored."""
        self.check_target(resource_type)
        resource = self.check_body(resource_type, body)
        await self.check_write(resource_type, resource)
        stored = await self.repository.create(resource_type, resource)
        await self.written(stored)
        return stored

    async def update(
        self, resource_type: str, id: str, body: Any, if_match: int | None
    ) -> tuple[StoredResource, bool]:
        """https://hl7.org/fhir/R4/http.html#update: body id must equal the URL id."""
        self.check_target(resource_type)
        self.check_id(id)
        if isinstance(body, dict) and body.get("id") != id:
            found = body.get("id")
            raise InvalidRequest(
                f"The body's id ({found!r}) must equal the id in the URL ({id!r})"
                if found is not None
                else f"The body has no id; an update must carry id {id!r} as in the URL",
                code="invalid" if found is not None else "required",
                expression=f"{resource_type}.id",
            )
        resource = self.check_body(resource_type, body)
        await self.check_write(resource_type, resource)
        stored, created = await self.repository.update(resource_type, id, resource, if_match)
        await self.written(stored)
        return stored, created

    def criteria(self, resource_type: str, criteria: str, what: str) -> tuple[SearchQuery, str]:
        """A conditional operation's search (https://hl7.org/fhir/R4/http.html#ccreate), parsed
        strictly (an ignored parameter would widen the match), and the name its units of work
        lock so that two with the same criteria take turns."""
        pairs = parse_qsl(criteria, keep_blank_values=True)
        query = self.search.parse(resource_type, pairs, strict=True)
        if not query.clauses and query.filter is None:
            raise InvalidRequest(f"{what} needs search criteria, e.g. identifier=system|value")
        return replace(query, count=2, includes=(), total=None), f"{resource_type}?{sorted(pairs)}"

    async def single_match(self, query: SearchQuery, criteria: str) -> StoredResource | None:
        """The one resource a conditional operation's ``query`` finds, None when none does;
        several are 412 (http.html#ccreate, #cond-update, #patch)."""
        found = (await self.repository.search(query)).matches
        if len(found) > 1:
            raise PreconditionFailed(
                f"The criteria {criteria} match several resources", code="multiple-matches"
            )
        return found[0] if found else None

    @asynccontextmanager
    async def locked(self, names: Sequence[str]) -> AsyncIterator[Transaction]:
        """A unit of work holding every lock in ``names``, taken in one global order (their
        stripes in this process, then the names in the database) so that two units wanting
        overlapping sets never wait for each other in a circle."""
        stripes = sorted({hash(name) % LOCK_STRIPES for name in names})
        async with AsyncExitStack() as stack:
            for stripe in stripes:
                await stack.enter_async_context(self._stripes[stripe])
            await stack.enter_async_context(self._conditional)
            tx = await stack.enter_async_context(self.repository.transaction())
            for name in sorted(set(names)):
                await tx.lock(name)
            stack.enter_context(inside_unit_of_work())
            yield tx

    async def conditional_create(
        self, resource_type: str, body: Any, criteria: str
    ) -> tuple[StoredResource, bool]:
        """``If-None-Exist``: create unless the criteria match; one match is returned as is
        (False), several are 412. Race-free: concurrent ones with the same criteria take turns."""
        self.check_target(resource_type)
        query, name = self.criteria(resource_type, criteria, "If-None-Exist")
        resource = self.check_body(resource_type, body)
        await self.check_write(resource_type, resource)
        async with self.locked([name]) as tx:
            found = await self.single_match(query, f"If-None-Exist {criteria}")
            if found is not None:
                return found, False
            stored = await tx.create(resource_type, resource)
        await self.written(stored)
        return stored, True

    async def conditional_update(
        self, resource_type: str, body: Any, criteria: str, if_match: int | None
    ) -> tuple[StoredResource, bool]:
        """``PUT [type]?criteria`` (http.html#cond-update): no match creates (with the body's
        id if it has one), one match is updated (the body's id, if any, must be its id),
        several are 412."""
        self.check_target(resource_type)
        query, name = self.criteria(resource_type, criteria, "A conditional update")
        resource = self.check_body(resource_type, body)
        await self.check_write(resource_type, resource)
        async with self.locked([name]) as tx:
            found = await self.single_match(query, criteria)
            target = found.id if found is not None else resource.get("id")
            if found is not None and resource.get("id", target) != target:
                raise InvalidRequest(
                    f"The body's id must be {target!r}, the resource the criteria match",
                    expression=f"{resource_type}.id",
                )
            if isinstance(target, str):
                named = resource | {"id": target}
                result = await tx.update(resource_type, target, named, if_match)
            else:
                result = await tx.create(resource_type, resource), True
        await self.written(result[0])
        return result

    async def conditional_delete(
        self, resource_type: str, criteria: str, *, multiple: bool
    ) -> list[StoredResource]:
        """``DELETE [type]?criteria`` (http.html#cdelete): nothing to delete is fine, one match
        is deleted; several are 412 unless ``multiple`` (a setting), then all are deleted, up to
        :data:`MAX_CONDITIONAL_DELETES`, in one unit of work."""
        self.check_target(resource_type)
        query, name = self.criteria(resource_type, criteria, "A conditional delete")
        limit = MAX_CONDITIONAL_DELETES if multiple else 1
        async with self.locked([name]) as tx:
            page = await self.repository.search(replace(query, count=limit + 1))
            if len(page.matches) > limit:
                raise PreconditionFailed(
                    f"The criteria {criteria} match more than {limit} resource(s)"
                    + ("" if multiple else "; this server deletes one at a time")
                )
            deleted = [await tx.delete(resource_type, found.id) for found in page.matches]
        await self.written(*deleted)
        return [d for d in deleted if d is not None]

    async def conditional_patch(
        self, resource_type: str, criteria: str, patch: Any, if_match: int | None
    ) -> StoredResource:
        """``PATCH [type]?criteria`` (http.html#patch): the one match is patched as
        :meth:`patch` does; no match is 404, several are 412."""
        self.check_target(resource_type)
        query, _ = self.criteria(resource_type, criteria, "A conditional patch")
        found = await self.single_match(query, criteria)
        if found is None:
            raise NotFound(f"The criteria {criteria} match no {resource_type}")
        return await self.patch(resource_type, found.id, patch, if_match)

    async def patch(
        self, resource_type: str, id: str, patch: Any, if_match: int | None
    ) -> StoredResource:
        """https://hl7.org/fhir/R4/http.html#patch: the current version patched (a JSON Patch
        list or a FHIRPath Patch Parameters resource, see :meth:`apply_patch`), checked as an
        update is, and stored as the next version. Without ``If-Match`` the patch applies to
        whatever version is current when it is stored: when another writer gets in between, it
        is applied again to the newer version, first without locks (up to
        :data:`PATCH_ATTEMPTS` times, with a jittered pause), then holding a lock on the
        resource that concurrent patches take turns on, so that every one gets through."""
        self.check_target(resource_type)
        self.check_id(id)
        for attempt in range(PATCH_ATTEMPTS):
            if attempt:  # another writer won the last round: let it finish, then read again
                await asyncio.sleep(random.uniform(0, 0.002 * attempt))  # noqa: S311 - jitter
            current = await self.repository.read(resource_type, id)
            if if_match is not None and current.version_id != if_match:
                raise PreconditionFailed(
                    f"If-Match version {if_match} does not match the current version "
                    f"{current.version_id} of {resource_type}/{id}"
                )
            resource = self.apply_patch(resource_type, id, jsonformat.loads(current.content), patch)
            await self.check_write(resource_type, resource)
            try:
                stored, _ = await self.repository.update(
                    resource_type, id, resource, current.version_id
                )
            except PreconditionFailed:
                if if_match is not None:
                    raise
                continue  # changed since we read it: patch the newer version
            await self.written(stored)
            return stored
        stored = await self._patch_in_turn(resource_type, id, patch)
        await self.written(stored)
        return stored

    async def _patch_in_turn(self, resource_type: str, id: str, patch: Any) -> StoredResource:
        """The patch applied under a lock per resource: concurrent patches queue instead of
        racing; only a writer that does not patch (a PUT, a DELETE) can still get in between,
        and then the patch is applied to its version."""
        async with self.locked([f"patch {resource_type}/{id}"]) as tx:
            for _ in range(PATCH_ATTEMPTS):
                current = await tx.read(resource_type, id)
                resource = self.apply_patch(
                    resource_type, id, jsonformat.loads(current.content), patch
                )
                await self.check_write(resource_type, resource)
                try:
                    stored, _ = await tx.update(resource_type, id, resource, current.version_id)
                except PreconditionFailed:
                    continue
                return stored
        raise Conflict(f"{resource_type}/{id} is being changed concurrently; retry the PATCH")

    def apply_patch(self, resource_type: str, id: str, current: Resource, patch: Any) -> Resource:
        """``current`` patched and checked as an update is (the same type and id, valid).

        ``patch`` is a FHIRPath Patch (a ``Parameters`` resource,
        https://hl7.org/fhir/R4/fhirpatch.html) or a JSON Patch (a list of operations, RFC 6902);
        ``current`` is left as it was. A malformed patch is 400, one that does not apply or
        whose result is not a valid resource 422."""
        if isinstance(patch, dict) and "resourceType" in patch:
            patched = apply_fhirpath_patch(current, patch, self.definitions)
        else:
            patched = apply_json_patch(current, patch)
        return self._patched(resource_type, id, patched)

    def _patched(self, resource_type: str, id: str, patched: Resource) -> Resource:
        if patched.get("resourceType") != resource_type or patched.get("id") != id:
            raise Unprocessable(
                "A PATCH may not change the resource's type or id",
                code="invariant",
                expression=f"{resource_type}.id",
            )
        try:
            return self.check_body(resource_type, patched)
        except InvalidRequest as exc:  # the patched content is not a valid resource: 422
            raise Unprocessable(
                "The patched resource is not valid", issues=list(exc.issues)
            ) from None

    async def delete(
        self, resource_type: str, id: str, if_match: int | None
    ) -> StoredResource | None:
        self.check_target(resource_type)
        self.check_id(id)
        deleted = await self.repository.delete(resource_type, id, if_match)
        await self.written(deleted)
        return deleted

    async def history(self, query: HistoryQuery) -> HistoryPage:
        if query.resource_type is not None:
            self.check_type(query.resource_type)
        if query.id is not None:
            self.check_id(query.id)
        return await self.repository.history(query)
