"""The ``healthbridge`` command end to end: a real server process over real HTTP on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from typer.testing import CliRunner

from healthbridge import __version__
from healthbridge.cli import app
from healthbridge.demo import demo_resources
from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.validation import Validator


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_version() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0
    assert __version__ in result.stdout and "4.0.1" in result.stdout


def test_demo_data_is_valid_fhir() -> None:
    validator = Validator(load_definitions())
    resources = list(demo_resources())
    assert {r["resourceType"] for r in resources} >= {
        "Patient",
        "Encounter",
        "Observation",
        "Condition",
        "MedicationRequest",
    }
    for resource in resources:
        assert validator.validate(resource, resource["resourceType"]) == [], resource["id"]


def test_no_auth_refuses_non_loopback_host(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["serve", "--no-auth", "--host", "0.0.0.0", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert not (tmp_path / "healthbridge.db").exists()


def test_migrate_and_demo_are_idempotent(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["migrate", "--data-dir", str(tmp_path)]).exit_code == 0
    first = runner.invoke(app, ["demo", "--data-dir", str(tmp_path)])
    assert first.exit_code == 0, first.output
    count = len(list(demo_resources()))
    assert f"{count} resources loaded" in first.output
    again = runner.invoke(app, ["demo", "--data-dir", str(tmp_path)])
    assert f"0 resources loaded, {count} already present" in again.output


def test_serve_demo_over_real_http(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "HEALTHBRIDGE_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "healthbridge.cli",
            "serve",
            "--demo",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path),
            "--workers",
            "2",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}/fhir"
        deadline = time.monotonic() + 60
        while True:
            try:
                if _get(f"http://127.0.0.1:{port}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.2)
        # authorization is on by default: the data needs a token (tests/auth/test_real_server
        # signs in as the printed demo patient and reads it); the CapabilityStatement is public
        status, body = _get(f"{base}/Patient/demo-patient-1")
        assert status == 401
        assert json.loads(body)["resourceType"] == "OperationOutcome"
        status, body = _get(f"{base}/metadata")
        assert json.loads(body)["fhirVersion"] == "4.0.1"
    finally:
        os.killpg(proc.pid, 15)
        out = proc.communicate(timeout=60)[0].decode()
    assert f"serving {base}" in out
    assert "Demo sign-in" in out and "demo-patient" in out


def test_explain_prints_the_sql_and_the_plan_of_a_search(tmp_path: Path) -> None:
    """Issue 3: administrators see the SQL and the database's plan for a search."""
    runner = CliRunner()
    options = ["--data-dir", str(tmp_path)]
    assert runner.invoke(app, ["migrate", *options]).exit_code == 0
    result = runner.invoke(app, ["explain", "Observation?patient=p1&code=8867-4", *options])
    assert result.exit_code == 0, result.output
    assert "-- SQL" in result.stdout and "-- plan" in result.stdout
    assert "ix_search_reference_pkey_target_rkey" in result.stdout  # index-driven
    bad = runner.invoke(app, ["explain", "Observation?date=yesterday", *options])
    assert bad.exit_code == 2
