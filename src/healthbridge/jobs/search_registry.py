"""Which search parameters are in force: the R4 core ones plus custom SearchParameters.

https://hl7.org/fhir/R4/searchparameter.html. Custom parameters take effect through a
``$reindex`` job (:mod:`.reindex`), whose parameters record the SearchParameter resources it
applies. Two views follow from the newest such jobs:

* ``index_definitions``: core + the parameters of the newest reindex job that is running or
  done. New writes are indexed with these as soon as a reindex starts, so that the resources
  written while it runs are indexed too;
* ``search_definitions``: core + the parameters of the newest reindex job that is done. A
  custom parameter is searchable only once every stored resource has been indexed with it, so a
  search never silently misses resources.

Every server process refreshes its view from the job table (:meth:`SearchRegistry.refresh`,
polled by the application every :data:`REFRESH_SECONDS`); the job runner waits a little longer
than that before it scans, so that every process indexes new writes with the new parameters
before the scan passes them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import FhirError
from healthbridge.fhir.search.custom import custom_parameter
from healthbridge.store.jobs import Job, JobStore

KIND = "reindex"
REFRESH_SECONDS = 2.0

Listener = Callable[[Definitions], None]


def _parameters(job: Job | None, core: Definitions) -> list[Any]:
    if job is None:
        return []
    found = []
    for resource in job.params.get("parameters", []):
        try:
            found.append(custom_parameter(resource, core))
        except FhirError:  # checked when the job started; skip one that no longer fits
            continue
    return found


class SearchRegistry:
    def __init__(self, core: Definitions) -> None:
        self.core = core
        self.index_definitions = core
        self.search_definitions = core
        self._seen: tuple[str | None, str | None] = (None, None)
        self._index_listeners: list[Listener] = []
        self._search_listeners: list[Listener] = []

    def on_index_change(self, listener: Listener) -> None:
        """Call ``listener(index_definitions)`` whenever they change, and now when they are
        not the core ones (which every listener starts from): the repository's indexer."""
        self._index_listeners.append(listener)
        if self.index_definitions is not self.core:
            listener(self.index_definitions)

    def on_search_change(self, listener: Listener) -> None:
        """The same for ``search_definitions``: the parser, the CapabilityStatement."""
        self._search_listeners.append(listener)
        if self.search_definitions is not self.core:
            listener(self.search_definitions)

    def apply(self, indexing: Job | None, searchable: Job | None) -> bool:
        """Take the parameters of these jobs (see the module docstring); True if they changed."""
        seen = (indexing.id if indexing else None, searchable.id if searchable else None)
        if seen == self._seen:
            return False
        if seen[0] != self._seen[0]:
            extra = _parameters(indexing, self.core)
            self.index_definitions = self.core.with_search_parameters(extra)
            for listener in self._index_listeners:
                listener(self.index_definitions)
        if seen[1] != self._seen[1]:
            extra = _parameters(searchable, self.core)
            self.search_definitions = self.core.with_search_parameters(extra)
            for listener in self._search_listeners:
                listener(self.search_definitions)
        changed = seen[1] != self._seen[1]
        self._seen = seen
        return changed

    async def refresh(self, jobs: JobStore) -> bool:
        """Bring this process's view up to date with the job table; True when the searchable
        parameters changed."""
        found = await jobs.jobs(KIND)
        indexing = next((j for j in found if j.state in ("running", "done")), None)
        searchable = next((j for j in found if j.state == "done"), None)
        return self.apply(indexing, searchable)
