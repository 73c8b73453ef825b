"""A transaction or batch spends from the client's rate-limit budget by its entries
(SECURITY.md: weighted per-client limits; security/ratelimit.py ``bundle_cost``): a Bundle of
many entries cannot pass for one request. The client is charged once the Bundle is read, before
any entry runs, and a refused Bundle is a 429 with nothing done."""

from __future__ import annotations

from pathlib import Path

from tests.auth.conftest import make_harness


def _batch(entries: int) -> dict[str, object]:
    return {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": "Patient/p1"}} for _ in range(entries)],
    }


def test_a_batch_is_charged_per_entry(tmp_path: Path) -> None:
    # 10 units for the Bundle + 1 per entry; the budget is 60 units a minute per client
    for harness in make_harness(
        "memory", tmp_path, rate_limits=True, rate_limit_client="60/minute"
    ):
        token = harness.tokens("pat")["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
        first = harness.client.post("/fhir", json=_batch(30), headers=headers)  # 40 units
        assert first.status_code == 200, first.text
        assert all(e["response"]["status"] == "200 OK" for e in first.json()["entry"])
        second = harness.client.post("/fhir", json=_batch(30), headers=headers)  # 40 more
        assert second.status_code == 429, second.text
        assert second.json()["issue"][0]["code"] == "throttled"
        assert int(second.headers["retry-after"]) >= 1
        small = harness.client.post("/fhir", json=_batch(5), headers=headers)  # 15 units: fits
        assert small.status_code == 200, small.text
        assert harness.fhir("Patient/p1", token).status_code == 200  # 1 unit
