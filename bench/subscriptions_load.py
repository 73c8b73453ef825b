"""Subscription notifications under a steady write load, end to end over loopback.

Subscriptions Backport IG (https://hl7.org/fhir/uv/subscriptions-backport/), rest-hook channel.
A real server (``healthbridge serve``, ``--workers`` Granian workers, SQLite by default or a
scratch PostgreSQL database with ``--postgres``, ``--no-auth``) and a loopback receiver in its
own process (raw asyncio HTTP/1.1, answers 200 at once, notes the arrival time of each
notification). Then:

1. **Write throughput without subscriptions**: closed-loop ``wrk`` (16 connections) creating
   Observations for ``--ratio-seconds``.
2. ``--subscriptions`` (100) active subscriptions, mixed: per patient group, the built-in
   ``lab-result-available`` topic filtered by ``patient``, a classic ``Observation?subject=...
   &code=...`` criteria and the built-in ``critical-lab-result`` topic filtered by ``patient``
   (``--fanout`` of these kinds per group, 1 to 3), plus a tenth that never match an Observation
   write (encounter, appointment and consent topics, and filters no write meets). Each write is a
   final, critical potassium result of one group's patient, so it matches exactly ``--fanout``
   subscriptions: at ``--rate`` writes/s the server owes ``rate * fanout`` notifications/s.
3. **Latency** (first round only): an open-loop load at ``--rate`` writes/s (default
   ``200 / fanout``: about 200 notifications/s) for ``--seconds``; then up to ``--drain``
   seconds for the rest to arrive. Per notification, commit-to-delivery latency = arrival at
   the receiver minus the write's ``meta.lastUpdated`` (and, as a check, minus the moment the
   client had the 201). Reports notifications/s delivered, p50/p95/p99/max, and any
   notification missing or unexpected.
4. **Write throughput with the subscriptions active** (closed-loop ``wrk``):

   * **mixed**: ``--mixed-share`` (1/8) of the writes are for the subscribed groups' patients
     and notify ``--fanout`` subscriptions, the rest for other patients: about 200
     notifications/s at 800 writes/s, the issue's steady load; the cost of having them active
     while they notify (the issue's ratio); then the receiver is waited for until quiet;
   * **matching none**: every write is for a patient no subscription names (matched against
     all of them, none triggers).

   Then the subscriptions are deleted. Steps 1, 2 and 4 make one round; ``--rounds`` (3) run
   one after another and a last step 1 closes them. Each ratio is a phase over the mean of the
   without-phases just before and after it (the database grows by some 7,000 Observations a
   phase, and throughput with it drifts down: both sides of a ratio drift alike); the report
   gives the median over the rounds and each round's.
5. **Every write notifies** ``--fanout`` subscriptions (after the rounds, subscribed again):
   the server delivers as fast as it can while the writes go on (saturation, 1,000+
   notifications/s: reported, no target).

Targets (issue): p99 <= 1 s at 200 notifications/s, write ratio >= 0.8.

``BENCH_KEEP_DATABASE=1`` keeps the scratch PostgreSQL database (its delivery rows say when each
event was queued and delivered); ``BENCH_SERVER_LOG`` and ``BENCH_LOG_LEVEL`` keep the server's log.

Run: ``python -m bench subscriptions [--rate R] [--seconds 30] [--subscriptions 100]
[--fanout 2] [--workers 2] [--ratio-seconds 10] [--rounds 3] [--mixed-share 0.125]
[--postgres URL]``. Needs ``wrk``. The default run takes about three minutes on SQLite. Results:
``bench/results/subscriptions_load.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx2

from bench.http_core import (
    RESULTS,
    free_port,
    healthbridge,
    postgres_database,
    process,
    run_wrk,
)

LAB_TOPIC = "http://healthbridge.dev/fhir/SubscriptionTopic/lab-result-available"
CRITICAL_TOPIC = "http://healthbridge.dev/fhir/SubscriptionTopic/critical-lab-result"
OTHER_TOPICS = (
    ("http://healthbridge.dev/fhir/SubscriptionTopic/encounter-start-discharge", "Encounter"),
    ("http://healthbridge.dev/fhir/SubscriptionTopic/appointment-changed", "Appointment"),
    ("http://healthbridge.dev/fhir/SubscriptionTopic/consent-changed", "Consent"),
)
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
POTASSIUM = "http://loinc.org|2823-3"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
OBSERVATION = (
    '{"resourceType": "Observation", "status": "final", '
    f'"category": [{{"coding": [{{"system": "{CATEGORY}", "code": "laboratory"}}]}}], '
    '"code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]}, '
    '"subject": {"reference": "Patient/bench-%s"}, '
    '"valueQuantity": {"value": 7.1, "unit": "mmol/L", "system": "http://unitsofmeasure.org", '
    '"code": "mmol/L"}}'
)
"""A final laboratory potassium of 7.1 mmol/L (critical: above 6.2), for patient bench-<n>."""


# --- the receiver (its own process) -------------------------------------------------------------


def _receiver_main(port: int, ready: Any) -> None:
    asyncio.run(_receive(port, ready))


async def _receive(port: int, ready: Any) -> None:
    arrivals: list[tuple[float, bytes]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                if head.startswith(b"GET /arrivals"):
                    answer = json.dumps([(t, b.decode()) for t, b in arrivals]).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
                    writer.write(b"Content-Length: %d\r\n\r\n" % len(answer) + answer)
                else:
                    arrivals.append((time.time(), head + body))
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=512)
    ready.set()
    async with server:
        await server.serve_forever()


@dataclass(frozen=True)
class Arrival:
    at: float  # wall clock, seconds
    type: str
    subscription: str
    events: tuple[tuple[int, str], ...]  # (event number, focus id)


def parse_arrival(at: float, request: str) -> Arrival:
    """The notification as sent: the subscription and event numbers from the headers, the
    focus from the body (a notification Bundle whose SubscriptionStatus names it, or for a
    classic subscription the resource itself)."""
    head, _, body = request.partition("\r\n\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in head.split("\r\n")[1:])
    }
    subscription = headers.get("x-healthbridge-subscription", "")
    numbers = [int(n) for n in headers.get("x-healthbridge-event-numbers", "").split(",") if n]
    kind = "event-notification" if numbers else "handshake"
    foci: list[str] = []
    if body:
        found = json.loads(body)
        if found.get("resourceType") == "Bundle":
            status = found["entry"][0]["resource"]
            for parameter in status["parameter"]:
                if parameter["name"] == "type":
                    kind = parameter["valueCode"]
                elif parameter["name"] == "notification-event":
                    parts = {p["name"]: p for p in parameter["part"]}
                    focus = parts.get("focus", {}).get("valueReference", {}).get("reference")
                    foci.append((focus or "").rsplit("/", 1)[-1])
        else:
            foci.append(str(found.get("id", "")))
    events = tuple(zip(numbers, foci + [""] * (len(numbers) - len(foci)), strict=False))
    return Arrival(at, kind, subscription, events)


def arrivals(receiver: str) -> list[Arrival]:
    with urllib.request.urlopen(f"{receiver}/arrivals", timeout=60) as response:
        return [parse_arrival(t, body) for t, body in json.loads(response.read())]


# --- subscriptions ------------------------------------------------------------------------------


def topic_based(endpoint: str, topic: str, filters: list[str]) -> dict[str, Any]:
    extensions = [{"url": BACKPORT + "backport-filter-criteria", "valueString": f} for f in filters]
    return {
        "resourceType": "Subscription",
        "meta": {"profile": [BACKPORT + "backport-subscription"]},
        "status": "requested",
        "reason": "benchmark",
        "criteria": topic,
        "_criteria": {"extension": extensions},
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [
                    {"url": BACKPORT + "backport-payload-content", "valueCode": "id-only"}
                ]
            },
        },
    }


def classic(endpoint: str, criteria: str) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "benchmark",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"},
    }


@dataclass
class Plan:
    """The subscriptions to create and which of them each patient group's writes match."""

    groups: int
    matching: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (group, body)
    others: list[dict[str, Any]] = field(default_factory=list)


