"""A write load of Patient creates and updates over HTTP, and the ledger that checks it.

Each logical patient (its identifier ``urn:durability:key|<key>``) is written by one client
thread at a time, so its writes are sequential: the versions stored must be exactly the
acknowledged writes in order, plus possibly the one write in flight when the server was killed
(https://hl7.org/fhir/R4/http.html#versioning: consecutive versionIds; #update). Writes are
creates by ``POST`` (server-assigned id), creates by ``PUT`` (client id, update-as-create) and
updates by ``PUT``. Every version carries a fresh state token (identifier
``urn:durability:state|<token>``) and family name, so that a search by a changed value finds the
new version and not the old one (https://hl7.org/fhir/R4/search.html).
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx2

KEY = "urn:durability:key"
STATE = "urn:durability:state"
CHUNK = 100
"""Values per OR search (``identifier=a,b,...``) when checking many resources at once."""


@dataclass
class Write:
    method: Literal["POST", "PUT"]
    body: dict[str, Any]
    state: Literal["pending", "acked", "failed"] = "pending"
    version: int | None = None
    status: int | None = None


@dataclass
class Patient:
    key: str
    id: str | None
    writes: list[Write] = field(default_factory=list)
    gone: bool = False  # its create never committed
    cycle: int = 0  # the last kill cycle that wrote it

    def committed(self) -> list[Write]:
        return [w for w in self.writes if w.state == "acked"]

    def expected(self, write: Write) -> dict[str, Any]:
        """The stored content the write must produce (minus ``meta``)."""
        return {**write.body, "id": self.id}

    def current_state(self) -> str:
        return state_of(self.committed()[-1].body)

    def old_states(self) -> list[str]:
        return [state_of(w.body) for w in self.committed()[:-1]]


def state_of(body: dict[str, Any]) -> str:
    return next(i["value"] for i in body["identifier"] if i["system"] == STATE)


def patient_body(key: str, id: str | None, rng: random.Random) -> dict[str, Any]:
    token = f"{rng.getrandbits(64):016x}"
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": KEY, "value": key}, {"system": STATE, "value": token}],
        "name": [{"family": f"F{token}", "given": [f"G{rng.getrandbits(32):08x}"]}],
        "gender": rng.choice(["male", "female", "other", "unknown"]),
        "birthDate": f"{rng.randint(1920, 2020)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "active": rng.random() < 0.5,
    }
    if id is not None:
        body["id"] = id
    return body


def without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


def version_of(response: httpx2.Response) -> int:
    etag = response.headers["etag"]
    assert etag.startswith('W/"') and etag.endswith('"'), etag
    return int(etag[3:-1])


class Writer(threading.Thread):
    """One client: writes its patients one request at a time until the server dies (a
    transport error) or ``stop`` is set. Non-2xx answers are recorded as failed writes."""

    def __init__(
        self,
        base: str,
        patients: list[Patient],
        ledger: Ledger,
        seed: int,
        stop: threading.Event,
        cycle: int,
    ) -> None:
        super().__init__(name=f"writer-{cycle}-{seed}", daemon=True)
        self.cycle = cycle
        self.base = base
        self.patients = patients
        self.ledger = ledger
        self.rng = random.Random(seed)
        self.stop = stop
        self.transport_errors: list[BaseException] = []
        self.bad: list[tuple[int, str]] = []  # unexpected statuses with their bodies
        self.failure: BaseException | None = None  # re-raised by the test's thread

    def run(self) -> None:
        try:
            self._write()
        except BaseException as exc:
            self.failure = exc

    def _write(self) -> None:
        with httpx2.Client(base_url=self.base, timeout=httpx2.Timeout(20.0)) as http:
            while not self.stop.is_set() and not self.bad:
                patient, write = self._next_write()
                try:
                    response = self._send(http, patient, write)
                except httpx2.TimeoutException as exc:  # no answer in 20 s: a hang
                    self.bad.append((0, f"no answer: {exc!r}"))
                    return
                except httpx2.TransportError as exc:  # killed: the write stays "pending"
                    self.transport_errors.append(exc)
                    return
                self._record(patient, write, response)

    def _next_write(self) -> tuple[Patient, Write]:
        live = [p for p in self.patients if p.id is not None and not p.gone]
        if not live or self.rng.random() < 0.3:
            key = uuid.UUID(int=self.rng.getrandbits(128), version=4).hex
            by_put = self.rng.random() < 0.5
            patient = Patient(key, f"d-{key[:20]}" if by_put else None)
            self.patients.append(patient)
            self.ledger.add(patient)
            write = Write("PUT" if by_put else "POST", patient_body(key, patient.id, self.rng))
        else:
            patient = self.rng.choice(live)
            write = Write("PUT", patient_body(patient.key, patient.id, self.rng))
        patient.writes.append(write)
        patient.cycle = self.cycle
        return patient, write

    def _send(self, http: httpx2.Client, patient: Patient, write: Write) -> httpx2.Response:
        if write.method == "POST":
            return http.post("/Patient", json=write.body)
        return http.put(f"/Patient/{patient.id}", json=write.body)

    def _record(self, patient: Patient, write: Write, response: httpx2.Response) -> None:
        write.status = response.status_code
        if response.is_success:
            stored = response.json()
            if patient.id is None:
                patient.id = stored["id"]
            assert stored["id"] == patient.id
            write.version = version_of(response)
            assert stored["meta"]["versionId"] == str(write.version)
            assert without_meta(stored) == patient.expected(write)
            write.state = "acked"
            self.ledger.acked()
            return
        write.state = "failed"  # an error answer: nothing may have been written
        if response.status_code != 503:  # 503: unavailable, retry later (allowed)
            self.bad.append((response.status_code, response.text[:500]))


class Ledger:
    """Every logical patient ever written, and what was acknowledged."""

    def __init__(self) -> None:
        self.patients: list[Patient] = []
        self._lock = threading.Lock()
        self._acks = 0
        self.enough = threading.Event()
        self.ack_target = 0

    def add(self, patient: Patient) -> None:
        with self._lock:
            self.patients.append(patient)

    def acked(self) -> None:
        with self._lock:
            self._acks += 1
            if self._acks >= self.ack_target:
                self.enough.set()

    def expect_acks(self, more: int) -> None:
        with self._lock:
            self.ack_target = self._acks + more
            self.enough.clear()

    def live(self) -> list[Patient]:
        return [p for p in self.patients if not p.gone and p.committed()]

    def deal(self, hands: int, rng: random.Random) -> list[list[Patient]]:
        """The live patients shared out among ``hands`` writers (each patient to one)."""
        live = self.live()
        rng.shuffle(live)
        return [live[n::hands] for n in range(hands)]


# --- checking after a restart -------------------------------------------------------------


def search(
    http: httpx2.Client, resource_type: str, params: dict[str, str], *, whole: bool = True
) -> dict[str, Any]:
    """A search by POST ``[type]/_search`` (form parameters: long OR lists fit); ``whole``:
    the result must fit on this one page."""
    response = http.post(f"/{resource_type}/_search", data=params)
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    pages = {link["relation"] for link in bundle.get("link", [])}
    assert not whole or "next" not in pages, "raise _count"
    return bundle


def match_ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def count(http: httpx2.Client, resource_type: str, params: dict[str, str]) -> int:
    total: int = search(http, resource_type, {**params, "_summary": "count"})["total"]
    return total


def chunks(items: list[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def history_of(http: httpx2.Client, id: str) -> list[dict[str, Any]]:
    """Every version of Patient/id, oldest first."""
    response = http.get(f"/Patient/{id}/_history", params={"_count": "1000"})
    if response.status_code == 404:  # never created
        return []
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert "next" not in {link["relation"] for link in bundle.get("link", [])}
    return [entry["resource"] for entry in reversed(bundle.get("entry", []))]


def check_patient(http: httpx2.Client, patient: Patient) -> None:
    """The stored versions of ``patient`` are exactly its acknowledged writes, in order, plus
    perhaps its last write if that one was in flight at the kill; that write is resolved."""
    where = f"patient {patient.key} (id {patient.id}, writes {patient.writes})"
    if patient.id is None:  # only POST creates, none acknowledged: found by its key?
        found = match_ids(search(http, "Patient", {"identifier": f"{KEY}|{patient.key}"}))
        assert len(found) <= 1, where
        patient.id = found[0] if found else None
    pending = [w for w in patient.writes if w.state == "pending"]
    assert len(pending) <= 1 and (not pending or patient.writes[-1] is pending[0]), where
    if patient.id is None:
        assert not patient.committed(), where
        for write in pending:
            write.state = "failed"
        patient.gone = True
        return
    versions = history_of(http, patient.id)
    assert [int(v["meta"]["versionId"]) for v in versions] == list(range(1, len(versions) + 1))
    committed = patient.committed()
    for position, write in enumerate(committed, start=1):
        assert write.version == position, where
    stored = [without_meta(v) for v in versions]
    if pending and len(stored) == len(committed) + 1:  # the write in flight was committed
        pending[0].state, pending[0].version = "acked", len(stored)
    elif pending:
        pending[0].state = "failed"
    assert stored == [patient.expected(w) for w in patient.committed()], where
    if not patient.committed():
        patient.gone = True
        return
    current = http.get(f"/Patient/{patient.id}")
    assert current.status_code == 200, where
    assert version_of(current) == len(stored), where
    assert without_meta(current.json()) == stored[-1], where


def check_searches(http: httpx2.Client, ledger: Ledger, touched: Iterable[Patient]) -> None:
    """The search indexes agree with the current resources: every live patient is found by its
    key and by its current state token and family, none by a state it had before, and the
    counts (``_summary=count``, ``_total=accurate``) equal the live patients."""
    live = ledger.live()
    by_id = {p.id: p for p in live}
    assert count(http, "Patient", {}) == len(live)
    assert count(http, "Patient", {"identifier": f"{KEY}|"}) == len(live)
    accurate = search(http, "Patient", {"_total": "accurate", "_count": "1"}, whole=False)
    assert accurate["total"] == len(live)
    for group in chunks(live):
        for system, value in ((KEY, lambda p: p.key), (STATE, Patient.current_state)):
            values = ",".join(f"{system}|{value(p)}" for p in group)
            found = search(http, "Patient", {"identifier": values, "_count": "1000"})
            assert sorted(match_ids(found)) == sorted(p.id for p in group), system
        families = ",".join(f"F{p.current_state()}" for p in group)
        found = search(http, "Patient", {"family:exact": families, "_count": "1000"})
        assert sorted(match_ids(found)) == sorted(p.id for p in group)
    old = [(s, p) for p in touched if not p.gone and p.committed() for s in p.old_states()]
    for group_of_old in chunks(old):
        values = ",".join(f"{STATE}|{state}" for state, _ in group_of_old)
        stale = match_ids(search(http, "Patient", {"identifier": values, "_count": "1000"}))
        assert stale == [], [by_id[i].key for i in stale if i in by_id]
        families = ",".join(f"F{state}" for state, _ in group_of_old)
        stale = match_ids(search(http, "Patient", {"family:exact": families, "_count": "1000"}))
        assert stale == []
