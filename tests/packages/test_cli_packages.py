"""``healthbridge packages install | list | show`` on a SQLite database
(https://hl7.org/fhir/packages.html), and a server started on that database searching with the
package's SearchParameter (https://hl7.org/fhir/R4/searchparameter.html)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner, Result

from healthbridge.app import create_app
from healthbridge.settings import Settings
from healthbridge.store.repository import OutboxEvent, Repository
from healthbridge.store.sql import open_repository
from tests.packages import builder

T = TypeVar("T")


@pytest.fixture(autouse=True)
def fast_reindex(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reindex after an install waits 2.5 refresh intervals for running servers."""
    monkeypatch.setenv("HEALTHBRIDGE_SEARCH_REFRESH_SECONDS", "0.05")


def run(url: str, *args: str) -> Result:
    from healthbridge.cli import app

    return CliRunner().invoke(app, ["packages", *args, "--database", url])


def said(result: Result) -> str:
    """The command's output with the console's line wrapping undone."""
    return " ".join(result.output.split())


def with_repository(url: str, use: Callable[[Repository], Awaitable[T]]) -> T:
    async def go() -> T:
        repository = await open_repository(url)
        try:
            return await use(repository)
        finally:
            await repository.close()

    return asyncio.run(go())


def test_install_list_show_and_install_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hb.db'}"
    path = builder.sample_package(tmp_path / "test-ig.tgz")
    first = run(url, "install", str(path), "--examples")
    assert first.exit_code == 0, first.output
    assert "Installed example.fhir.test-ig#1.0.0: 7 resources" in said(first)
    assert "Searchable now: Patient.favorite-color" in said(first)

    again = run(url, "install", str(path), "--examples")
    assert again.exit_code == 0, again.output
    assert "Nothing changed: example.fhir.test-ig#1.0.0 is already installed" in said(again)

    listed = run(url, "list")
    assert "example.fhir.test-ig#1.0.0" in listed.output and "Test" in listed.output
    shown = run(url, "show", "example.fhir.test-ig")
    assert shown.exit_code == 0
    assert "StructureDefinition/colorful-patient" in shown.output and "Patient/blue" in shown.output
    assert run(url, "show", "no.such.package").exit_code == 1


def test_writes_name_the_operator_in_the_audit_trail(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hb.db'}"
    result = run(url, "install", str(builder.sample_package(tmp_path / "p.tgz")))
    assert result.exit_code == 0, result.output

    async def events(repository: Repository) -> list[OutboxEvent]:
        return await repository.outbox_since(0)

    found = with_repository(url, events)
    assert len(found) == 5
    assert all(json.loads(e.actor or "{}")["subject"].startswith("cli:packages:") for e in found)


def test_a_bad_package_exits_1_with_the_reason_and_installs_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hb.db'}"
    files: dict[str, object] = dict(builder.conformance())
    files["CodeSystem-bad.json"] = {"resourceType": "CodeSystem", "id": "bad", "status": "nope"}
    bad = run(url, "install", str(builder.build(tmp_path / "bad.tgz", files)))
    assert bad.exit_code == 1
    assert "package/CodeSystem-bad.json" in said(bad) and "CodeSystem.status" in said(bad)
    assert "nothing was installed" in said(bad)
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"not a package")
    result = run(url, "install", str(junk))
    assert result.exit_code == 1 and "not a readable package file" in said(result)
    assert "example.fhir.test-ig" not in run(url, "list").output


def test_a_server_searches_with_the_installed_parameter(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hb.db'}"
    result = run(url, "install", str(builder.sample_package(tmp_path / "p.tgz")), "--examples")
    assert result.exit_code == 0, result.output
    settings = Settings(database=url, data_dir=tmp_path, no_auth=True, access_log=False)
    with TestClient(create_app(settings)) as client:
        strict = {"Prefer": "handling=strict"}
        found = client.get("/fhir/Patient?favorite-color=blue", headers=strict)
        assert found.status_code == 200, found.text
        assert [e["resource"]["id"] for e in found.json().get("entry", [])] == ["blue"]
        profile = client.get(f"/fhir/StructureDefinition?url={builder.PROFILE}").json()
        assert [e["resource"]["id"] for e in profile["entry"]] == ["colorful-patient"]
