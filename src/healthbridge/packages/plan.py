"""What installing each resource of a package does, and the transaction that does it.

https://hl7.org/fhir/packages.html, conditional update https://hl7.org/fhir/R4/http.html#cond-update
and transactions https://hl7.org/fhir/R4/http.html#transaction.

Identity rules (one :class:`Step` per resource):

* A conformance resource with a canonical ``url`` is the resource with that ``url`` and
  ``version`` (no ``version``: the one without a version). When the server has it, the install
  updates it in place (its id stays whatever it is), or leaves it untouched when the content is
  the same (``meta.versionId`` and ``meta.lastUpdated`` aside). When the server does not, it is
  created under the package's id if that id is a valid FHIR id, is not already taken by another
  resource of the type (other versions of the same canonical included: versions live side by
  side) and no earlier resource of the package claimed it; otherwise under a new server id. The
  write is a conditional update ``PUT Type?url=..&version=..``, so two installs racing cannot
  make duplicates.
* Any other resource (examples; NamingSystem, which has no url in R4) keeps its id:
  ``PUT Type/id``, created, updated or left untouched the same way. A resource without a usable
  id gets a stable one derived from the package and the file name, so that installing again
  finds it. Examples overwrite a resource of the same type and id, as loading examples means.
* A second resource of the package with the same canonical ``url|version``, or the same
  ``Type/id``, is passed over with a warning.

Every change goes into one transaction Bundle, written through the service layer (validation,
indexing, the outbox and the audit trail apply): the package is installed whole or not at all.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import Gone, NotFound
from healthbridge.fhir.types import Resource
from healthbridge.packages.selection import Candidate, is_canonical
from healthbridge.rest.service import FhirService
from healthbridge.store.repository import StoredResource

Action = Literal["create", "update", "unchanged"]
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_ESCAPE = str.maketrans({"\\": "\\\\", ",": "\\,", "|": "\\|", "$": "\\$"})


@dataclass(frozen=True, slots=True)
class Step:
    """One resource's install: ``id`` is where it is (or will be) stored, None when the server
    assigns one; ``request`` the transaction entry's request (None when unchanged)."""

    candidate: Candidate
    action: Action
    id: str | None
    resource: Resource
    request: dict[str, str] | None

    @property
    def type(self) -> str:
        return self.candidate.type

    @property
    def url(self) -> str | None:
        found = self.resource.get("url")
        return found if isinstance(found, str) else None

    @property
    def version(self) -> str | None:
        found = self.resource.get("version")
        return found if isinstance(found, str) else None


@dataclass(slots=True)
class Plan:
    steps: list[Step] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def changes(self) -> list[Step]:
        return [s for s in self.steps if s.action != "unchanged"]

    def bundle(self) -> Resource:
        """The transaction Bundle of every change, in step order."""
        entries = [{"resource": s.resource, "request": s.request} for s in self.changes]
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def comparable(resource: Resource) -> Resource:
    """The content that matters for "unchanged": without the server's meta elements."""
    meta = {
        k: v
        for k, v in (resource.get("meta") or {}).items()
        if k not in ("versionId", "lastUpdated")
    }
    out = {k: v for k, v in resource.items() if k != "meta"}
    return out | {"meta": meta} if meta else out


def same(stored: StoredResource, resource: Resource) -> bool:
    return comparable(jsonformat.loads(stored.content)) == comparable(resource)


def stable_id(package: str, file: str) -> str:
    """The id of a resource the package gives without a usable one (the same on every install)."""
    return "pkg-" + hashlib.sha256(f"{package}\n{file}".encode()).hexdigest()[:40]


def criteria(url: str, version: str | None) -> str:
    """``url=..&version=..`` (search.html#escaping; no version: ``version:missing=true``)."""
    pairs = [("url", url.translate(_ESCAPE))]
    pairs.append(
        ("version", version.translate(_ESCAPE)) if version else ("version:missing", "true")
    )
    return urlencode(pairs)


