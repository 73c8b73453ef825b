"""Making a package's SearchParameters searchable at once: https://hl7.org/fhir/R4/searchparameter.html.

A custom search parameter is in force once a ``$reindex`` job that holds it has finished
(:mod:`healthbridge.jobs.search_registry`): the newest finished job's parameters are the custom
parameters every server process searches with. After a package installs or changes
SearchParameters, :func:`make_searchable` starts that job itself, with every stored *active*
SearchParameter that defines a usable custom parameter (so those installed before stay in force),
scanning only the resource types the new parameters apply to, and waits for it to end. Running
server processes pick the parameters up within ``search_refresh_seconds``.

A package parameter that cannot be a custom parameter here (one whose code a core parameter of
the same base already has, as many IGs redefine core parameters; an expression this server
cannot evaluate) stays stored and is reported, not an error: the core parameter answers instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from healthbridge.fhir import jsonformat
from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import FhirError
from healthbridge.fhir.search.custom import custom_parameter, is_active
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.fhir.types import Resource
from healthbridge.jobs.reindex import ReindexRunner
from healthbridge.jobs.search_registry import SearchRegistry
from healthbridge.store.jobs import Job
from healthbridge.store.repository import Repository

MAX_PARAMETERS = 1000
POLL_SECONDS = 0.05
Progress = Callable[[int, int | None], None]
"""Called with (resources indexed, resources to index) while the job runs."""


@dataclass(slots=True)
class Searchable:
    codes: list[str] = field(default_factory=list)
    """The package's parameters now searchable, as ``Base.code``."""
    warnings: list[str] = field(default_factory=list)


async def _stored(repository: Repository, core: Definitions) -> list[Resource]:
    query = SearchParser(core).parse("SearchParameter", [("_count", str(MAX_PARAMETERS))])
    page = await repository.search(query)
    return [jsonformat.loads(stored.content) for stored in page.matches]


def _usable(resource: Resource, core: Definitions) -> str | None:
    """None when the resource defines a usable custom parameter, else why not."""
    try:
        custom_parameter(resource, core)
    except FhirError as exc:
        return str(exc)
    return None


def _types(parameters: Sequence[Resource]) -> list[str] | None:
    """The types to scan: the bases of ``parameters`` (None: all, for Resource-wide ones)."""
    bases = {str(b) for p in parameters for b in p.get("base") or []}
    return None if bases & {"Resource", "DomainResource"} else sorted(bases)


def _fresh(changed: Sequence[Resource], core: Definitions, result: Searchable) -> list[Resource]:
    """The parameters of ``changed`` that can become searchable; the others are warnings."""
    fresh = []
    for parameter in changed:
        why = _usable(parameter, core) if is_active(parameter) else "its status is not active"
        name = parameter.get("url") or parameter.get("id")
        if why is None:
            fresh.append(parameter)
            result.codes += [f"{b}.{parameter.get('code')}" for b in parameter.get("base") or []]
        else:
            result.warnings.append(f"SearchParameter {name} is stored but not searchable: {why}")
    return fresh


async def make_searchable(
    repository: Repository,
    core: Definitions,
    changed: Sequence[Resource],
    *,
    barrier_seconds: float,
    progress: Progress | None = None,
) -> Searchable:
    """Start a reindex job for the stored active SearchParameters and wait for it, when any of
    ``changed`` (the package's new or updated ones) is active and usable."""
    result = Searchable()
    fresh = _fresh(changed, core, result)
    if not fresh:
        return result
    stored = [p for p in await _stored(repository, core) if is_active(p)]
    usable = [p for p in stored if _usable(p, core) is None]
    registry = SearchRegistry(core)
    await registry.refresh(repository.jobs)
    registry.on_index_change(repository.use_definitions)
    runner = ReindexRunner(
        repository.jobs, repository.reindexer, registry, barrier_seconds=barrier_seconds
    )
    try:
        job = await _wait(runner, await runner.start(usable, _types(fresh)), progress)
    except FhirError as exc:  # one is running already: ours must wait for it
        why = str(exc)
    else:
        why = "" if job.state == "done" else f"The reindex job ended {job.state}: {job.error}"
    finally:
        await runner.close()
    if why:
        then = f"run POST [base]/$reindex to make {', '.join(result.codes)} searchable"
        result.warnings.append(f"{why}; {then}")
        result.codes = []
    return result


async def _wait(runner: ReindexRunner, job: Job, progress: Progress | None) -> Job:
    """The job once it has ended."""
    while job.state == "running":
        await asyncio.sleep(POLL_SECONDS)
        job = await runner.jobs.get_job(job.id)
        if progress is not None:
            progress(job.processed, job.total)
    return job
