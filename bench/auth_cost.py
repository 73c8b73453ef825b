"""The cost of authorization (issue 5), all on loopback.

1. ``GET /fhir/Patient/{id}`` and a patient-scoped search (``GET
   /fhir/Observation?patient={id}&_count=10``) on two servers over the same SQLite database,
   both up at once: one enforcing a SMART patient token (``patient/*.rs``, obtained through the
   real authorization code flow with PKCE, sign-in and consent forms), one started with
   ``--no-auth``. wrk alternates between them ``--rounds`` times; the figure is the ratio of
   the medians (target >= 0.85). Rate limits are off on both (they are measured by
   ``bench/ratelimit.py``); the audit trail is on on both.
2. The token endpoint for backend services: ``client_credentials`` with a ``private_key_jwt``
   RS384 assertion per request (signed beforehand, each with its own ``jti``), sent by 16
   concurrent clients: tokens per second and latency.

Run: ``python -m bench auth [--duration 10] [--rounds 3] [--tokens 2000]``. Needs ``wrk``.
Results: ``bench/results/auth_cost.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
from joserfc import jwt
from joserfc.jwk import RSAKey
from tests.auth.forms import form

from bench.http_core import RESULTS, _median_run, free_port, process, run_wrk

PATIENT = "demo-patient-1"
REDIRECT = "http://127.0.0.1/callback"
PASSWORD = "bench password of some length"
SERVICE_KEY = RSAKey.generate_key(2048, parameters={"kid": "bench-svc"}, private=True)


def _cli(data_dir: Path, database: str, *args: str, stdin: str | None = None) -> None:
    command = [sys.executable, "-m", "healthbridge.cli", *args]
    command += ["--data-dir", str(data_dir), "--database", database]
    subprocess.run(command, input=stdin, text=True, check=True, capture_output=True)


def prepare(work: Path, database: str) -> None:
    """The demo data, a patient user linked to the demo patient, a SMART app, a backend."""
    data = work / "data"
    _cli(data, database, "migrate")
    _cli(data, database, "demo")
    _cli(
        data, database, "users", "create", "pat", "--fhir-user", f"Patient/{PATIENT}",
        "--password-stdin", stdin=PASSWORD + "\n",
    )  # fmt: skip
    _cli(
        data, database, "clients", "create", "--name", "Bench app", "--id", "bench-app",
        "--redirect-uri", REDIRECT, "--scope", "launch/patient openid fhirUser patient/*.rs",
    )  # fmt: skip
    jwks = work / "svc-jwks.json"
    jwks.write_text(json.dumps({"keys": [SERVICE_KEY.as_dict(private=False)]}))
    _cli(
        data, database, "clients", "create", "--name", "Bench backend", "--id", "bench-svc",
        "--backend", "--auth", "private_key_jwt", "--jwks", str(jwks), "--scope", "system/*.rs",
    )  # fmt: skip


def server(work: Path, database: str, port: int, *extra: str) -> tuple[list[str], dict[str, str]]:
    data = work / f"data-{port}"
    env = {
        **os.environ,
        "HEALTHBRIDGE_LOG_LEVEL": "warning",
        "HEALTHBRIDGE_ACCESS_LOG": "false",
        "HEALTHBRIDGE_RATE_LIMITS": "false",
        "HEALTHBRIDGE_AUDIT_KEY": "bench-audit-key-" + "k" * 32,
    }
    command = [sys.executable, "-m", "healthbridge.cli", "serve", "--port", str(port)]
    command += ["--database", database, "--data-dir", str(data), "--workers", "2", *extra]
    return command, env


def patient_token(root: str) -> str:
    """A patient token from the real authorization code flow (PKCE S256, sign-in, consent)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    params = {
        "response_type": "code",
        "client_id": "bench-app",
        "redirect_uri": REDIRECT,
        "scope": "launch/patient openid fhirUser patient/*.rs",
        "state": "bench",
        "aud": f"{root}/fhir",
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }
    with httpx2.Client(follow_redirects=False, timeout=30) as browser:
        page = browser.get(f"{root}/auth/authorize?{urlencode(params)}")
        login = form(page.text, "/auth/login")
        fields = {**dict(login.fields), "username": "pat", "password": PASSWORD}
        signed_in = browser.post(f"{root}/auth/login", data=fields)
        consent = form(browser.get(root + signed_in.headers["location"]).text, "/auth/authorize")
        data = [*consent.fields, *((n, v) for n, v, on in consent.checkboxes if on)]
        data.append(("decision", "allow"))
        answer = browser.post(
            f"{root}/auth/authorize",
            content=urlencode(data),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
        token = browser.post(
            f"{root}/auth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "client_id": "bench-app",
                "code_verifier": verifier,
            },
        ).json()
    assert token.get("patient") == PATIENT, token
    return str(token["access_token"])


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of session ``pgid``
    (the server and its workers; /proc/<pid>/stat fields 14-15, in clock ticks)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == pgid:  # field 5, the process group
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def cpu_run(url: str, duration: int, pgid: int, headers: dict[str, str] | None = None) -> Any:
    """A wrk run with the server's CPU time per request (less sensitive than throughput to
    whatever else the machine runs)."""
    before = group_cpu_s(pgid)
    run = run_wrk(url, duration, 64, headers=headers)
    used = group_cpu_s(pgid) - before
    requests = max(run["requests_per_s"] * duration, 1)
    run["server_cpu_ms_per_request"] = round(1000 * used / requests, 4)
    return run