def plan(endpoint: str, subscriptions: int, fanout: int) -> Plan:
    others = max(subscriptions // 10, 0)
    groups = (subscriptions - others) // fanout
    made = Plan(groups)
    for group in range(groups):
        patient = f"Patient/bench-{group}"
        kinds = [
            topic_based(endpoint, LAB_TOPIC, [f"Observation?patient={patient}"]),
            classic(endpoint, f"Observation?subject={patient}&code={POTASSIUM}"),
            topic_based(endpoint, CRITICAL_TOPIC, [f"Observation?patient={patient}"]),
        ]
        made.matching += [(group, body) for body in kinds[:fanout]]
    for n in range(subscriptions - len(made.matching)):
        kind = n % 5
        if kind < 3:
            topic, type = OTHER_TOPICS[kind]
            made.others.append(
                topic_based(endpoint, topic, [f"{type}?patient=Patient/bench-{n % groups}"])
            )
        elif kind == 3:  # an Observation topic whose filter no write meets
            made.others.append(
                topic_based(endpoint, CRITICAL_TOPIC, ["Observation?patient=Patient/nobody"])
            )
        else:  # classic criteria with a code no write has
            made.others.append(classic(endpoint, "Observation?code=http://loinc.org|718-7"))
    return made


def subscribe(base: str, made: Plan) -> tuple[dict[str, int], list[str]]:
    """Create the subscriptions: (matching subscription id -> its group, every id)."""
    group_of: dict[str, int] = {}
    ids: list[str] = []
    with httpx2.Client(base_url=base, timeout=30) as http:
        for group, body in [*made.matching, *[(-1, b) for b in made.others]]:
            answer = http.post("/Subscription", json=body)
            answer.raise_for_status()
            id = answer.json()["id"]
            ids.append(id)
            if group >= 0:
                group_of[id] = group
    return group_of, ids


def wait_for_handshakes(receiver: str, ids: list[str], timeout: float = 120.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        shaken = {a.subscription for a in arrivals(receiver) if a.type == "handshake"}
        if shaken >= set(ids):
            return time.monotonic() - started
        time.sleep(0.5)
    raise RuntimeError(f"only {len(shaken)} of {len(ids)} handshakes in {timeout} s")


# --- the write load -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    id: str
    group: int
    committed: float  # meta.lastUpdated, wall clock
    answered: float  # when the client had the 201, wall clock


async def open_loop(base: str, rate: float, seconds: float, groups: int) -> tuple[list[Write], int]:
    """POST Observations at ``rate`` per second (open loop: on schedule, whatever the latency);
    the acknowledged writes and the number of failures."""
    done: list[Write] = []
    failed = 0
    limits = httpx2.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx2.AsyncClient(base_url=base, timeout=30, limits=limits) as http:

        async def one(n: int) -> None:
            nonlocal failed
            group = n % groups
            try:
                answer = await http.post(
                    "/Observation",
                    content=(OBSERVATION % group).encode(),
                    headers={"Content-Type": "application/fhir+json"},
                )
            except httpx2.HTTPError:
                failed += 1
                return
            if answer.status_code != 201:
                failed += 1
                return
            stored = answer.json()
            committed = datetime.fromisoformat(stored["meta"]["lastUpdated"]).timestamp()
            done.append(Write(stored["id"], group, committed, time.time()))

        tasks = []
        start = time.monotonic()
        for n in range(int(rate * seconds)):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
    return done, failed


def wrk_script(work: Path, groups: int, share: float = 1.0) -> Path:
    """Closed-loop Observation writes: a ``share`` of them for the patients of the subscribed
    groups (each such write matches ``--fanout`` subscriptions), the rest for other patients
    (matched against every subscription, none triggers)."""
    script = work / f"post_observation_{share:g}.lua"
    template = OBSERVATION.replace("%s", "%d").replace("\\", "\\\\").replace("'", "\\'")
    script.write_text(
        "math.randomseed(os.time())\n"
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/fhir+json"\n'
        "request = function()\n"
        f"  local patient = math.random({groups}, {groups * 10})\n"
        f"  if math.random() < {share} then patient = math.random(0, {groups - 1}) end\n"
        f"  local body = string.format('{template}', patient)\n"
        '  return wrk.format(nil, "/fhir/Observation", nil, body)\n'
        "end\n"
    )
    return script


WARM_UP_S = 10


def checkpoint(admin_url: str | None) -> None:
    """PostgreSQL: a CHECKPOINT before each closed-loop phase. The phases write WAL fast
    enough (full-page images included) to fill ``max_wal_size`` every minute or two, and the
    checkpoint it forces, with the full-page images after it, slows whichever 10 s phase it
    lands in: so every phase starts just after one instead (nothing on SQLite)."""
    if admin_url is not None:
        subprocess.run(["psql", admin_url, "-qc", "CHECKPOINT"], check=True, capture_output=True)


def closed_loop(port: int, script: Path, seconds: int) -> dict[str, Any]:
    return run_wrk(f"http://127.0.0.1:{port}/fhir/Observation", seconds, 16, script)


# --- results ------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latencies(
    writes: list[Write], got: list[Arrival], group_of: dict[str, int], window: tuple[float, float]
) -> dict[str, Any]:
    first: dict[tuple[str, str], float] = {}
    unexpected = 0
    for arrival in got:
        if arrival.type != "event-notification":
            continue
        if arrival.subscription not in group_of:
            unexpected += len(arrival.events)
        for _number, focus in arrival.events:
            key = (arrival.subscription, focus)
            first[key] = min(first.get(key, arrival.at), arrival.at)
    subscribers: dict[int, list[str]] = {}
    for id, group in group_of.items():
        subscribers.setdefault(group, []).append(id)
    from_commit, from_answer, missing = [], [], 0
    for write in writes:
        for id in subscribers.get(write.group, []):
            at = first.get((id, write.id))
            if at is None:
                missing += 1
                continue
            from_commit.append(at - write.committed)
            from_answer.append(at - write.answered)
    start, end = window
    in_window = sum(
        len(a.events) for a in got if a.type == "event-notification" and start <= a.at <= end
    )
    expected = sum(len(subscribers.get(w.group, [])) for w in writes)
    result: dict[str, Any] = {
        "notifications_expected": expected,
        "notifications_delivered": len(from_commit),
        "notifications_missing": missing,
        "notifications_unexpected": unexpected,
        "notifications_per_s_during_load": round(in_window / (end - start), 1),
    }
    if from_commit:
        last = max(first.values())
        result["notifications_per_s_overall"] = round(len(from_commit) / (last - start), 1)
        for name, values in (("commit", from_commit), ("response", from_answer)):
            result[f"latency_from_{name}_ms"] = {
                "p50": round(percentile(values, 0.50) * 1000, 1),
                "p95": round(percentile(values, 0.95) * 1000, 1),
                "p99": round(percentile(values, 0.99) * 1000, 1),
                "max": round(max(values) * 1000, 1),
                "mean": round(statistics.fmean(values) * 1000, 1),
            }
    return result


def drain(receiver: str, expected: int, seconds: float) -> list[Arrival]:
    deadline = time.monotonic() + seconds
    while True:
        got = arrivals(receiver)
        count = sum(len(a.events) for a in got if a.type == "event-notification")
        if count >= expected or time.monotonic() > deadline:
            return got
        time.sleep(1.0)


def delete_all(base: str, ids: list[str]) -> None:
    with httpx2.Client(base_url=base, timeout=30) as http:
        for id in ids:
            http.delete(f"/Subscription/{id}").raise_for_status()


def run(args: argparse.Namespace, work: Path, database: str) -> dict[str, Any]:
    rate = args.rate or 200.0 / args.fanout
    receiver_port, port = free_port(), free_port()
    receiver = f"http://127.0.0.1:{receiver_port}"
    ready = multiprocessing.get_context("spawn").Event()
    inbox = multiprocessing.get_context("spawn").Process(
        target=_receiver_main, args=(receiver_port, ready), daemon=True
    )
    inbox.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the receiver did not start")
        cmd, env = healthbridge(work, database, args.workers, port)
        env |= {
            "HEALTHBRIDGE_ACCESS_LOG": "false",
            "HEALTHBRIDGE_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warning"),
            "HEALTHBRIDGE_OUTBOUND_ALLOWED_HOSTS": f"127.0.0.1:{receiver_port}",
            "HEALTHBRIDGE_SUBSCRIPTION_MAX_PER_CLIENT": str(args.subscriptions + 10),
        }
        base = f"http://127.0.0.1:{port}/fhir"
        log = Path(os.environ.get("BENCH_SERVER_LOG", work / "server.log"))
        with process(cmd, env, f"http://127.0.0.1:{port}/readyz", log):
            return measure(args, work, base, port, receiver, rate)
    finally:
        inbox.kill()
        inbox.join(10)


