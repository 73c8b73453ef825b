"""Synthea load over HTTP: the 100 Synthea R4 patients as transaction Bundles
(https://hl7.org/fhir/R4/http.html#transaction), ``POST [base]`` with the Bundle as the body.

Loads ``../shared/data/synthea/synthea-r4-100-patients.tar.gz`` (102 transaction Bundles, 28,245
resources): the two ``*Information*`` Bundles (hospitals, practitioners) first, then the patient
Bundles, from ``--clients`` concurrent clients (threads, one keep-alive httpx connection each)
against, in turn:

1. HealthBridge on SQLite (fresh database file), 2 Granian workers;
2. HealthBridge on PostgreSQL (a fresh scratch database, dropped afterwards), 2 Granian workers;
3. sekmet-fhir (started as ``python -m bench http`` starts it: one uvicorn process, its SQLite).

The Bundles are read into memory (raw bytes, sent as they are) before the clock starts. Timed:
from the first request to the last response. Reported per server: resources/s (resources in
successfully committed Bundles / wall time, the Information Bundles included), Bundles/s, per-Bundle
latency p50/p95/max, failed Bundles with the first error (status and OperationOutcome
diagnostics), the peak resident memory of the server's processes (sum of their RSS, sampled every
0.25 s), and a check of the loaded data: Patient/Encounter/Observation counts
(``_summary=count``) against the Bundles, a search by code, and that an Observation's subject was
rewritten from ``urn:uuid:`` to ``Patient/<id>`` and resolves.

Run: ``python -m bench load [--clients 8] [--patients N] [--skip-sqlite] [--skip-postgres]
[--skip-sekmet] [--postgres URL]``. Results: ``bench/results/synthea_load.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import httpx
except ImportError:  # the project's test extra installs the httpx2 distribution
    import httpx2 as httpx  # type: ignore[no-redef]

from bench.http_core import free_port, healthbridge, process, sekmet_python, sekmet_server

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DATA = ROOT.parent / "shared" / "data" / "synthea" / "synthea-r4-100-patients.tar.gz"
CHECK_CODE = "http://loinc.org|8302-2"  # body height: nearly every Synthea patient has it
CHECKED_TYPES = ("Patient", "Encounter", "Observation")


@dataclass(frozen=True, slots=True)
class BundleFile:
    name: str
    body: bytes
    entries: int
    types: Counter[str]
    information: bool


@dataclass(slots=True)
class Outcome:
    bundle: BundleFile
    status: int | None  # None: no HTTP response (transport error)
    seconds: float
    ok: bool
    error: str | None = None


@dataclass(slots=True)
class LoadRun:
    outcomes: list[Outcome] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    client_cpu: float = 0.0  # this process's CPU time while loading (it shares the cores)


def load_bundles(path: Path, patients: int | None) -> list[BundleFile]:
    """Every Bundle of the archive as raw bytes: Information Bundles first, then ``patients``
    patient Bundles (all when None), each group in file-name order."""
    info: list[BundleFile] = []
    people: list[BundleFile] = []
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is None or not member.name.endswith(".json"):
                continue
            raw = handle.read()
            bundle = json.loads(raw)
            entries = bundle.get("entry") or []
            name = Path(member.name).name
            item = BundleFile(
                name=name,
                body=raw,
                entries=len(entries),
                types=Counter(e["resource"]["resourceType"] for e in entries),
                information="Information" in name,
            )
            (info if item.information else people).append(item)
    info.sort(key=lambda b: b.name)
    people.sort(key=lambda b: b.name)
    return info + (people if patients is None else people[:patients])


def _diagnostics(content: bytes) -> str:
    """The OperationOutcome's diagnostics (or the start of the body when it is not one)."""
    try:
        body = json.loads(content)
    except ValueError:
        return content[:300].decode(errors="replace")
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        texts = [
            i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code", "")
            for i in body.get("issue") or []
        ]
        return " | ".join(str(t) for t in texts)[:600]
    return content[:300].decode(errors="replace")


def _judge(bundle: BundleFile, status: int, content: bytes) -> tuple[bool, str | None]:
    if status != 200:
        return False, f"HTTP {status}: {_diagnostics(content)}"
    try:
        body = json.loads(content)
    except ValueError:
        return False, f"HTTP 200 with a body that is not JSON: {content[:200]!r}"
    if not isinstance(body, dict) or body.get("type") != "transaction-response":
        return False, f"HTTP 200 but not a transaction-response: {str(body)[:200]}"
    answered = len(body.get("entry") or [])
    if answered != bundle.entries:
        return False, f"HTTP 200 but {answered} response entries for {bundle.entries} entries"
    return True, None


