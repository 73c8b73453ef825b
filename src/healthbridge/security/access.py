"""The enforcing repository: every storage call of one request passes the token's grants.

SMART App Launch 2.x, https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html, and
the compartments of https://hl7.org/fhir/R4/compartmentdefinition.html. The app wraps the
repository once per request (ARCHITECTURE.md: ``Audited(AccessControlled(SqlRepository))``), so
every path that reaches storage (read, vread, history, search with chains, ``_has`` and
includes, conditional operations, transactions and batches, operations) is checked in one place:

* each call needs a permission letter on the resource type (:mod:`.decisions`); without one
  the call is refused with 403 (the token's scopes are no secret to its holder);
* a ``patient/`` grant confines the call to the launch patient's compartment: searches are run
  as compartment searches (``Patient/{id}/[type]``), reads and history of resources outside the
  compartment answer the same 404 as resources that never existed, included resources outside
  it are dropped, and writes must keep the resource in that compartment only (403 otherwise:
  a resource may not name another patient, nor be moved to one);
* a ``user/`` grant is confined the same way to the compartments of the user's care set, the
  patients they have a care relationship with (:mod:`.care_team`; searches get an OR over the
  set as ``SearchQuery.within``), unless the policy has no care relationships
  (``user_access = "all"``) or the user is an administrator or holds ``all-patients``; a new
  Patient may be created (registration);
* granular scopes (``patient/Observation.rs?category=laboratory``) become search criteria ORed
  together and ANDed to the query, and reads must match one of them;
* security labels (``meta.security``) the operator marks as hidden keep resources out of reach
  of tokens without the clearance role (:class:`LabelPolicy`), in searches as a ``_security:not``
  criterion and on reads as a 404;
* a consent hook (:class:`ConsentHook`) may deny a resource or narrow a search; the consent
  work of a later issue plugs its decision point in here;
* AuditEvents are read by auditors only (writes of them are refused for everyone, ``--no-auth``
  included, by the service: :meth:`healthbridge.rest.service.FhirService.check_writable`).

Resource types outside the patient compartment (Medication, Organization, Practitioner...) hold
no patient's data: a ``patient/`` grant reads and searches them unconfined but cannot write them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Protocol

from healthbridge.fhir import jsonformat
from healthbridge.fhir.compartments import compartment_owners
from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import FhirError, Forbidden, Gone, InvalidRequest, NotFound
from healthbridge.fhir.search import Indexer
from healthbridge.fhir.search.match import matches
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.fhir.search.query import (
    Clause,
    FilterAnd,
    FilterExpr,
    FilterOr,
    SearchQuery,
)
from healthbridge.fhir.types import Resource
from healthbridge.security.care_team import ALL_PATIENTS, RELATIONSHIP_TYPES, CareRelationships
from healthbridge.security.compartment import (
    PATIENT,
    check_care_write,
    check_patient_write,
    confine,
    passed_through,
)
from healthbridge.security.context import AccessContext
from healthbridge.security.decisions import Decision, decide
from healthbridge.store.repository import (
    Applied,
    Change,
    ChangeFailed,
    HistoryPage,
    HistoryQuery,
    Repository,
    SearchPage,
    StoredResource,
    Transaction,
)
from healthbridge.store.versioning import not_found

AUDITED = "AuditEvent"
CONFORMANCE = frozenset(
    {
        "CapabilityStatement", "CodeSystem", "CompartmentDefinition", "ConceptMap",
        "GraphDefinition", "ImplementationGuide", "MessageDefinition", "NamingSystem",
        "OperationDefinition", "SearchParameter", "StructureDefinition", "StructureMap",
        "TerminologyCapabilities", "ValueSet",
    }
)  # fmt: skip
"""Conformance resources (https://hl7.org/fhir/R4/conformance-module.html) change how the
server behaves for everyone: only administrators and ``system/`` backend services write them."""
WRITES = frozenset({"create", "update", "patch", "delete"})
PRIVATE = frozenset({"Subscription"})
"""Types whose instances belong to the client and user that wrote them, not to a patient's
record: their endpoints and ``channel.header`` values may hold the receiver's credentials.
Only administrators and backend services (system/ scopes) read or search them through the API;
their owners use ``$status`` and ``$events`` (subscriptions/operations.py)."""

CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
INLINE_LABEL = (
    "http://hl7.org/fhir/uv/security-label-ds4p/StructureDefinition/extension-inline-sec-label"
)
"""An element-level security label (HL7 DS4P inline security labels): the element that carries
it is removed from what tokens without clearance see."""
_INLINE_MARK = b"extension-inline-sec-label"
_LABELS_MARK = b'"security"'
"""Stored JSON without this key holds no security label: no need to decode it to look."""
REDACTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "REDACTED",
}


class ConsentHook(Protocol):
    """A consent decision point (https://hl7.org/fhir/R4/consent.html): the consent-management
    work plugs in here. ``permits`` is asked for each resource a request would see; ``narrow``
    may add criteria to a search so that totals and paging never count what is denied."""

    async def permits(self, access: AccessContext, resource: Resource) -> bool: ...

    async def narrow(self, access: AccessContext, query: SearchQuery) -> SearchQuery: ...


class PrivateOwners(Protocol):
    """Who owns a :data:`PRIVATE` resource (a Subscription: the client and user that wrote
    it, recorded by the subscriptions feature). Only its owner, an administrator or a backend
    service may change or delete it; to anyone else it does not exist (404)."""

    async def owns(self, access: AccessContext, resource_type: str, id: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class LabelPolicy:
    """Resources carrying one of ``hidden`` in ``meta.security`` are seen only by tokens whose
    user holds ``clearance_role`` or that act in the ``system`` context."""

    hidden: frozenset[tuple[str, str]] = frozenset({(CONFIDENTIALITY, "R"), (CONFIDENTIALITY, "V")})
    clearance_role: str = "restricted-data"


@dataclass(slots=True)
class AccessPolicy:
    """What the wrappers of every request share (built once by the app)."""

    search: SearchParser  # the app's parser: it follows custom SearchParameters
    labels: LabelPolicy = field(default_factory=LabelPolicy)
    consent: ConsentHook | None = None
    private_owners: PrivateOwners | None = None
    care: CareRelationships | None = None
    """Holds ``user/`` grants to the user's care set (None: ``user_access = "all"``)."""
    _indexer: tuple[Definitions, Indexer] | None = None
    _unlabelled: tuple[Definitions, dict[str, Clause]] | None = None

    @property
    def definitions(self) -> Definitions:
        return self.search.definitions

    def unlabelled(self, resource_type: str | None) -> Clause:
        """``_security:not=`` every hidden label: parsed once per type (and definitions)."""
        definitions = self.search.definitions
        if self._unlabelled is None or self._unlabelled[0] is not definitions:
            self._unlabelled = (definitions, {})
        known = self._unlabelled[1]
        name = resource_type or "Resource"
        found = known.get(name)
        if found is None:
            values = ",".join(f"{s}|{c}" for s, c in sorted(self.labels.hidden))
            found = self.search.clause(name, "_security:not", values)
            if found is None:  # pragma: no cover - _security is a parameter of every resource
                raise InvalidRequest("_security is not searchable")
            known[name] = found
        return found

    @property
    def indexer(self) -> Indexer:
        definitions = self.search.definitions
        if self._indexer is None or self._indexer[0] is not definitions:
            self._indexer = (definitions, Indexer(definitions))
        return self._indexer[1]

    def wrap(self, repository: Repository, access: AccessContext) -> Repository:
        """``repository`` as ``access`` may use it (itself when unrestricted)."""
        if access.unrestricted:
            return repository
        return AccessControlled(repository, access, self)  # type: ignore[return-value]

    async def may_read(self, access: AccessContext, stored: StoredResource) -> bool:
        """Would ``access`` be shown ``stored`` (a version already read) by a vread? The checks
        of :meth:`wrap`'s vread without reading it again (the subscription dispatcher holds
        every version it matches)."""
        return access.unrestricted or await self._visible(access, stored) is not None

    async def shown(self, access: AccessContext, stored: StoredResource) -> StoredResource | None:
        """``stored`` (a version already read) as :meth:`wrap`'s vread would return it to
        ``access`` (redacted), or None where that vread answers 404 (the subscription delivery
        worker gets the focus version with its claim)."""
        if access.unrestricted:
            return stored
        checks = await self._visible(access, stored)
        return None if checks is None else checks.redact(stored)

    async def _visible(self, access: AccessContext, stored: StoredResource) -> _Checks | None:
        """The checks of a restricted ``access`` that let it see ``stored``, or None."""
        checks = _Checks(access, self)
        try:
            decision = checks.allow(stored.resource_type, "vread")
        except FhirError:
            return None
        return checks if await checks.visible(decision, stored) else None


def _prune(node: object, hidden: frozenset[tuple[str, str]]) -> bool:
    """Remove, at any depth, every element that carries an inline security label in
    ``hidden``; True when something was removed."""
    removed = False
    stack: list[object] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            for key in list(current):
                value = current[key]
                if isinstance(value, dict) and _inline_hidden(value, hidden):
                    del current[key]
                    removed = True
                elif isinstance(value, list):
                    kept = [
                        v for v in value if not (isinstance(v, dict) and _inline_hidden(v, hidden))
                    ]
                    if len(kept) != len(value):
                        removed = True
                        if kept:
                            current[key] = kept
                        else:
                            del current[key]
                    stack.extend(kept)
                elif isinstance(value, dict):
                    stack.append(value)
    return removed


def _inline_hidden(element: dict[str, object], hidden: frozenset[tuple[str, str]]) -> bool:
    extensions = element.get("extension")
    if not isinstance(extensions, list):
        return False
    for extension in extensions:
        if isinstance(extension, dict) and extension.get("url") == INLINE_LABEL:
            coding = extension.get("valueCoding")
            if isinstance(coding, dict) and (coding.get("system"), coding.get("code")) in hidden:
                return True
    return False


def system_wide(access: AccessContext, permission: str) -> bool:
    """True when ``access`` holds ``permission`` on every type in the system context
    (``system/*.s`` and the like, without granular filters), or is unrestricted."""
    return access.unrestricted or access.scopes.unrestricted("system", "*", permission)


def is_admin(access: AccessContext) -> bool:
    """May run administrative operations (``$reindex``, client registration): an ``admin``
    user, or a backend service granted ``system/*.cruds``."""
    return "admin" in access.roles or all(system_wide(access, p) for p in "cruds")


def may_audit(access: AccessContext, decision: Decision | None = None) -> bool:
    """May read the audit trail: users with the ``auditor`` role, or ``system/`` grants."""
    if access.unrestricted or "auditor" in access.roles:
        return True
    if decision is None:
        decision = decide(access, AUDITED, "search-type")
    return decision.allowed and decision.context == "system"


def _search_interaction(query: SearchQuery) -> str:
    return "search-type" if query.resource_type is not None else "search-system"


def _history_interaction(query: HistoryQuery) -> str:
    if query.id is not None:
        return "history-instance"
    return "history-type" if query.resource_type is not None else "history-system"


class _Checks:
    """The decisions and content checks of one request (shared by the repository wrapper and
    its transactions)."""

    __slots__ = ("_care", "_cleared", "access", "policy")

    def __init__(self, access: AccessContext, policy: AccessPolicy) -> None:
        self.access = access
        self.policy = policy
        self._cleared = (
            policy.labels.clearance_role in access.roles or "system" in access.scopes.contexts
        )
        care = policy.care
        held = care is not None and not is_admin(access) and ALL_PATIENTS not in access.roles
        self._care = care if held else None
        """The care relationships ``user/`` grants are held to (None: not held)."""

    @property
    def filters_results(self) -> bool:
        """Whether search results may hold what this token must not see (a patient
        confinement for includes, labels to hide or cut, a consent hook to ask)."""
        return (
            self.access.patient is not None
            or self._care is not None
            or not self._cleared
            or self.policy.consent is not None
        )

    # -- decisions ----------------------------------------------------------------------
    def allow(self, resource_type: str, interaction: str) -> Decision:
        """The decision, or 403 when the scopes grant nothing for it."""
        decision = decide(self.access, resource_type, interaction)
        if not decision.allowed:
            raise Forbidden(
                f"This token may not {interaction} {resource_type}: {decision.reason}",
                code="forbidden",
            )
        if resource_type == AUDITED and not may_audit(self.access, decision):
            raise Forbidden(
                "The audit trail is readable by auditors only (a user with the auditor role, "
                "or a backend service with system/AuditEvent scopes)",
                code="forbidden",
            )
        if (
            resource_type in PRIVATE
            and interaction not in WRITES
            and decision.context != "system"
            and "admin" not in self.access.roles
        ):
            raise Forbidden(
                f"{resource_type} resources are read by administrators and backend services "
                "only; their owners ask $status and $events",
                code="forbidden",
            )
        if (
            resource_type in CONFORMANCE
            and interaction in WRITES
            and decision.context != "system"
            and "admin" not in self.access.roles
        ):
            raise Forbidden(
                f"{resource_type} is a conformance resource: only administrators and backend "
                "services (system/ scopes) change it",
                code="forbidden",
            )
        return decision

    async def patients(self, decision: Decision, resource_type: str) -> frozenset[str] | None:
        """The patients to whose records a decision confines ``resource_type``: the launch
        patient of a ``patient/`` grant, the care set of a ``user/`` grant held to one; None
        when not confined (``system/`` grants, types outside the patient compartment...)."""
        if decision.patient is None and (self._care is None or decision.context != "user"):
            return None
        if not self.policy.definitions.compartment_params(PATIENT, resource_type):
            return None  # not patient data (Medication, Organization...)
        if decision.patient is not None:
            return frozenset((decision.patient,))
        if resource_type == AUDITED and may_audit(self.access):
            return None  # an auditor reads the whole audit trail
        assert self._care is not None
        return await self._care.patients(self.access, self.policy.search)

    def wrote(self, resource_types: Sequence[str]) -> None:
        """This token wrote these types: its care set is found afresh when one may change it
        (a Patient registered with it as general practitioner, a CareTeam it joined...)."""
        if self._care is not None and not RELATIONSHIP_TYPES.isdisjoint(resource_types):
            self._care.forget(self.access)

    # -- content -------------------------------------------------------------------------
    def owners(self, resource: Resource) -> set[str]:
        return compartment_owners(self.policy.definitions, self.policy.indexer, PATIENT, resource)

    def labelled(self, resource: Resource) -> bool:
        """True when the resource carries a label this token may not see."""
        if self._cleared:
            return False
        meta = resource.get("meta")
        labels = meta.get("security") if isinstance(meta, dict) else None
        if not isinstance(labels, list):
            return False
        hidden = self.policy.labels.hidden
        return any(
            isinstance(c, dict) and (c.get("system"), c.get("code")) in hidden for c in labels
        )

    def redact(self, stored: StoredResource) -> StoredResource:
        """``stored`` without the elements whose inline security labels this token may not
        see (marked ``REDACTED`` in ``meta.security``); itself when there are none."""
        if self._cleared or stored.deleted or _INLINE_MARK not in stored.content:
            return stored
        resource = jsonformat.loads(stored.content)
        if not _prune(resource, self.policy.labels.hidden):
            return stored
        meta = resource.setdefault("meta", {})
        meta["security"] = [*meta.get("security", []), REDACTED]
        return replace(stored, content=jsonformat.dumps(resource))

    def matches_filters(self, decision: Decision, resource: Resource) -> bool:
        if not decision.filters:
            return True
        rows = self.policy.indexer.lazy_rows(resource)
        type_ = str(resource.get("resourceType"))
        return any(matches(self._clauses(type_, f), rows) for f in decision.filters)

    def _clauses(self, resource_type: str, filters: Sequence[tuple[str, str]]) -> list[Clause]:
        clauses = []
        for name, value in filters:
            clause = self.policy.search.clause(resource_type, name, value)
            if clause is None:
                raise Forbidden(
                    f"The granted scope filter {name}={value} is not a search parameter of "
                    f"{resource_type}",
                    code="forbidden",
                )
            clauses.append(clause)
        return clauses

    async def visible(self, decision: Decision, stored: StoredResource) -> bool:
        """Whether a read of ``stored`` (a live version) is allowed under ``decision``. The
        content is decoded only when a check needs it: another resource than the launch
        patient under a ``patient/`` grant, granular filters, security labels (only when the
        bytes hold any) or a consent hook."""
        if stored.deleted:
            return True  # nothing to show; existence is checked on the live versions
        patients = await self.patients(decision, stored.resource_type)
        own_record = patients is None or (stored.resource_type == PATIENT and stored.id in patients)
        labels = not self._cleared and _LABELS_MARK in stored.content
        consent = self.policy.consent
        if own_record and not decision.filters and not labels and consent is None:
            return True
        resource = jsonformat.loads(stored.content)
        if patients is not None and not own_record and patients.isdisjoint(self.owners(resource)):
            return False
        if labels and self.labelled(resource):
            return False
        if not self.matches_filters(decision, resource):
            return False
        return consent is None or await consent.permits(self.access, resource)

    async def check_write(
        self,
        decision: Decision,
        resource_type: str,
        resource: Resource,
        registered: frozenset[str] = frozenset(),
    ) -> None:
        """403 unless ``resource`` may be written under ``decision``. A patient-context token
        may write a :data:`PRIVATE` resource (its own Subscription: what it is sent is read
        under the same confinement), none of another patient's record. A ``user/`` grant held
        to a care set writes only in the records of those patients or of the ``registered``
        ones (Patients created by the same transaction)."""
        if decision.patient is not None and resource_type not in PRIVATE:
            owners = self.owners(resource)
            check_patient_write(
                self.policy.definitions, decision.patient, owners, resource_type, resource
            )
        elif self._care is not None and decision.context == "user":
            patients = await self.patients(decision, resource_type)
            if patients is not None:
                owners = self.owners(resource)
                check_care_write(patients | registered, owners, resource_type, resource)
        if decision.filters and not self.matches_filters(decision, resource):
            raise Forbidden(
                f"The granted scopes allow writing only {resource_type} resources that match "
                + " or ".join("&".join(f"{k}={v}" for k, v in f) for f in decision.filters),
                code="forbidden",
            )
        if self.labelled(resource):
            raise Forbidden(
                "This token may not write resources with a restricted security label",
                code="forbidden",
            )

    # -- searches ------------------------------------------------------------------------
    async def restrict(self, query: SearchQuery) -> SearchQuery:
        """``query`` narrowed to what the token may see (403 when it may not search)."""
        types = (query.resource_type,) if query.resource_type else query.types
        if not types:
            if not system_wide(self.access, "s"):
                raise Forbidden(
                    "A search of every type needs system/*.s; name the types with _type",
                    code="forbidden",
                )
            types = ()
        decisions = [self.allow(t, _search_interaction(query)) for t in types]
        confinements = {await self.patients(d, t) for d, t in zip(decisions, types, strict=True)}
        if len(confinements) > 1:
            raise Forbidden(
                "Search patient-record types and other types separately with this token",
                code="forbidden",
            )
        patients = next(iter(confinements), None)
        if patients is not None:
            context = decisions[0].patient is not None
            query = confine(self.policy.search, query, patients, patient_context=context)
        elif self._care is not None or self.access.patient is not None:
            await self._check_reach(query)
        restrictions: list[FilterExpr] = []
        if query.resource_type is not None and decisions[0].filters:
            sets = [
                FilterAnd(tuple(self._clauses(query.resource_type, f)))
                for f in decisions[0].filters
            ]
            restrictions.append(sets[0] if len(sets) == 1 else FilterOr(tuple(sets)))
        elif any(d.filters for d in decisions):
            raise Forbidden(
                "Granular scopes apply to searches of one type; search each type on its own",
                code="forbidden",
            )
        if not self._cleared and self.policy.labels.hidden:
            restrictions.append(self.policy.unlabelled(query.resource_type))
        if restrictions:
            items = (query.filter, *restrictions) if query.filter is not None else restrictions
            expr = items[0] if len(items) == 1 else FilterAnd(tuple(items))
            query = replace(query, filter=expr)
        return query

    async def _check_reach(self, query: SearchQuery) -> None:
        """403 when a search of types outside the patients' records reaches patient data this
        token is confined in (or may not search) through a chain or ``_has``: it would tell
        what other patients' records hold (``Practitioner?_has:Observation:performer:...``)."""
        for type_ in sorted(passed_through(query)):
            if not self.policy.definitions.compartment_params(PATIENT, type_):
                continue
            decision = decide(self.access, type_, "search-type")
            if not decision.allowed or await self.patients(decision, type_) is not None:
                raise Forbidden(
                    f"This search reaches {type_} resources (patient records) through a chain "
                    f"or _has from a type outside them; search {type_} itself",
                    code="forbidden",
                )

    async def included(self, page: SearchPage) -> list[StoredResource]:
        """The page's included resources this token may see (each type decided once)."""
        decisions: dict[str, Decision | None] = {}
        kept = []
        for stored in page.included:
            decision = decisions.get(stored.resource_type, ...)
            if decision is ...:
                try:
                    decision = self.allow(stored.resource_type, "search-type")
                except Forbidden:
                    decision = None
                decisions[stored.resource_type] = decision
            if decision is not None and await self.visible(decision, stored):
                kept.append(stored)
        return kept


class AccessControlled:
    """A :class:`~healthbridge.store.repository.Repository` that enforces one request's
    access context on every call (module docstring)."""

    __slots__ = ("checks", "inner")

    def __init__(self, inner: Repository, access: AccessContext, policy: AccessPolicy) -> None:
        self.inner = inner
        self.checks = _Checks(access, policy)

    def __getattr__(self, name: str) -> object:
        # delegated unchanged: jobs, reindexer, records, audit, use_definitions, outbox_since,
        # ping, close
        return getattr(self.inner, name)

    # -- reads ---------------------------------------------------------------------------
    async def read(self, resource_type: str, id: str) -> StoredResource:
        decision = self.checks.allow(resource_type, "read")
        stored = await self.inner.read(resource_type, id)
        if not await self.checks.visible(decision, stored):
            raise not_found(resource_type, id)
        return self.checks.redact(stored)

    async def vread(self, resource_type: str, id: str, version_id: int) -> StoredResource:
        decision = self.checks.allow(resource_type, "vread")
        stored = await self.inner.vread(resource_type, id, version_id)
        if not await self.checks.visible(decision, stored):
            raise not_found(resource_type, id, version_id)
        return self.checks.redact(stored)

    async def history(self, query: HistoryQuery) -> HistoryPage:
        interaction = _history_interaction(query)
        if query.resource_type is None:
            if not system_wide(self.checks.access, "s"):
                raise Forbidden("System history needs system/*.s", code="forbidden")
            return await self.inner.history(query)
        decision = self.checks.allow(query.resource_type, interaction)
        page = await self.inner.history(query)
        kept = [
            self.checks.redact(s) for s in page.entries if await self.checks.visible(decision, s)
        ]
        if query.id is not None and page.entries and not any(not s.deleted for s in kept):
            raise not_found(query.resource_type, query.id)
        if len(kept) == len(page.entries):
            return replace(page, entries=kept)
        return HistoryPage(kept, page.next_cursor, None)

    async def search(self, query: SearchQuery, cursor: str | None = None) -> SearchPage:
        restricted = await self.checks.restrict(query)
        page = await self.inner.search(restricted, cursor)
        if not self.checks.filters_results:
            return page
        included = await self.checks.included(page) if page.included else page.included
        redact = self.checks.redact
        return replace(
            page, matches=[redact(s) for s in page.matches], included=[redact(s) for s in included]
        )

    # -- writes --------------------------------------------------------------------------
    async def _guard_existing(self, decision: Decision, resource_type: str, id: str) -> bool:
        """Whether ``resource_type/id`` exists live; 404 when it is hidden from this token (or
        a :data:`PRIVATE` resource it does not own)."""
        try:
            current = await self.inner.read(resource_type, id)
        except (NotFound, Gone):  # nothing to protect
            return False
        owners = self.checks.policy.private_owners
        if (
            resource_type in PRIVATE
            and owners is not None
            and decision.context != "system"
            and "admin" not in self.checks.access.roles
            and not await owners.owns(self.checks.access, resource_type, id)
        ):
            raise not_found(resource_type, id)
        if not await self.checks.visible(decision, current):
            raise not_found(resource_type, id)
        if self.checks.redact(current) is not current:
            raise Forbidden(
                f"{resource_type}/{id} holds elements this token may not see (restricted "
                "security labels), so it cannot change or delete it",
                code="forbidden",
            )
        return True

    async def create(
        self, resource_type: str, resource: Resource, id: str | None = None
    ) -> StoredResource:
        decision = self.checks.allow(resource_type, "create")
        await self.checks.check_write(decision, resource_type, resource)
        stored = await self.inner.create(resource_type, resource, id)
        self.checks.wrote((resource_type,))
        return stored

    async def update(
        self, resource_type: str, id: str, resource: Resource, if_match: int | None = None
    ) -> tuple[StoredResource, bool]:
        decision, _ = await self._update_decision(resource_type, id)
        await self.checks.check_write(decision, resource_type, resource)
        result = await self.inner.update(resource_type, id, resource, if_match)
        self.checks.wrote((resource_type,))
        return result

    async def _update_decision(self, resource_type: str, id: str) -> tuple[Decision, bool]:
        """The decision of an update, and whether it creates the resource."""
        decision = self.checks.allow(resource_type, "update")
        if await self._guard_existing(decision, resource_type, id):
            return decision, False
        return self.checks.allow(resource_type, "create"), True  # update as create

    async def delete(
        self, resource_type: str, id: str, if_match: int | None = None
    ) -> StoredResource | None:
        decision = self.checks.allow(resource_type, "delete")
        await self._guard_existing(decision, resource_type, id)
        deleted = await self.inner.delete(resource_type, id, if_match)
        self.checks.wrote((resource_type,))
        return deleted

    async def _check_changes(self, changes: Sequence[Change]) -> None:
        """Every change checked before any is written; the first refused one raises
        :class:`ChangeFailed` naming it (a transaction Bundle names the entry). Patients the
        changes create count as in the care set of a user held to one (a registration Bundle
        may write the new patient's first resources with it)."""
        decisions: list[Decision] = []
        registered: set[str] = set()
        for index, change in enumerate(changes):
            try:
                decision, creates = await self._change_decision(change)
            except FhirError as exc:
                raise ChangeFailed(index, exc) from None
            decisions.append(decision)
            if creates and change.resource_type == PATIENT:
                registered.add(change.id)
        new = frozenset(registered)
        for index, (change, decision) in enumerate(zip(changes, decisions, strict=True)):
            if change.resource is None:
                continue
            try:
                await self.checks.check_write(decision, change.resource_type, change.resource, new)
            except FhirError as exc:
                raise ChangeFailed(index, exc) from None

    async def _change_decision(self, change: Change) -> tuple[Decision, bool]:
        if change.method == "create":
            return self.checks.allow(change.resource_type, "create"), True
        if change.method == "update":
            return await self._update_decision(change.resource_type, change.id)
        decision = self.checks.allow(change.resource_type, "delete")
        await self._guard_existing(decision, change.resource_type, change.id)
        return decision, False

    async def apply(self, changes: Sequence[Change]) -> list[Applied]:
        await self._check_changes(changes)
        applied = await self.inner.apply(changes)
        self.checks.wrote([c.resource_type for c in changes])
        return applied

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self.inner.transaction() as tx:
            controlled = _ControlledTransaction(tx, self)
            yield controlled
        self.checks.wrote(controlled.written)  # committed


class _ControlledTransaction:
    """A unit of work under the same checks; a refusal raises inside it, so nothing of the
    unit commits (one refused entry fails the whole transaction Bundle)."""

    __slots__ = ("owner", "tx", "written")

    def __init__(self, tx: Transaction, owner: AccessControlled) -> None:
        self.tx = tx
        self.owner = owner
        self.written: list[str] = []  # the types written: the care set may change on commit

    async def lock(self, name: str) -> None:
        await self.tx.lock(name)

    async def read(self, resource_type: str, id: str) -> StoredResource:
        checks = self.owner.checks
        decision = checks.allow(resource_type, "read")
        stored = await self.tx.read(resource_type, id)
        if not await checks.visible(decision, stored):
            raise not_found(resource_type, id)
        return stored

    async def create(
        self, resource_type: str, resource: Resource, id: str | None = None
    ) -> StoredResource:
        checks = self.owner.checks
        await checks.check_write(checks.allow(resource_type, "create"), resource_type, resource)
        self.written.append(resource_type)
        return await self.tx.create(resource_type, resource, id)

    async def update(
        self, resource_type: str, id: str, resource: Resource, if_match: int | None = None
    ) -> tuple[StoredResource, bool]:
        decision, _ = await self.owner._update_decision(resource_type, id)
        await self.owner.checks.check_write(decision, resource_type, resource)
        self.written.append(resource_type)
        return await self.tx.update(resource_type, id, resource, if_match)

    async def delete(
        self, resource_type: str, id: str, if_match: int | None = None
    ) -> StoredResource | None:
        checks = self.owner.checks
        decision = checks.allow(resource_type, "delete")
        await self.owner._guard_existing(decision, resource_type, id)
        self.written.append(resource_type)
        return await self.tx.delete(resource_type, id, if_match)

    async def apply(self, changes: Sequence[Change]) -> list[Applied]:
        await self.owner._check_changes(changes)
        self.written.extend(c.resource_type for c in changes)
        return await self.tx.apply(changes)
