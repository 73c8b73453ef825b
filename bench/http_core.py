"""REST benchmarks for the core server (issue: FHIR R4 server core), all on loopback.

Workloads, each driven by ``wrk`` from a separate process:
1. ``GET /fhir/Patient/{id}`` with 2 Granian workers: HealthBridge on SQLite vs a bare Starlette app
   returning the same bytes, both up at once and measured alternately 3 times (medians; the
   ratio is the figure), and vs sekmet-fhir.
2. ``POST /fhir/Patient`` creates with 16 concurrent connections: HealthBridge on SQLite and on
   PostgreSQL, and sekmet-fhir.

Run: ``python -m bench http [--duration 10] [--skip-sekmet] [--postgres URL]``. Needs ``wrk``
(``apt-get install wrk``). sekmet-fhir is installed into its own venv under the work directory
on first use (``pip install sekmet-fhir``). Results: ``bench/results/http_core.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PATIENT = {
    "resourceType": "Patient",
    "identifier": [{"system": "urn:bench:mrn", "value": "12345"}],
    "active": True,
    "name": [{"use": "official", "family": "Okafor", "given": ["Amara", "N."]}],
    "telecom": [{"system": "phone", "value": "555-0100", "use": "home"}],
    "gender": "female",
    "birthDate": "1980-02-29",
    "address": [
        {"line": ["1 Main St"], "city": "Springfield", "postalCode": "01101", "country": "US"}
    ],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up within {timeout}s")


@contextmanager
def process(
    cmd: list[str], env: dict[str, str], ready_url: str, log: Path, ready_s: float = 60.0
) -> Iterator[int]:
    """Start ``cmd`` in its own session, wait for ``ready_url``, yield its pid; stop the whole
    process group after (SIGTERM, then SIGKILL after 30 s)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_http(ready_url, timeout=ready_s)
            yield proc.pid
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                proc.wait()


def post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/fhir+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def run_wrk(
    url: str,
    duration: int,
    connections: int,
    script: Path | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", url]
    if script is not None:
        cmd[1:1] = ["-s", str(script)]
    for name, value in (headers or {}).items():
        cmd[1:1] = ["-H", f"{name}: {value}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:.*", out)
    latency = {
        m.group(1): _ms(m.group(2)) for m in re.finditer(r"\s+(50|75|90|99)%\s+([\d.]+\w+)", out)
    }
    return {
        "requests_per_s": rps,
        "p50_ms": latency.get("50"),
        "p99_ms": latency.get("99"),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(0) if socket_errors else None,
        "connections": connections,
        "duration_s": duration,
    }


def _ms(text: str) -> float:
    value = float(re.match(r"[\d.]+", text).group(0))  # type: ignore[union-attr]
    unit = text[len(re.match(r"[\d.]+", text).group(0)) :]  # type: ignore[union-attr]
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def post_script(work: Path) -> Path:
    script = work / "post_patient.lua"
    body = json.dumps(PATIENT).replace("\\", "\\\\").replace("'", "\\'")
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{body}'\n"
        'wrk.headers["Content-Type"] = "application/fhir+json"\n'
    )
    return script