class Planner:
    """Decides each resource's :class:`Step` by looking at what the server holds."""

    def __init__(self, service: FhirService, package: str) -> None:
        self.service = service
        self.package = package
        self.plan = Plan()
        self._ids: set[str] = set()
        self._canonicals: dict[tuple[str, str, str | None], str] = {}

    async def add(self, candidate: Candidate) -> None:
        resource = candidate.resource
        url = resource.get("url")
        if (
            candidate.kind == "conformance"
            and isinstance(url, str)
            and is_canonical(self.service.definitions, candidate.type)
        ):
            await self._canonical(candidate, url)
        else:
            await self._by_id(candidate)

    async def _read(self, resource_type: str, id: str) -> StoredResource | None:
        try:
            return await self.service.repository.read(resource_type, id)
        except (NotFound, Gone):
            return None

    async def _canonical(self, candidate: Candidate, url: str) -> None:
        version = candidate.resource.get("version")
        version = version if isinstance(version, str) else None
        identity = (candidate.type, url, version)
        if identity in self._canonicals:
            self.plan.warnings.append(
                f"{candidate.file}: {url}|{version or ''} is also in "
                f"{self._canonicals[identity]}; installed that one only"
            )
            return
        self._canonicals[identity] = candidate.file
        where = criteria(url, version)
        query, _ = self.service.criteria(candidate.type, where, "A package install")
        found = await self.service.single_match(query, f"{candidate.type}?{where}")
        request = {"method": "PUT", "url": f"{candidate.type}?{where}"}
        if found is not None:
            body = candidate.resource | {"id": found.id}
            action: Action = "unchanged" if same(found, body) else "update"
            self._claim(candidate.type, found.id)
            self._step(candidate, action, found.id, body, request)
            return
        given = candidate.resource.get("id")
        free = isinstance(given, str) and _ID.fullmatch(given) is not None
        if free and (f"{candidate.type}/{given}" in self._ids or await self._taken(candidate)):
            free = False
        body = {k: v for k, v in candidate.resource.items() if k != "id"}
        if free and isinstance(given, str):
            body = candidate.resource
            self._claim(candidate.type, given)
        self._step(candidate, "create", given if free else None, body, request)

    async def _taken(self, candidate: Candidate) -> bool:
        return await self._read(candidate.type, str(candidate.resource["id"])) is not None

    async def _by_id(self, candidate: Candidate) -> None:
        given = candidate.resource.get("id")
        id = given if isinstance(given, str) and _ID.fullmatch(given) else None
        id = id or stable_id(self.package, candidate.file)
        if f"{candidate.type}/{id}" in self._ids:
            self.plan.warnings.append(
                f"{candidate.file}: {candidate.type}/{id} is also another resource of the "
                "package; installed the first one only"
            )
            return
        self._claim(candidate.type, id)
        body = candidate.resource | {"id": id}
        found = await self._read(candidate.type, id)
        action: Action = (
            "create" if found is None else "unchanged" if same(found, body) else "update"
        )
        self._step(candidate, action, id, body, {"method": "PUT", "url": f"{candidate.type}/{id}"})

    def _claim(self, resource_type: str, id: str) -> None:
        self._ids.add(f"{resource_type}/{id}")

    def _step(
        self,
        candidate: Candidate,
        action: Action,
        id: str | None,
        body: Resource,
        request: dict[str, str],
    ) -> None:
        step = Step(candidate, action, id, body, None if action == "unchanged" else request)
        self.plan.steps.append(step)


def assigned_ids(plan: Plan, response: Any) -> list[Step]:
    """The plan's steps with the ids the transaction response gives the changed ones
    (``response.location``: ``Type/id/_history/n``)."""
    entries = response.get("entry") if isinstance(response, dict) else None
    locations = iter(
        str((e.get("response") or {}).get("location", ""))
        for e in entries or []
        if isinstance(e, dict)
    )
    steps = []
    for step in plan.steps:
        if step.action == "unchanged":
            steps.append(step)
            continue
        parts = next(locations, "").split("/")
        id = parts[1] if len(parts) >= 2 and parts[0] == step.type else step.id
        steps.append(Step(step.candidate, step.action, id, step.resource, step.request))
    return steps
