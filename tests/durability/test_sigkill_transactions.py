"""kill -9 inside a transaction Bundle: all entries or none
(https://hl7.org/fhir/R4/http.html#transaction).

Client threads post transaction Bundles of 50 entries to ``[base]`` (25 Patients with
``urn:uuid:`` fullUrls and 25 Observations whose subject references them); the server is killed
with SIGKILL at random moments and restarted on the same database. After each restart, for every
Bundle (its entries carry an identifier system of its own):

* answered 200 (a ``transaction-response`` Bundle whose 50 entries are ``201 Created`` with
  their locations): all 50 resources are there, with exactly the content sent, the references
  resolved to the Patients created with them (http.html#trules: ``urn:uuid`` references are
  replaced by the new ids);
* answered with an error, or in flight at the kill: all 50 there, or none.

The type counts (``_summary=count``) equal 25 per committed Bundle, so nothing else leaked out.
Short form: 3 cycles; full form: ``HEALTHBRIDGE_DURABILITY_CYCLES=50`` (docs/durability.md).
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx2

from tests.durability.conftest import ServerFactory, kill_cycles
from tests.durability.patients import count, match_ids, search, without_meta

PAIRS = 25  # Patients, each with one Observation: 50 entries
POSTERS = 3
ACK_WAIT_S = 60.0


@dataclass
class Posted:
    system: str
    bundle: dict[str, Any]
    state: Literal["pending", "acked", "failed"] = "pending"
    status: int | None = None
    locations: list[str] = field(default_factory=list)


def transaction(rng: random.Random) -> Posted:
    system = f"urn:durability:bundle:{uuid.UUID(int=rng.getrandbits(128), version=4).hex}"
    patients, observations = [], []
    for n in range(PAIRS):
        full_url = f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"
        patient = {
            "resourceType": "Patient",
            "identifier": [{"system": system, "value": f"p{n}"}],
            "name": [{"family": f"B{rng.getrandbits(48):012x}"}],
            "birthDate": f"{rng.randint(1930, 2020)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
        }
        observation = {
            "resourceType": "Observation",
            "identifier": [{"system": system, "value": f"o{n}"}],
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": full_url},
            "effectiveDateTime": "2024-05-01T10:00:00Z",
            "valueQuantity": {
                "value": rng.randint(40, 180),
                "unit": "beats/minute",
                "system": "http://unitsofmeasure.org",
                "code": "/min",
            },
        }
        patients.append(
            {
                "fullUrl": full_url,
                "resource": patient,
                "request": {"method": "POST", "url": "Patient"},
            }
        )
        observations.append(
            {"resource": observation, "request": {"method": "POST", "url": "Observation"}}
        )
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": patients + observations}
    return Posted(system, bundle)


class Poster(threading.Thread):
    """Posts transaction Bundles one after the other until the server dies or ``stop``."""

    def __init__(
        self, base: str, seed: int, stop: threading.Event, acked: threading.Semaphore
    ) -> None:
        super().__init__(name=f"poster-{seed}", daemon=True)
        self.base = base
        self.rng = random.Random(seed)
        self.stop = stop
        self.acked = acked
        self.posted: list[Posted] = []
        self.bad: list[tuple[int, str]] = []
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx2.Client(base_url=self.base, timeout=httpx2.Timeout(30.0)) as http:
                while not self.stop.is_set() and not self.bad:
                    posted = transaction(self.rng)
                    self.posted.append(posted)
                    try:
                        response = http.post("", json=posted.bundle)
                    except httpx2.TimeoutException as exc:  # no answer in 30 s: a hang
                        self.bad.append((0, f"no answer: {exc!r}"))
                        return
                    except httpx2.TransportError:  # killed: the Bundle stays "pending"
                        return
                    self._record(posted, response)
        except BaseException as exc:
            self.failure = exc

    def _record(self, posted: Posted, response: httpx2.Response) -> None:
        posted.status = response.status_code
        if response.status_code != 200:
            posted.state = "failed"
            if response.status_code != 503:  # unavailable: nothing written (allowed)
                self.bad.append((response.status_code, response.text[:500]))
            return
        reply = response.json()
        assert reply["resourceType"] == "Bundle" and reply["type"] == "transaction-response"
        entries = reply["entry"]
        assert len(entries) == 2 * PAIRS
        for sent, entry in zip(posted.bundle["entry"], entries, strict=True):
            assert entry["response"]["status"].startswith("201"), entry
            location = entry["response"]["location"]
            assert (
                location.split("/")[-4 if "/_history/" in location else -2]
                == (sent["request"]["url"])
            ), location
            posted.locations.append(location)
        posted.state = "acked"
        self.acked.release()


def _id_of(location: str) -> str:
    """``[base/]Type/id[/_history/n]`` -> id."""
    parts = location.split("/")
    return parts[-3] if "/_history/" in location else parts[-1]


def check_bundle(http: httpx2.Client, posted: Posted) -> int:
    """All 50 entries of ``posted`` are there or none (and all when it was acknowledged), with
    exactly the content sent; resolves a pending Bundle. The number of pairs now stored."""
    where = f"Bundle {posted.system} ({posted.state}, status {posted.status})"
    found = {
        kind: search(http, kind, {"identifier": f"{posted.system}|", "_count": "100"})
        for kind in ("Patient", "Observation")
    }
    resources = {
        kind: [e["resource"] for e in bundle.get("entry", [])] for kind, bundle in found.items()
    }
    sizes = {kind: len(items) for kind, items in resources.items()}
    if posted.state == "acked":
        assert sizes == {"Patient": PAIRS, "Observation": PAIRS}, where
    else:
        assert sizes in (
            {"Patient": 0, "Observation": 0},
            {"Patient": PAIRS, "Observation": PAIRS},
        ), f"{where}: half a transaction is stored: {sizes}"
        if posted.state == "failed":
            assert sizes["Patient"] == 0, f"{where}: a failed transaction left its entries"
        posted.state = "acked" if sizes["Patient"] else "failed"
    if sizes["Patient"] == 0:
        return 0
    by_value = {
        kind: {r["identifier"][0]["value"]: r for r in items} for kind, items in resources.items()
    }
    if posted.locations:  # acknowledged: the ids are those the response named
        ids = {_id_of(loc) for loc in posted.locations}
        assert {r["id"] for items in resources.values() for r in items} == ids, where
    patient_ids: dict[str, str] = {}
    for entry in posted.bundle["entry"]:
        sent = entry["resource"]
        kind, value = sent["resourceType"], sent["identifier"][0]["value"]
        stored = by_value[kind][value]
        assert stored["meta"]["versionId"] == "1", where
        expected = {**sent, "id": stored["id"]}
        if kind == "Patient":
            patient_ids[entry["fullUrl"]] = stored["id"]
        else:
            reference = f"Patient/{patient_ids[sent['subject']['reference']]}"
            expected["subject"] = {"reference": reference}
        assert without_meta(stored) == expected, where
    by_chain = {"subject:Patient.identifier": f"{posted.system}|", "_count": "100"}
    assert sorted(match_ids(search(http, "Observation", by_chain))) == sorted(
        r["id"] for r in resources["Observation"]
    ), f"{where}: the reference index does not lead to the Patients"
    return PAIRS


def test_transaction_bundles_are_all_or_nothing_across_sigkill(
    scratch_url: str, servers: ServerFactory
) -> None:
    seed = int(os.environ.get("HEALTHBRIDGE_DURABILITY_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    print(f"HEALTHBRIDGE_DURABILITY_SEED={seed}")  # shown with a failure: replays the choices
    server = servers(scratch_url)
    server.start()
    everything: list[Posted] = []
    for cycle in range(1, kill_cycles() + 1):
        where = f"cycle {cycle}, seed {seed}"
        stop, acked = threading.Event(), threading.Semaphore(0)
        posters = [Poster(server.base, rng.getrandbits(32), stop, acked) for _ in range(POSTERS)]
        for poster in posters:
            poster.start()
        wanted = rng.randint(1, 4)  # Bundles committed before the kill, at least
        deadline = time.monotonic() + ACK_WAIT_S
        while wanted and time.monotonic() < deadline and any(p.is_alive() for p in posters):
            wanted -= acked.acquire(timeout=0.1)
        time.sleep(rng.uniform(0, 0.3))  # the kill lands at a random moment of the load
        server.kill()
        stop.set()
        for poster in posters:
            poster.join(timeout=60)
            assert not poster.is_alive(), f"a client hung after the kill ({where})"
            if poster.failure is not None:
                raise poster.failure
            assert poster.bad == [], (
                f"POST [base] with a transaction Bundle must answer 200 with a "
                f"transaction-response Bundle (or 503), got {poster.bad[0][0]}: "
                f"{poster.bad[0][1]} ({where})"
            )
        assert wanted == 0, f"too few transactions were acknowledged in {ACK_WAIT_S} s ({where})"

        server.start()
        with server.client() as http:
            batch = [posted for poster in posters for posted in poster.posted]
            everything += batch
            for posted in batch:
                check_bundle(http, posted)
            committed = sum(PAIRS for posted in everything if posted.state == "acked")
            assert count(http, "Patient", {}) == committed, where
            assert count(http, "Observation", {}) == committed, where
            code = {"code": "http://loinc.org|8867-4"}
            assert count(http, "Observation", code) == committed, where