def healthbridge(
    work: Path, database: str, workers: int, port: int
) -> tuple[list[str], dict[str, str]]:
    env = {
        **os.environ,
        "HEALTHBRIDGE_DATA_DIR": str(work / f"hb-{port}"),
        "HEALTHBRIDGE_DATABASE": database,
        "HEALTHBRIDGE_WORKERS": str(workers),
        "HEALTHBRIDGE_PORT": str(port),
        "HEALTHBRIDGE_NO_AUTH": "true",  # the load benchmarks measure storage, not tokens
        "HEALTHBRIDGE_ACCESS_LOG": os.environ.get("HEALTHBRIDGE_ACCESS_LOG", "true"),
    }
    return [sys.executable, "-m", "healthbridge.cli", "serve"], env


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda r: r["requests_per_s"])
    result = dict(ordered[len(ordered) // 2])
    result["runs_requests_per_s"] = [r["requests_per_s"] for r in runs]
    return result


def bench_read_side_by_side(work: Path, duration: int, rounds: int = 3) -> dict[str, Any]:
    """HealthBridge and the bare app up at once; wrk alternates between them ``rounds`` times
    (the machine's state drifts, so interleaving is fairer than one after the other)."""
    port, bare_port = free_port(), free_port()
    cmd, env = healthbridge(work, f"sqlite:///{work / f'read-{port}.db'}", 2, port)
    base = f"http://127.0.0.1:{port}/fhir"
    with process(cmd, env, f"http://127.0.0.1:{port}/readyz", work / "hb-read.log"):
        created = post_json(f"{base}/Patient", PATIENT)
        url = f"{base}/Patient/{created['id']}"
        (work / "patient.json").write_bytes(urllib.request.urlopen(url).read())
        bare_env = {
            **os.environ,
            "BARE_BODY_FILE": str(work / "patient.json"),
            "PYTHONPATH": str(ROOT),
        }
        granian = str(Path(sys.executable).parent / "granian")
        bare_cmd = [
            granian,
            "--interface",
            "asgi",
            "--workers",
            "2",
            "--host",
            "127.0.0.1",
            "--port",
            str(bare_port),
            "--no-access-log",
            "bench.bare_app:app",
        ]
        bare_url = f"http://127.0.0.1:{bare_port}/fhir/Patient/x"
        with process(bare_cmd, bare_env, bare_url, work / "bare.log"):
            run_wrk(url, 2, 64)
            run_wrk(bare_url, 2, 64)
            ours, bare = [], []
            for _ in range(rounds):
                ours.append(run_wrk(url, duration, 64))
                bare.append(run_wrk(bare_url, duration, 64))
    hb, ref = _median_run(ours), _median_run(bare)
    return {
        "healthbridge": hb,
        "bare": ref,
        "ratio": round(hb["requests_per_s"] / ref["requests_per_s"], 3),
    }


def bench_healthbridge_create(work: Path, database: str, duration: int) -> dict[str, Any]:
    port = free_port()
    cmd, env = healthbridge(work, database, 2, port)
    with process(cmd, env, f"http://127.0.0.1:{port}/readyz", work / f"hb-create-{port}.log"):
        return run_wrk(f"http://127.0.0.1:{port}/fhir/Patient", duration, 16, post_script(work))


def sekmet_python(work: Path) -> Path:
    venv = work.parent / "sekmet-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "sekmet-fhir"], check=True)
    return python


def sekmet_server(work: Path) -> tuple[list[str], dict[str, str], str]:
    """The command, environment and FHIR base of a fresh sekmet-fhir (simulator off, its own
    SQLite under ``work/sekmet``)."""
    python = sekmet_python(work)
    port = free_port()
    data = work / "sekmet"
    data.mkdir(exist_ok=True)
    config = data / "settings.yaml"
    config.write_text(
        f"host: 127.0.0.1\nport: {port}\nbase_url: http://127.0.0.1:{port}/fhir\n"
        f"data_dir: {data}\nlog_inbound: false\nsimulator:\n  enabled: false\n"
    )
    sekmet = str(python.parent / "sekmet")
    cmd = [sekmet, "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    return cmd, {**os.environ, "SEKMET_CONFIG": str(config)}, f"http://127.0.0.1:{port}/fhir"


def bench_sekmet(work: Path, duration: int) -> dict[str, Any]:
    cmd, env, base = sekmet_server(work)
    with process(cmd, env, f"{base}/metadata", work / "sekmet.log"):
        created = post_json(f"{base}/Patient", PATIENT)
        url = f"{base}/Patient/{created['id']}"
        run_wrk(url, 2, 64)
        read = run_wrk(url, duration, 64)
        create = run_wrk(f"{base}/Patient", duration, 16, post_script(work))
    return {
        "read": read,
        "create_sqlite": create,
        "workers": 1,
        "note": "sekmet serve runs one uvicorn process; simulator off, traffic log off",
    }


def postgres_database(admin_url: str) -> str | None:
    name = f"hb_bench_{uuid.uuid4().hex[:8]}"
    try:
        subprocess.run(
            ["psql", admin_url, "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"PostgreSQL not available ({exc}); skipping the PostgreSQL create run")
        return None
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--skip-sekmet", action="store_true")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hb-bench-") as tmp:
        work = Path(tmp)
        results: dict[str, Any] = {"machine": {"cores": os.cpu_count()}, "when": time.time()}
        print("read: HealthBridge (SQLite, 2 workers) vs bare Starlette on Granian", flush=True)
        read = bench_read_side_by_side(work, args.duration)
        results["read_healthbridge"] = read["healthbridge"]
        results["read_bare"] = read["bare"]
        results["read_ratio"] = read["ratio"]
        print("create: HealthBridge on SQLite ...", flush=True)
        results["create_sqlite"] = bench_healthbridge_create(
            work, f"sqlite:///{work / 'create.db'}", args.duration
        )
        pg = postgres_database(args.postgres)
        if pg:
            print("create: HealthBridge on PostgreSQL ...", flush=True)
            results["create_postgres"] = bench_healthbridge_create(work, pg, args.duration)
            subprocess.run(
                [
                    "psql",
                    args.postgres,
                    "-qc",
                    f"DROP DATABASE IF EXISTS {pg.rsplit('/', 1)[1]} WITH (FORCE)",
                ],
                check=False,
                capture_output=True,
            )
        if not args.skip_sekmet:
            print("sekmet-fhir: read and create ...", flush=True)
            results["sekmet"] = bench_sekmet(work, args.duration)
    (RESULTS / "http_core.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