def _send(client: httpx.Client, url: str, bundle: BundleFile, headers: dict[str, str]) -> Outcome:
    start = time.perf_counter()
    try:
        response = client.post(url, content=bundle.body, headers=headers)
        content = response.content
    except httpx.HTTPError as exc:
        seconds = time.perf_counter() - start
        return Outcome(bundle, None, seconds, False, f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - start
    ok, error = _judge(bundle, response.status_code, content)
    return Outcome(bundle, response.status_code, seconds, ok, error)


def _phase(
    clients: list[httpx.Client],
    url: str,
    bundles: list[BundleFile],
    headers: dict[str, str],
    run: LoadRun,
) -> None:
    """Send ``bundles`` from up to ``len(clients)`` threads, each taking the next one left."""
    pending = iter(bundles)
    lock = threading.Lock()

    def worker(client: httpx.Client) -> None:
        while True:
            with lock:
                bundle = next(pending, None)
            if bundle is None:
                return
            outcome = _send(client, url, bundle, headers)
            with lock:
                run.outcomes.append(outcome)

    threads = [
        threading.Thread(target=worker, args=(c,), daemon=True)
        for c in clients[: max(1, min(len(clients), len(bundles)))]
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def run_load(
    base: str, bundles: list[BundleFile], clients: int, timeout: float, prefer: str
) -> LoadRun:
    """Information Bundles first (all of them answered before any patient Bundle is sent, as a
    loader must when patient Bundles refer to them), then the patient Bundles."""
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    if prefer:
        headers["Prefer"] = prefer
    pool = [
        httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0), trust_env=False)
        for _ in range(clients)
    ]
    run = LoadRun()
    try:
        cpu = time.process_time()
        run.started = time.perf_counter()
        _phase(pool, base, [b for b in bundles if b.information], headers, run)
        _phase(pool, base, [b for b in bundles if not b.information], headers, run)
        run.ended = time.perf_counter()
        run.client_cpu = time.process_time() - cpu
    finally:
        for client in pool:
            client.close()
    return run


