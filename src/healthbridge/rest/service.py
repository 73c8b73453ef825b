"""The FHIR service layer: the one path every interaction takes to storage.

https://hl7.org/fhir/R4/http.html. HTTP handlers, and later bundles and features, call this
class; it checks resource types and ids, validates every write against the R4 definitions, and
then calls the repository (which stamps ids and meta and writes the outbox event).
"""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any

from healthbridge.fhir import jsonformat
from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import (
    Conflict,
    InvalidRequest,
    Issue,
    NotFound,
    PreconditionFailed,
    Unprocessable,
)
from healthbridge.fhir.patch.json_patch import apply_json_patch
from healthbridge.fhir.types import Resource
from healthbridge.fhir.validation import Validator
from healthbridge.store.repository import HistoryPage, HistoryQuery, Repository, StoredResource

PATCH_ATTEMPTS = 12
"""Tries of one PATCH without If-Match while other writers change the resource; each round at
least one writer succeeds, so this many concurrent patches of one resource all get through."""

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


class FhirService:
    def __init__(self, repository: Repository, definitions: Definitions, validator: Validator):
        self.repository = repository
        self.definitions = definitions
        self.validator = validator

    # -- checks ---------------------------------------------------------------------------
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
        return body

    def validate(self, body: Any, resource_type: str | None) -> list[Issue]:
        return self.validator.validate(body, resource_type)

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
        self.check_type(resource_type)
        resource = self.check_body(resource_type, body)
        return await self.repository.create(resource_type, resource)

    async def update(
        self, resource_type: str, id: str, body: Any, if_match: int | None
    ) -> tuple[StoredResource, bool]:
        """https://hl7.org/fhir/R4/http.html#update: body id must equal the URL id."""
        self.check_type(resource_type)
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
        return await self.repository.update(resource_type, id, resource, if_match)

    async def patch(
        self, resource_type: str, id: str, patch: Any, if_match: int | None
    ) -> StoredResource:
        """https://hl7.org/fhir/R4/http.html#patch (JSON Patch): the current version patched,
        checked as an update is, and stored as the next version. Without ``If-Match`` the patch
        applies to whatever version is current when it is stored: when another writer gets in
        between, it is applied again to the newer version (up to :data:`PATCH_ATTEMPTS`
        times, with a jittered pause)."""
        self.check_type(resource_type)
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
            patched = apply_json_patch(jsonformat.loads(current.content), patch)
            resource = self._patched(resource_type, id, patched)
            try:
                stored, _ = await self.repository.update(
                    resource_type, id, resource, current.version_id
                )
            except PreconditionFailed:
                if if_match is not None:
                    raise
                continue  # changed since we read it: patch the newer version
            return stored
        raise Conflict(f"{resource_type}/{id} is being changed concurrently; retry the PATCH")

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
        self.check_type(resource_type)
        self.check_id(id)
        return await self.repository.delete(resource_type, id, if_match)

    async def history(self, query: HistoryQuery) -> HistoryPage:
        if query.resource_type is not None:
            self.check_type(query.resource_type)
        if query.id is not None:
            self.check_id(query.id)
        return await self.repository.history(query)
