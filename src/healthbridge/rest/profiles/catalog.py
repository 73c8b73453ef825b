"""Which profiles this server knows: https://hl7.org/fhir/R4/profiling.html.

The :class:`ProfileCatalog` gives profile validation its synchronous lookups: StructureDefinitions
by canonical url from the server's own store (installed packages, uploads) and then the R4 core
definitions shipped with it (:mod:`healthbridge.fhir.validation.core_structures`); value set
membership through :func:`~healthbridge.rest.profiles.codes.code_check`. A stored definition
wins over a shipped one with the same url; for a bare url the newest business version wins,
``url|version`` picks that version.

The stored conformance resources are held in memory (:class:`~.holdings.Holdings`) and kept
current two ways:

* a write through the FHIR service in this process is applied at once (:meth:`written`), so
  the next request validates with it;
* every server process polls (:meth:`refresh`, every ``search_refresh_seconds``) a cheap change
  token per type: the number of stored versions and the newest one (``_history`` of the type,
  one row and a count). Every write adds a version, so any change by another process is seen
  within one interval, and then everything is reloaded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Final

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import FhirError
from healthbridge.fhir.search.query import SearchQuery
from healthbridge.fhir.types import Resource
from healthbridge.fhir.ucum import is_valid_unit
from healthbridge.fhir.validation.core_structures import CoreStructures
from healthbridge.fhir.validation.profiles import ProfileValidator
from healthbridge.infra.logging import get_logger
from healthbridge.rest.profiles.codes import code_check
from healthbridge.rest.profiles.holdings import EMPTY, WATCHED, Held, Holdings, decode
from healthbridge.store.repository import HistoryQuery, Repository, StoredResource

PAGE: Final = 200
_log = get_logger("healthbridge.profiles")

Token = tuple[tuple[str, int, str | None], ...]
Listener = Callable[[], None]


class ProfileCatalog:
    def __init__(self, repository: Repository, definitions: Definitions) -> None:
        self.repository = repository
        self.definitions = definitions
        self.core = CoreStructures(definitions)
        self.holdings = EMPTY
        self._codes = code_check(EMPTY)
        self.validator = self._validator(EMPTY)
        self._token: Token | None = None
        self._listeners: list[Listener] = []
        self._lock = asyncio.Lock()
        self._pending: list[StoredResource] | None = None  # writes seen while reloading

    # -- lookups -------------------------------------------------------------------------------
    def structure(self, url: str) -> Resource | None:
        """The StructureDefinition ``url`` (or ``url|version``) names; None when unknown."""
        found = self.holdings.structures.get(url)
        return found if found is not None else self.core(url)

    def codes(self, value_set: str, system: str | None, code: str) -> bool | None:
        """Value set membership (the validator's CodeCheck): None when it cannot tell."""
        return self._codes(value_set, system, code)

    def profiles_by_type(self) -> dict[str, list[str]]:
        """Resource type -> the stored (installed or uploaded) profiles of it."""
        return self.holdings.profiles_by_type()

    def on_change(self, listener: Listener) -> None:
        """Call ``listener()`` whenever the stored StructureDefinitions change."""
        self._listeners.append(listener)

    # -- keeping current -----------------------------------------------------------------------
    def _validator(self, holdings: Holdings) -> ProfileValidator:
        """A validator over ``holdings``' definitions (it compiles each profile once, so it is
        replaced whenever a definition changes)."""
        structures = holdings.structures

        def lookup(url: str) -> Resource | None:
            found = structures.get(url)
            return found if found is not None else self.core(url)

        return ProfileValidator(self.definitions, lookup, self.codes, units=is_valid_unit)

    def _use(self, holdings: Holdings) -> None:
        changed = holdings.structures != self.holdings.structures
        self.holdings = holdings
        self._codes = code_check(holdings)
        if changed:
            self.validator = self._validator(holdings)
            for listener in self._listeners:
                listener()

    async def written(self, stored: Sequence[StoredResource]) -> None:
        """Committed writes through this process's service: those of the watched types are in
        force at once (and again after a reload that was reading meanwhile)."""
        changes = [s for s in stored if s.resource_type in WATCHED]
        if not changes:
            return
        if self._pending is not None:
            self._pending.extend(changes)
        self._use(self.holdings.changed(changes))

    async def load(self) -> None:
        """Read every stored StructureDefinition, ValueSet and CodeSystem."""
        async with self._lock:
            await self._reload(await self._read_token())

    async def refresh(self) -> bool:
        """Reload when any process changed the stored definitions; True when it did."""
        async with self._lock:
            token = await self._read_token()
            if token == self._token:
                return False
            await self._reload(token)
            return True

    async def _reload(self, token: Token) -> None:
        self._pending = []
        try:
            entries: dict[tuple[str, str], Held] = {}
            for kind in sorted(WATCHED):
                for stored in await self._all(kind):
                    held = decode(stored)
                    if held is not None:
                        entries[(kind, stored.id)] = held
            self._token = token
            self._use(Holdings(entries).changed(self._pending))
        finally:
            self._pending = None

    async def _all(self, kind: str) -> list[StoredResource]:
        query = SearchQuery(resource_type=kind, clauses=(), count=PAGE)
        page = await self.repository.search(query)
        found = list(page.matches)
        while page.next_cursor is not None:
            page = await self.repository.search(query, page.next_cursor)
            found.extend(page.matches)
        return found

    async def _read_token(self) -> Token:
        token = []
        for kind in sorted(WATCHED):
            page = await self.repository.history(HistoryQuery(resource_type=kind, count=1))
            newest = page.entries[0] if page.entries else None
            where = None if newest is None else f"{newest.id}/{newest.version_id}"
            token.append((kind, page.total or 0, where))
        return tuple(token)

    async def keep_fresh(self, every: float) -> None:
        """Poll for changes made by other server processes (run as a background task)."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh()
            except FhirError as exc:  # the database is briefly unavailable: try again later
                _log.warning("profile catalog refresh failed", error=str(exc))