def quiet(receiver: str, still_s: float = 1.5, timeout: float = 120.0) -> list[Arrival]:
    """The arrivals once no new one has come for ``still_s`` (the queue is drained)."""
    deadline = time.monotonic() + timeout
    got = arrivals(receiver)
    while time.monotonic() < deadline:
        time.sleep(still_s)
        now = arrivals(receiver)
        if len(now) == len(got):
            return now
        got = now
    return got


def ratio(with_: float, without: list[float]) -> float:
    return round(with_ / statistics.fmean(without), 3)


def measure(
    args: argparse.Namespace, work: Path, base: str, port: int, receiver: str, rate: float
) -> dict[str, Any]:
    """Rounds of: writes without subscriptions, subscribe, [the latency load, first round
    only], mixed writes, writes matching none, delete them; then writes without once more and
    the saturation phase. Each ratio is a phase over the mean of the without-phases just
    before and just after it, so that the database's growth and the machine's drift touch both
    sides alike; the report gives the median over the rounds and their range."""
    made = plan(f"{receiver}/hook", args.subscriptions, args.fanout)
    script = wrk_script(work, made.groups)
    mixed_script = wrk_script(work, made.groups, args.mixed_share)
    unmatched_script = wrk_script(work, made.groups, 0.0)
    closed_loop(port, mixed_script, WARM_UP_S)  # caches, prepared statements, the first pages

    def phase(script: Path) -> dict[str, Any]:
        checkpoint(args.postgres)
        return closed_loop(port, script, args.ratio_seconds)

    withouts: list[dict[str, Any]] = []
    mixed: list[dict[str, Any]] = []
    unmatched: list[dict[str, Any]] = []
    load: dict[str, Any] = {}
    for round_ in range(args.rounds):
        print(f"round {round_ + 1} of {args.rounds}: writes, no subscriptions...", flush=True)
        withouts.append(phase(mixed_script))
        group_of, ids = subscribe(base, made)
        handshakes_s = wait_for_handshakes(receiver, ids)
        if round_ == 0:
            load = latency_phase(args, base, receiver, rate, made, group_of, len(ids))
            load["handshakes_s"] = round(handshakes_s, 1)
        print(f"round {round_ + 1}: writes, {args.mixed_share:g} of them notifying...", flush=True)
        window = time.time()
        measured = phase(mixed_script)
        ended = time.time()
        sent = sum(1 for a in quiet(receiver) if window <= a.at <= ended)
        measured["notifications_per_s"] = round(sent / (ended - window), 1)
        mixed.append(measured)
        print(f"round {round_ + 1}: writes no subscription matches...", flush=True)
        unmatched.append(phase(unmatched_script))
        quiet(receiver)
        delete_all(base, ids)
        time.sleep(3)  # the dispatcher sees the deletes
    print("writes, no subscriptions...", flush=True)
    withouts.append(phase(mixed_script))
    _, ids = subscribe(base, made)
    wait_for_handshakes(receiver, ids)
    print("writes, every one notifying (saturation)...", flush=True)
    saturated = phase(script)
    rates = [w["requests_per_s"] for w in withouts]
    mixed_ratios = [ratio(m["requests_per_s"], rates[r : r + 2]) for r, m in enumerate(mixed)]
    unmatched_ratios = [
        ratio(u["requests_per_s"], rates[r : r + 2]) for r, u in enumerate(unmatched)
    ]
    return {
        "load": load,
        "rounds": args.rounds,
        "mixed_share": args.mixed_share,
        "writes_without_subscriptions": withouts,
        "writes_mixed": mixed,
        "write_ratio_mixed": mixed_ratios,
        "write_ratio_mixed_median": statistics.median(mixed_ratios),
        "writes_matching_none": unmatched,
        "write_ratio_matching_none": unmatched_ratios,
        "write_ratio_matching_none_median": statistics.median(unmatched_ratios),
        "writes_every_one_notifying": saturated,
        "write_ratio_every_one_notifying": ratio(saturated["requests_per_s"], rates[-2:]),
    }


