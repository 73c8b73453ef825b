"""``healthbridge terminology load|list|delete`` on SQLite, including a load killed with SIGKILL
and resumed (https://hl7.org/fhir/R4/terminology-service.html; docs/terminology.md)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from healthbridge.cli import app
from healthbridge.store.sql import open_repository
from healthbridge.terminology.loader import open_source
from tests.terminology.conftest import DATA
from tests.terminology.synthetic import write_loinc
from tests.terminology.test_load import _same


def _options(tmp_path: Path) -> list[str]:
    return ["--data-dir", str(tmp_path / "data"), "--database", f"sqlite:///{tmp_path}/hb.db"]


def _run(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["terminology", *args, *_options(tmp_path)])
    return result.exit_code, " ".join(result.output.split())  # unwrapped


def test_load_list_delete(tmp_path: Path) -> None:
    code, output = _run(tmp_path, "load", "icd10cm", str(DATA / "icd10cm"))
    assert code == 0, output
    assert "Loaded http://hl7.org/fhir/sid/icd-10-cm|2024: 14 concepts" in output
    code, output = _run(tmp_path, "load", "cvx", str(DATA / "cvx" / "cvx.txt"), "--version", "v1")
    assert code == 0, output
    code, output = _run(tmp_path, "list")
    assert code == 0
    assert "http://hl7.org/fhir/sid/icd-10-cm" in output and "2024" in output and "14" in output
    assert "http://hl7.org/fhir/sid/cvx" in output and "v1" in output
    code, output = _run(tmp_path, "delete", "http://hl7.org/fhir/sid/cvx", "v1")
    assert code == 0 and "Deleted" in output
    code, output = _run(tmp_path, "list")
    assert "cvx" not in output
    code, output = _run(tmp_path, "delete", "http://hl7.org/fhir/sid/cvx", "v1")
    assert code == 1 and "terminology list" in output


def test_errors_name_the_file_expected(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, output = _run(tmp_path, "load", "snomed", str(empty))
    assert code == 2
    assert "sct2_Concept_Snapshot" in output
    code, output = _run(tmp_path, "load", "ndc", str(empty))
    assert code == 2 and "loinc, snomed, rxnorm, icd10cm, cvx" in output


def _size(database: Path) -> int:
    return sum(p.stat().st_size for p in database.parent.glob(database.name + "*"))


def _load_command(tmp_path: Path, release: Path) -> list[str]:
    command = [sys.executable, "-m", "healthbridge.cli", "terminology", "load", "loinc"]
    return [*command, str(release), "--batch-size", "500", *_options(tmp_path)]


async def _check_content(url: str, release: Path) -> None:
    repository = await open_repository(url)
    try:
        with open_source("loinc", release) as source:
            parsed = list(source.concepts())
        version = "2.77"
        stored = await repository.terminology.concepts(
            "http://loinc.org", version, [c.code for c in parsed]
        )
        assert len(stored) == len(parsed)
        for concept in parsed:
            _same(stored[concept.code], concept)
    finally:
        await repository.close()


def test_a_killed_load_resumes(tmp_path: Path) -> None:
    release = write_loinc(tmp_path / "release", 12_000)
    database = tmp_path / "hb.db"
    subprocess.run(
        [sys.executable, "-m", "healthbridge.cli", "migrate", *_options(tmp_path)], check=True
    )
    before = _size(database)
    env = {**os.environ, "COLUMNS": "120"}
    process = subprocess.Popen(_load_command(tmp_path, release), env=env)
    deadline = time.monotonic() + 60
    while _size(database) < before + 2_000_000 and process.poll() is None:
        assert time.monotonic() < deadline, "the load made no progress"
        time.sleep(0.05)
    assert process.poll() is None, "the load finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed = subprocess.run(
        _load_command(tmp_path, release), env=env, capture_output=True, text=True, check=True
    )
    assert "resumed after" in resumed.stdout, resumed.stdout
    after = int(resumed.stdout.split("resumed after ")[1].split(")")[0].replace(",", ""))
    assert 0 < after < 12_000 and after % 500 == 0  # whole batches survived the kill
    asyncio.run(_check_content(f"sqlite:///{database}", release))
