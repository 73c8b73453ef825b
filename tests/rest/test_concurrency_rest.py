"""Concurrent writers over the REST API (https://hl7.org/fhir/R4/http.html#concurrency,
#versioning, #update, #patch), on every backend.

The storage contract suite (tests/store/test_concurrency.py) races repository calls; here the
racers are HTTP requests through the whole app (the in-process ASGI client, its requests
running as concurrent tasks of the app's event loop), released together by a barrier:

* N PUTs without ``If-Match`` are all applied: versionIds 2..N+1, each exactly once, each
  version holding the body of the request that got it, and a ``_history`` of N+1;
* N PUTs with the same ``If-Match: W/"1"``: exactly one 200, every other one 412 with an
  OperationOutcome, and the history has 2 versions;
* N PATCHes without ``If-Match`` are all applied, each to the version before it (none lost,
  none refused: after a few lock-free tries they take turns under a lock); with the same
  ``If-Match`` exactly one is.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.testclient import TestClient

N = 30
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
Response = Any  # the test client's response type


def race(count: int, request: Callable[[int], Response]) -> list[Response]:
    """``request(0..count-1)`` from ``count`` threads released at once; the responses in order."""
    barrier = threading.Barrier(count)

    def run(n: int) -> Response:
        barrier.wait(timeout=30)
        return request(n)

    with ThreadPoolExecutor(count) as pool:
        return [f.result(timeout=120) for f in [pool.submit(run, n) for n in range(count)]]


def patient(id: str, tag: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": id,
        "identifier": [{"system": "urn:writer", "value": tag}],
    }


def etag_version(response: Response) -> int:
    etag = response.headers["etag"]
    assert etag.startswith('W/"') and etag.endswith('"'), etag
    return int(etag[3:-1])


def history(client: TestClient, path: str) -> dict[str, Any]:
    response = client.get(f"{path}/_history", params={"_count": "200"})
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    assert bundle["type"] == "history"
    return bundle


def without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


def test_parallel_puts_without_if_match_get_distinct_consecutive_versions(
    client: TestClient,
) -> None:
    """http.html#update and #versioning: every update makes a new version; N concurrent ones
    make versions 2..N+1, none lost or repeated, each holding the body its request sent."""
    assert client.put("/fhir/Patient/x", json=patient("x", "create")).status_code == 201
    sent = [patient("x", f"w{n}") for n in range(N)]
    responses = race(N, lambda n: client.put("/fhir/Patient/x", json=sent[n]))

    assert [r.status_code for r in responses] == [200] * N, [r.text for r in responses]
    versions = [etag_version(r) for r in responses]
    assert sorted(versions) == list(range(2, N + 2))
    for body, response, version in zip(sent, responses, versions, strict=True):
        assert response.json()["meta"]["versionId"] == str(version)
        assert without_meta(response.json()) == body

    bundle = history(client, "/fhir/Patient/x")
    assert bundle["total"] == N + 1
    stored = {int(e["resource"]["meta"]["versionId"]): e["resource"] for e in bundle["entry"]}
    assert sorted(stored) == list(range(1, N + 2))
    assert [int(e["resource"]["meta"]["versionId"]) for e in bundle["entry"]] == list(
        range(N + 1, 0, -1)
    )  # newest first
    for body, version in zip(sent, versions, strict=True):
        assert without_meta(stored[version]) == body
    current = client.get("/fhir/Patient/x")
    assert etag_version(current) == N + 1
    assert without_meta(current.json()) == without_meta(stored[N + 1])


def test_parallel_puts_with_the_same_if_match_exactly_one_wins(client: TestClient) -> None:
    """http.html#concurrency: of N updates that all say ``If-Match: W/"1"`` exactly one is
    applied; the others get 412 Precondition Failed with an OperationOutcome."""
    assert client.put("/fhir/Patient/x", json=patient("x", "create")).status_code == 201
    sent = [patient("x", f"w{n}") for n in range(N)]
    responses = race(
        N, lambda n: client.put("/fhir/Patient/x", json=sent[n], headers={"If-Match": 'W/"1"'})
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [412] * (N - 1), [r.text for r in responses]
    winner = next(n for n, r in enumerate(responses) if r.status_code == 200)
    assert etag_version(responses[winner]) == 2
    for response in responses:
        if response.status_code == 412:
            assert response.json()["resourceType"] == "OperationOutcome"
    bundle = history(client, "/fhir/Patient/x")
    assert bundle["total"] == 2
    assert [e["resource"]["meta"]["versionId"] for e in bundle["entry"]] == ["2", "1"]
    current = client.get("/fhir/Patient/x")
    assert etag_version(current) == 2
    assert without_meta(current.json()) == sent[winner]


def _identifiers(resource: dict[str, Any]) -> list[str]:
    return [i["value"] for i in resource.get("identifier", [])]


def test_parallel_patches_without_if_match_are_all_applied(client: TestClient) -> None:
    """http.html#patch: a PATCH without If-Match applies to the current version. N concurrent
    ones all succeed, each version is the one before plus exactly one patch: none is lost."""
    count = N
    assert client.put("/fhir/Patient/x", json=patient("x", "seed")).status_code == 201

    def add(n: int) -> Response:
        operation = {"op": "add", "path": "/identifier/-", "value": {"value": f"p{n}"}}
        return client.patch(
            "/fhir/Patient/x", content=f"[{json.dumps(operation)}]", headers=JSON_PATCH
        )

    responses = race(count, add)
    assert [r.status_code for r in responses] == [200] * count, [r.text for r in responses]
    assert sorted(etag_version(r) for r in responses) == list(range(2, count + 2))

    bundle = history(client, "/fhir/Patient/x")
    assert bundle["total"] == count + 1
    versions = [e["resource"] for e in reversed(bundle["entry"])]  # oldest first
    for before, after in itertools.pairwise(versions):
        added = _identifiers(after)
        assert added[:-1] == _identifiers(before), "a patch was applied to an older version"
    final = _identifiers(versions[-1])
    assert sorted(final) == sorted(["seed", *(f"p{n}" for n in range(count))])
    for n, response in enumerate(responses):  # each answer is the version its patch made
        assert _identifiers(response.json())[-1] == f"p{n}"


def test_parallel_patches_with_the_same_if_match_exactly_one_wins(client: TestClient) -> None:
    """http.html#concurrency applies to PATCH too: one of N with ``If-Match: W/"1"`` wins,
    the others get 412 and change nothing."""
    count = N
    assert client.put("/fhir/Patient/x", json=patient("x", "seed")).status_code == 201
    headers = {**JSON_PATCH, "If-Match": 'W/"1"'}

    def add(n: int) -> Response:
        operation = {"op": "add", "path": "/identifier/-", "value": {"value": f"p{n}"}}
        return client.patch(
            "/fhir/Patient/x", content=f"[{json.dumps(operation)}]", headers=headers
        )

    responses = race(count, add)
    assert sorted(r.status_code for r in responses) == [200] + [412] * (count - 1)
    winner = next(n for n, r in enumerate(responses) if r.status_code == 200)
    current = client.get("/fhir/Patient/x")
    assert etag_version(current) == 2
    assert _identifiers(current.json()) == ["seed", f"p{winner}"]
    assert history(client, "/fhir/Patient/x")["total"] == 2
