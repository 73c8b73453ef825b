"""Reindexing stored resources for custom SearchParameters (https://hl7.org/fhir/R4/searchparameter.html),
through the job runner, on every backend: progress is saved per batch, an abandoned job is taken
over and finished, and afterwards the new parameter finds the resources stored before it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.jobs.reindex import ReindexRunner
from healthbridge.jobs.search_registry import KIND, SearchRegistry
from healthbridge.store.repository import Repository
from tests.support.clock import FakeClock

EXTENSION = "http://example.org/fhir/StructureDefinition/favourite-colour"
PARAMETER: dict[str, Any] = {
    "resourceType": "SearchParameter",
    "url": "http://example.org/SearchParameter/favourite-colour",
    "status": "active",
    "code": "favourite-colour",
    "base": ["Patient"],
    "type": "token",
    "expression": f"Patient.extension.where(url = '{EXTENSION}').value",
}


def patient(colour: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "extension": [{"url": EXTENSION, "valueCode": colour}]}


async def _ids(repo: Repository, registry: SearchRegistry, colour: str) -> set[str]:
    parser = SearchParser(registry.search_definitions)
    query = parser.parse("Patient", [("favourite-colour", colour)], strict=True)
    return {s.id for s in (await repo.search(query)).matches}


async def test_an_abandoned_reindex_is_resumed_and_makes_the_parameter_searchable(
    repo: Repository, clock: FakeClock
) -> None:
    for n in range(7):
        await repo.create("Patient", patient("red" if n % 2 == 0 else "blue"), id=f"p{n}")
    registry = SearchRegistry(load_definitions())
    registry.on_index_change(repo.use_definitions)
    # A process started the job, indexed one batch of 3, and died.
    params = {"parameters": [PARAMETER], "types": ["Patient"]}
    job = await repo.jobs.create_job(KIND, params, "dead-process", total=7)
    await registry.refresh(repo.jobs)
    first = await repo.reindexer.batch(["Patient"], None, 3)
    assert first.processed == 3 and first.next_after is not None
    await repo.jobs.record_progress(job.id, "dead-process", str(first.next_after), 3)
    assert "favourite-colour" in registry.index_definitions.search_parameters("Patient")
    assert "favourite-colour" not in registry.search_definitions.search_parameters("Patient")

    clock.advance(minutes=5)  # its heartbeat is now stale
    runner = ReindexRunner(repo.jobs, repo.reindexer, registry, owner="me", batch=2)
    await runner.resume()
    done = await repo.jobs.get_job(job.id)
    assert (done.state, done.owner, done.processed) == ("done", "me", 7)
    assert await _ids(repo, registry, "red") == {"p0", "p2", "p4", "p6"}
    assert await _ids(repo, registry, "blue") == {"p1", "p3", "p5"}


async def test_a_running_job_is_not_taken_while_its_owner_beats(
    repo: Repository, clock: FakeClock
) -> None:
    job = await repo.jobs.create_job(KIND, {"parameters": [], "types": []}, "alive")
    clock.advance(seconds=5)
    registry = SearchRegistry(load_definitions())
    runner = ReindexRunner(repo.jobs, repo.reindexer, registry, owner="me")
    await runner.resume()
    assert (await repo.jobs.get_job(job.id)).owner == "alive"
    assert await repo.jobs.claim_job(KIND, "me", timedelta(seconds=1)) is not None
