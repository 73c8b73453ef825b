"""Every setting reads HEALTHBRIDGE_<NAME> from the environment; defaults are the embedded node."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from healthbridge.settings import Settings


def test_defaults_are_the_embedded_single_node(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOST", "PORT", "DATABASE", "DATA_DIR", "WORKERS"):
        monkeypatch.delenv(f"HEALTHBRIDGE_{name}", raising=False)
    settings = Settings()
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8080, 1)
    assert (
        settings.database_url()
        == f"sqlite:///{Path('healthbridge-data').resolve()}/healthbridge.db"
    )
    assert settings.host_is_loopback()


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEALTHBRIDGE_HOST", "::1")
    monkeypatch.setenv("HEALTHBRIDGE_PORT", "9999")
    monkeypatch.setenv("HEALTHBRIDGE_WORKERS", "3")
    monkeypatch.setenv("HEALTHBRIDGE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HEALTHBRIDGE_DEMO", "true")
    monkeypatch.setenv("HEALTHBRIDGE_DATABASE", "postgresql://hb@db:5432/hb")
    settings = Settings()
    assert (settings.host, settings.port, settings.workers, settings.demo) == ("::1", 9999, 3, True)
    assert settings.database_url() == "postgresql://hb@db:5432/hb"
    assert settings.host_is_loopback()


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHBRIDGE_PORT", "70000")
    with pytest.raises(ValueError, match="port"):
        Settings()
    monkeypatch.delenv("HEALTHBRIDGE_PORT")
    assert not Settings(host="0.0.0.0").host_is_loopback()


def test_settings_handed_to_worker_processes_read_back_the_same(tmp_path: Path) -> None:
    """``serve`` exports the effective settings for Granian's workers; every field, lists
    included, must read back unchanged (a list exported as ``['a']`` once crashed them)."""
    from healthbridge.cli import _export

    given = Settings(
        data_dir=tmp_path,
        trusted_proxies="10.0.0.1, 192.168.0.0/16",
        rate_limit_ip="5/second",
        required_profiles={
            "Patient": ["http://hl7.org/fhir/uv/ips/StructureDefinition/Patient-uv-ips"]
        },
    )
    saved = dict(os.environ)
    try:
        for name in Settings.model_fields:
            os.environ.pop(f"HEALTHBRIDGE_{name.upper()}", None)
        _export(given)
        again = Settings()
    finally:  # the exported values must not leak into later tests
        os.environ.clear()
        os.environ.update(saved)
    assert again.trusted_proxies == ["10.0.0.1", "192.168.0.0/16"]
    assert again.required_profiles == given.required_profiles
    assert again.model_dump(exclude={"database"}) == given.model_dump(exclude={"database"})


def test_required_profiles_read_json_and_refuse_what_is_not_a_mapping_of_types(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HEALTHBRIDGE_REQUIRED_PROFILES is JSON: resource type -> profile canonicals."""
    profile = "http://hl7.org/fhir/uv/ips/StructureDefinition/Patient-uv-ips|2.0.0"
    monkeypatch.setenv("HEALTHBRIDGE_REQUIRED_PROFILES", json.dumps({"Patient": [profile]}))
    assert Settings().required_profiles == {"Patient": [profile]}
    monkeypatch.setenv("HEALTHBRIDGE_REQUIRED_PROFILES", '{"patient": ["http://x"]}')
    with pytest.raises(ValueError, match="not a resource type"):
        Settings()
    monkeypatch.delenv("HEALTHBRIDGE_REQUIRED_PROFILES")
    assert Settings().required_profiles == {}