def latency_phase(
    args: argparse.Namespace,
    base: str,
    receiver: str,
    rate: float,
    made: Plan,
    group_of: dict[str, int],
    active: int,
) -> dict[str, Any]:
    print(
        f"{active} subscriptions active ({len(group_of)} matching, fan-out {args.fanout}); "
        f"open-loop {rate:g} writes/s for {args.seconds} s...",
        flush=True,
    )
    start = time.time()
    writes, failed = asyncio.run(open_loop(base, rate, args.seconds, made.groups))
    end = time.time()
    expected = len(writes) * args.fanout
    got = [a for a in drain(receiver, expected, args.drain) if a.at >= start]
    result = latencies(writes, got, group_of, (start, end))
    quiet(receiver)
    return result | {
        "write_rate_target": rate,
        "writes_acknowledged": len(writes),
        "writes_failed": failed,
    }


def _spread(ratios: list[float]) -> str:
    return f"median {statistics.median(ratios)} (rounds: {', '.join(map(str, ratios))})"


def report(results: dict[str, Any]) -> None:
    load = results["load"]
    print(
        f"\nnotifications: {load['notifications_delivered']} of "
        f"{load['notifications_expected']} delivered ({load['notifications_missing']} missing, "
        f"{load['notifications_unexpected']} unexpected); "
        f"{load['notifications_per_s_during_load']}/s during the load"
    )
    latency = load.get("latency_from_commit_ms")
    if latency:
        print(
            f"commit-to-delivery latency: p50 {latency['p50']} ms, p95 {latency['p95']} ms, "
            f"p99 {latency['p99']} ms (target <= 1000), max {latency['max']} ms"
        )
    without = ", ".join(
        f"{w['requests_per_s']:.0f}" for w in results["writes_without_subscriptions"]
    )
    print(f"closed-loop writes/s without subscriptions: {without}")
    mixed = ", ".join(
        f"{m['requests_per_s']:.0f} ({m['notifications_per_s']} notifications/s)"
        for m in results["writes_mixed"]
    )
    print(
        f"closed-loop writes/s, {results['mixed_share']:g} of them notifying: {mixed}; "
        f"ratio {_spread(results['write_ratio_mixed'])} (target >= 0.8)"
    )
    unmatched = ", ".join(f"{u['requests_per_s']:.0f}" for u in results["writes_matching_none"])
    print(
        f"closed-loop writes/s that no subscription matches, all active: {unmatched}; "
        f"ratio {_spread(results['write_ratio_matching_none'])}"
    )
    print(
        "closed-loop writes/s that each notify: "
        f"{results['writes_every_one_notifying']['requests_per_s']:.0f}: ratio "
        f"{results['write_ratio_every_one_notifying']} (saturation: the server owes --fanout "
        "notifications a write)"
    )


