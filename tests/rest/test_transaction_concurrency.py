"""Transactions under concurrency (https://hl7.org/fhir/R4/http.html#transaction): parallel
transactions that touch the same resources never interleave partially, and parallel
transactions with the same conditional create make one resource."""

from __future__ import annotations

import asyncio
from typing import Any

from healthbridge.fhir import jsonformat
from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.rest.bundle import BundleProcessor
from healthbridge.store.repository import HistoryQuery, Repository
from tests.rest.conftest import fhir_service

MRN = "urn:mrn"


def _patient(id: str, marker: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": id,
        "identifier": [{"system": MRN, "value": id}],
        "name": [{"family": f"Round{marker}"}],
    }


def _writes_both(marker: int) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": _patient(id, marker), "request": {"method": "PUT", "url": f"Patient/{id}"}}
            for id in ("a", "b")
        ],
    }


async def _history(repository: Repository, id: str) -> dict[int, str]:
    page = await repository.history(HistoryQuery("Patient", id, count=500))
    return {e.version_id: jsonformat.loads(e.content)["name"][0]["family"] for e in page.entries}


def _processor(repository: Repository) -> BundleProcessor:
    return BundleProcessor(fhir_service(repository))


async def test_parallel_transactions_never_interleave(repository: Repository) -> None:
    """20 transactions each write Patient a and b with their own marker at once: every
    version n of a carries the same marker as version n of b, so no transaction's writes were
    split by another's."""
    processor = _processor(repository)
    rounds = 20
    await asyncio.gather(*(processor.process(_writes_both(m)) for m in range(rounds)))
    a, b = await _history(repository, "a"), await _history(repository, "b")
    assert sorted(a) == list(range(1, rounds + 1))
    assert a == b
    assert sorted(a.values()) == sorted(f"Round{m}" for m in range(rounds))


async def test_parallel_transactions_with_one_conditional_create(repository: Repository) -> None:
    """30 transactions at once, each an ifNoneExist create of the same patient plus an
    Observation referring to it: one Patient, and all 30 Observations refer to it."""
    processor = _processor(repository)
    placeholder = "urn:uuid:9d3c1a52-3f7e-4c55-9a57-2b0d1c6c0f11"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": placeholder,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": MRN, "value": "42"}],
                },
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": f"identifier={MRN}|42",
                },
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "weight"},
                    "subject": {"reference": placeholder},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    responses = await asyncio.gather(
        *(processor.process(jsonformat.loads(jsonformat.dumps(bundle))) for _ in range(30))
    )
    created = [r["entry"][0]["response"]["status"] for r in responses]
    assert created.count("201 Created") == 1 and created.count("200 OK") == 29
    parser = SearchParser(load_definitions())
    patients = await repository.search(parser.parse("Patient", [("identifier", f"{MRN}|42")]))
    assert len(patients.matches) == 1
    subject = f"Patient/{patients.matches[0].id}"
    observations = await repository.search(parser.parse("Observation", [("subject", subject)]))
    assert len(observations.matches) == 30