def _percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def summarise(run: LoadRun, clients: int) -> dict[str, Any]:
    wall = run.ended - run.started
    ok = [o for o in run.outcomes if o.ok]
    failed = [o for o in run.outcomes if not o.ok]
    resources = sum(o.bundle.entries for o in ok)
    latencies = sorted(o.seconds * 1000 for o in ok)
    first = failed[0] if failed else None  # outcomes are in the order the answers came
    return {
        "clients": clients,
        "bundles": len(run.outcomes),
        "bundles_ok": len(ok),
        "bundles_failed": len(failed),
        "resources_sent": sum(o.bundle.entries for o in run.outcomes),
        "resources_committed": resources,
        "wall_s": round(wall, 3),
        "client_cpu_s": round(run.client_cpu, 2),
        "resources_per_s": round(resources / wall, 1) if wall > 0 else None,
        "bundles_per_s": round(len(ok) / wall, 2) if wall > 0 else None,
        "latency_ms_ok": {
            "p50": _round(_percentile(latencies, 50)),
            "p95": _round(_percentile(latencies, 95)),
            "max": _round(latencies[-1] if latencies else None),
        },
        "failures_by_status": dict(
            Counter(str(o.status) if o.status else "no response" for o in failed)
        ),
        "first_error": {"bundle": first.bundle.name, "error": first.error} if first else None,
        "failed_bundles": [
            {"bundle": o.bundle.name, "entries": o.bundle.entries, "error": (o.error or "")[:300]}
            for o in failed[:20]
        ],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _count(client: httpx.Client, url: str) -> int:
    response = client.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {_diagnostics(response.content)}")
    total = response.json().get("total")
    if total is None:
        raise RuntimeError("no Bundle.total in the _summary=count answer")
    return int(total)


def verify(base: str, run: LoadRun) -> dict[str, Any]:
    """Check the loaded data through the server's own API; every check reports, none raises."""
    expected: Counter[str] = Counter()
    for outcome in run.outcomes:
        if outcome.ok:
            expected.update(outcome.bundle.types)
    result: dict[str, Any] = {"counts": {}, "ok": True}
    with httpx.Client(timeout=120.0, trust_env=False) as client:
        for kind in CHECKED_TYPES:
            try:
                found: int | str = _count(client, f"{base}/{kind}?_summary=count")
            except (httpx.HTTPError, RuntimeError, ValueError) as exc:
                found = f"error: {exc}"
            result["counts"][kind] = {"expected": expected[kind], "found": found}
            result["ok"] &= found == expected[kind]
        try:
            by_code: int | str = _count(
                client, f"{base}/Observation?code={CHECK_CODE}&_summary=count"
            )
            result["ok"] &= isinstance(by_code, int) and by_code > 0
        except (httpx.HTTPError, RuntimeError, ValueError) as exc:
            by_code = f"error: {exc}"
            result["ok"] = False
        result["observations_by_code"] = {"code": CHECK_CODE, "found": by_code}
        result["reference"] = _check_reference(client, base)
        result["ok"] &= result["reference"].get("ok", False)
    return result


def _check_reference(client: httpx.Client, base: str) -> dict[str, Any]:
    """One Observation found by code: its subject is ``Patient/<id>`` (possibly absolute), no
    ``urn:uuid:`` is left anywhere in it, and the Patient can be read."""
    try:
        response = client.get(f"{base}/Observation", params={"code": CHECK_CODE, "_count": "1"})
        if response.status_code != 200:
            return {"ok": False, "error": f"search HTTP {response.status_code}"}
        entries = response.json().get("entry") or []
        if not entries:
            return {"ok": False, "error": "no Observation with the code"}
        observation = entries[0]["resource"]
        reference = (observation.get("subject") or {}).get("reference", "")
        match = re.search(r"(?:^|/)(Patient/[^/]+)$", reference)
        leftover = "urn:uuid:" in json.dumps(observation)
        read = client.get(f"{base}/{match.group(1)}") if match else None
        return {
            "ok": bool(match) and not leftover and read is not None and read.status_code == 200,
            "observation": observation.get("id"),
            "subject": reference,
            "urn_uuid_left": leftover,
            "patient_read_status": read.status_code if read is not None else None,
        }
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


class RssSampler:
    """Peak of the summed resident memory of every process in one session (the server started
    with ``start_new_session``: its master and workers), read from /proc every ``every`` s."""

    def __init__(self, session: int, every: float = 0.25) -> None:
        self.session = session
        self.every = every
        self.peak_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def current_kib(self) -> int:
        total = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[3]) != self.session:
                    continue
                status = Path(entry.path, "status").read_text()
            except (OSError, ValueError, IndexError):
                continue
            found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
            total += int(found.group(1)) if found else 0
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, self.current_kib())
            self.samples += 1
            self._stop.wait(self.every)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def measure(
    name: str,
    cmd: list[str],
    env: dict[str, str],
    ready_url: str,
    base: str,
    log: Path,
    bundles: list[BundleFile],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Start the server, load, verify, stop; a failure is reported in the result, not raised."""
    print(f"{name}: loading {len(bundles)} Bundles from {args.clients} clients ...", flush=True)
    result: dict[str, Any] = {"server": name, "loadavg_before": os.getloadavg()}
    try:
        with process(cmd, env, ready_url, log, ready_s=120.0) as pid:
            sampler = RssSampler(pid).start()
            idle_kib = sampler.current_kib()
            try:
                run = run_load(base, bundles, args.clients, args.timeout, args.prefer)
                result.update(summarise(run, args.clients))
            finally:
                sampler.stop()
            result["rss_idle_mib"] = round(idle_kib / 1024, 1)
            result["rss_peak_mib"] = round(sampler.peak_kib / 1024, 1)
            result["loadavg_after"] = os.getloadavg()  # the 1-min figure covers the load
            result["verify"] = verify(base, run)
    except Exception as exc:  # report what happened and go on with the next server
        result["error"] = f"{type(exc).__name__}: {exc}"
        print(f"{name}: {result['error']}", flush=True)
    if (result.get("error") or result.get("bundles_failed")) and log.exists():
        result["server_log_tail"] = log.read_text(errors="replace")[-3000:]
    return result


def healthbridge_run(
    name: str, work: Path, database: str, bundles: list[BundleFile], args: argparse.Namespace
) -> dict[str, Any]:
    port = free_port()
    cmd, env = healthbridge(work, database, args.workers, port)
    result = measure(
        name,
        cmd,
        env,
        f"http://127.0.0.1:{port}/readyz",
        f"http://127.0.0.1:{port}/fhir",
        work / f"{name.replace(' ', '-').replace('/', '')}.log",
        bundles,
        args,
    )
    result["workers"] = args.workers
    return result


def sekmet_run(work: Path, bundles: list[BundleFile], args: argparse.Namespace) -> dict[str, Any]:
    """sekmet-fhir configured as ``bench/http_core.py`` runs it: its FHIR base is ``/fhir`` and
    ``POST /fhir`` with a transaction Bundle runs ``sekmet.fhir.bundle.process_bundle`` (all
    entries in one SQLite transaction, urn:uuid references rewritten)."""
    python = sekmet_python(work)
    cmd, env, base = sekmet_server(work)
    result = measure(
        "sekmet-fhir",
        cmd,
        env,
        f"{base}/metadata",
        base,
        work / "sekmet.log",
        bundles,
        args,
    )
    version = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('sekmet-fhir'))"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    result["workers"] = 1
    result["note"] = f"sekmet-fhir {version}: one uvicorn process, SQLite, simulator off"
    return result


def _psql(admin_url: str, sql: str) -> None:
    subprocess.run(["psql", admin_url, "-qc", sql], check=True, capture_output=True)


def _revision() -> str:
    """The commit the servers ran, ``+dirty`` when ``src/`` has uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    return git("rev-parse", "--short", "HEAD") + (
        "+dirty" if git("status", "--porcelain", "src") else ""
    )


def print_table(results: list[dict[str, Any]]) -> None:
    head = (
        f"{'server':<26} {'ok/sent':>8} {'res/s':>8} {'bundles/s':>9} {'p50 ms':>8} "
        f"{'p95 ms':>8} {'max ms':>8} {'RSS MiB':>8} {'fail':>5} {'load1':>5}  verify"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        if "error" in r and "bundles" not in r:
            print(f"{r['server']:<26} error: {r['error']}")
            continue
        lat = r["latency_ms_ok"]
        verified = r.get("verify", {}).get("ok")
        print(
            f"{r['server']:<26} {r['bundles_ok']:>3}/{r['bundles']:<4} "
            f"{_fmt(r['resources_per_s']):>8} {_fmt(r['bundles_per_s']):>9} "
            f"{_fmt(lat['p50']):>8} {_fmt(lat['p95']):>8} {_fmt(lat['max']):>8} "
            f"{_fmt(r.get('rss_peak_mib')):>8} {r['bundles_failed']:>5} "
            f"{_fmt(r.get('loadavg_after', [None])[0]):>5}  "
            f"{'ok' if verified else 'FAILED' if verified is False else '-'}"
        )
    for r in results:
        if r.get("error") and "bundles" in r:
            print(f"{r['server']}: error after loading: {r['error']}")
        if r.get("first_error"):
            first = r["first_error"]
            print(f"{r['server']}: first failure ({first['bundle']}): {first['error']}")
        check = r.get("verify")
        if check and not check["ok"]:
            print(f"{r['server']}: verification: {json.dumps(check)}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--patients", type=int, default=None, help="only the first N patients")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sekmet", action="store_true")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--workers", type=int, default=2, help="HealthBridge Granian workers")
    parser.add_argument("--timeout", type=float, default=900.0, help="per-Bundle timeout, s")
    parser.add_argument(
        "--prefer", default="return=minimal", help="Prefer header sent ('' for none)"
    )
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()

    revision = _revision()
    bundles = load_bundles(args.data, args.patients)
    total = sum(b.entries for b in bundles)
    size = sum(len(b.body) for b in bundles)
    print(f"{len(bundles)} Bundles, {total:,} resources, {size:,} B; HealthBridge {revision}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hb-load-") as tmp:
        work = Path(tmp)
        if not args.skip_sqlite:
            database = f"sqlite:///{work / 'load.db'}"
            results.append(healthbridge_run("HealthBridge / SQLite", work, database, bundles, args))
        if not args.skip_postgres:
            name = f"hb_load_{uuid.uuid4().hex[:8]}"
            try:
                _psql(args.postgres, f"CREATE DATABASE {name}")
            except (OSError, subprocess.CalledProcessError) as exc:
                message = getattr(exc, "stderr", b"") or str(exc)
                results.append({"server": "HealthBridge / PostgreSQL", "error": str(message)})
            else:
                try:
                    database = args.postgres.rsplit("/", 1)[0] + f"/{name}"
                    results.append(
                        healthbridge_run("HealthBridge / PostgreSQL", work, database, bundles, args)
                    )
                finally:
                    with suppress(OSError, subprocess.CalledProcessError):
                        _psql(args.postgres, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if not args.skip_sekmet:
            results.append(sekmet_run(work, bundles, args))
    report = {
        "when": time.time(),
        "healthbridge_revision": revision,
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "data": {
            "archive": str(args.data),
            "bundles": len(bundles),
            "resources": total,
            "patients": sum(not b.information for b in bundles),
        },
        "options": {
            "clients": args.clients,
            "workers": args.workers,
            "prefer": args.prefer,
            "timeout_s": args.timeout,
        },
        "results": results,
    }
    print()
    print_table(results)
    out = RESULTS / "synthea_load.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten: {out.relative_to(ROOT)}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
