"""kill -9 during writes: every acknowledged write survives (https://hl7.org/fhir/R4/http.html).

A real server (``healthbridge serve``, two Granian workers) takes creates and updates from
several client threads; at a random moment the whole server is killed with SIGKILL and started
again on the same database, several times. After each restart:

* every write the server acknowledged (2xx) is there with its versionId and exactly the content
  sent (http.html#create, #update: the stored resource minus ``meta``), and versionIds per
  resource run 1, 2, 3... with no gap (http.html#versioning); a write in flight at the kill is
  either wholly there as the next version or absent, and a write answered with an error is
  absent;
* the search indexes agree with the current resources (https://hl7.org/fhir/R4/search.html):
  each live patient is found by its identifier and by the values of its current version, never
  by a value an update replaced, and ``_summary=count``/``_total=accurate`` count the live
  patients exactly.

Short form: 3 cycles. Full form: ``HEALTHBRIDGE_DURABILITY_CYCLES=50`` (docs/durability.md);
``HEALTHBRIDGE_DURABILITY_SEED`` replays a run.
"""

from __future__ import annotations

import os
import random
import threading
import time

from tests.durability.conftest import ServerFactory, kill_cycles
from tests.durability.patients import Ledger, Writer, check_patient, check_searches

WRITERS = 4
ACK_WAIT_S = 60.0


def test_acknowledged_writes_survive_sigkill(scratch_url: str, servers: ServerFactory) -> None:
    seed = int(os.environ.get("HEALTHBRIDGE_DURABILITY_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    print(f"HEALTHBRIDGE_DURABILITY_SEED={seed}")  # shown with a failure: replays the choices
    server = servers(scratch_url, workers=2)
    ledger = Ledger()
    server.start()
    for cycle in range(1, kill_cycles() + 1):
        where = f"cycle {cycle}, seed {seed}"
        stop = threading.Event()
        hands = ledger.deal(WRITERS, rng)
        writers = [
            Writer(server.base, hand, ledger, rng.getrandbits(32), stop, cycle) for hand in hands
        ]
        ledger.expect_acks(rng.randint(5, 80))
        for writer in writers:
            writer.start()
        deadline = time.monotonic() + ACK_WAIT_S
        while time.monotonic() < deadline and any(w.is_alive() for w in writers):
            if ledger.enough.wait(0.1):
                break
        acknowledged = ledger.enough.is_set()
        time.sleep(rng.uniform(0, 0.4))  # the kill lands at a random moment of the load
        server.kill()
        stop.set()
        for writer in writers:
            writer.join(timeout=60)
            assert not writer.is_alive(), f"a client hung after the kill ({where})"
            if writer.failure is not None:
                raise writer.failure
            assert writer.bad == [], f"error answers other than 503 ({where}): {writer.bad}"
        assert acknowledged, f"no writes were acknowledged in {ACK_WAIT_S} s ({where})"

        server.start()
        with server.client() as http:
            touched = [p for p in ledger.patients if p.cycle == cycle]
            for patient in touched:
                check_patient(http, patient)
            check_searches(http, ledger, touched)