def drop_database(admin_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[-1]
    subprocess.run(
        ["psql", admin_url, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
        check=False,
        capture_output=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=None, help="writes/s (200 / fanout)")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument("--fanout", type=int, default=2, choices=(1, 2, 3))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ratio-seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the ratio phases")
    parser.add_argument(
        "--mixed-share",
        type=float,
        default=0.125,
        help="share of the mixed closed-loop writes that notify (1/8: about 200 "
        "notifications/s at 800 writes/s with fan-out 2)",
    )
    parser.add_argument("--drain", type=float, default=30.0, help="seconds to wait for the rest")
    parser.add_argument("--postgres", default=None, help="admin URL: run on a scratch database")
    parser.add_argument("--output", default=str(RESULTS / "subscriptions_load.json"))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    with tempfile.TemporaryDirectory(prefix="hb-bench-subs-") as tmp:
        work = Path(tmp)
        database = f"sqlite:///{work / 'bench.db'}"
        if args.postgres:
            found = postgres_database(args.postgres)
            if found is None:
                raise SystemExit("PostgreSQL is not available")
            database = found
        try:
            results = run(args, work, database)
        finally:
            if args.postgres and not os.environ.get("BENCH_KEEP_DATABASE"):
                drop_database(args.postgres, database)
            elif args.postgres:
                print(f"kept {database}")
    results |= {
        "backend": "postgresql" if args.postgres else "sqlite",
        "workers": args.workers,
        "subscriptions": args.subscriptions,
        "fanout": args.fanout,
        "seconds": args.seconds,
        "machine": {"cores": os.cpu_count()},
        "when": time.time(),
    }
    report(results)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {args.output}")


if __name__ == "__main__":
    main()