def side_by_side(
    secured: str,
    open_: str,
    path: str,
    token: str,
    duration: int,
    rounds: int,
    pgids: tuple[int, int],
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    run_wrk(secured + path, 2, 64, headers=headers)
    run_wrk(open_ + path, 2, 64)
    with_auth, without = [], []
    for _ in range(rounds):
        with_auth.append(cpu_run(secured + path, duration, pgids[0], headers))
        without.append(cpu_run(open_ + path, duration, pgids[1]))
    a, b = _median_run(with_auth), _median_run(without)
    cpu_a = sorted(r["server_cpu_ms_per_request"] for r in with_auth)[len(with_auth) // 2]
    cpu_b = sorted(r["server_cpu_ms_per_request"] for r in without)[len(without) // 2]
    return {
        "path": path,
        "authorized": a,
        "no_auth": b,
        "ratio": round(a["requests_per_s"] / b["requests_per_s"], 3),
        "server_cpu_ms_per_request": {"authorized": cpu_a, "no_auth": cpu_b},
        "cpu_ratio": round(cpu_b / cpu_a, 3),
    }


def assertions(token_url: str, count: int) -> list[str]:
    now = int(time.time())
    header = {"alg": "RS384", "kid": "bench-svc", "typ": "JWT"}
    return [
        jwt.encode(
            header,
            {
                "iss": "bench-svc",
                "sub": "bench-svc",
                "aud": token_url,
                "exp": now + 240,
                "jti": uuid.uuid4().hex,
            },
            SERVICE_KEY,
            algorithms=["RS384"],
        )
        for _ in range(count)
    ]


async def token_throughput(token_url: str, count: int, concurrency: int = 16) -> dict[str, Any]:
    signed = assertions(token_url, count)
    latencies: list[float] = []
    failures = 0
    queue = iter(signed)

    async def worker(client: httpx2.AsyncClient) -> None:
        nonlocal failures
        for assertion in queue:
            started = time.perf_counter()
            answer = await client.post(
                token_url,
                data={
                    "grant_type": "client_credentials",
                    "scope": "system/Patient.rs",
                    "client_assertion_type": (
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                    ),
                    "client_assertion": assertion,
                },
            )
            latencies.append(time.perf_counter() - started)
            failures += answer.status_code != 200

    async with httpx2.AsyncClient(timeout=30) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "tokens": count,
        "failures": failures,
        "concurrency": concurrency,
        "tokens_per_s": round(count / elapsed, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hb-auth-bench-") as tmp:
        work = Path(tmp)
        database = f"sqlite:///{work / 'bench.db'}"
        prepare(work, database)
        secured_port, open_port = free_port(), free_port()
        cmd, env = server(work, database, secured_port)
        open_cmd, open_env = server(work, database, open_port, "--no-auth")
        secured = f"http://127.0.0.1:{secured_port}"
        open_ = f"http://127.0.0.1:{open_port}"
        with (
            process(cmd, env, f"{secured}/readyz", work / "secured.log") as secured_pid,
            process(open_cmd, open_env, f"{open_}/readyz", work / "open.log") as open_pid,
        ):
            pgids = (secured_pid, open_pid)  # each server leads its own session and group
            token = patient_token(secured)
            results: dict[str, Any] = {
                "read": side_by_side(
                    secured,
                    open_,
                    f"/fhir/Patient/{PATIENT}",
                    token,
                    args.duration,
                    args.rounds,
                    pgids,
                ),
                "patient_search": side_by_side(
                    secured,
                    open_,
                    f"/fhir/Observation?patient={PATIENT}&_count=10",
                    token,
                    args.duration,
                    args.rounds,
                    pgids,
                ),
                "token_endpoint": asyncio.run(
                    token_throughput(f"{secured}/auth/token", args.tokens)
                ),
            }
    for name in ("read", "patient_search"):
        r = results[name]
        print(
            f"{name}: {r['authorized']['requests_per_s']:.0f} req/s with a patient token, "
            f"{r['no_auth']['requests_per_s']:.0f} with --no-auth: ratio {r['ratio']}; server "
            f"CPU per request {r['server_cpu_ms_per_request']['authorized']} ms vs "
            f"{r['server_cpu_ms_per_request']['no_auth']} ms: ratio {r['cpu_ratio']}"
        )
    t = results["token_endpoint"]
    print(
        f"token endpoint (client_credentials + private_key_jwt RS384): {t['tokens_per_s']} "
        f"tokens/s, p50 {t['p50_ms']} ms, p99 {t['p99_ms']} ms, {t['failures']} failures"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "auth_cost.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
