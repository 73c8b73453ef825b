"""The audit chain's key lives outside the database: the setting, or ``audit.key`` made once
with mode 0600 (healthbridge.audit.keys)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from healthbridge.audit.keys import AuditKeyError, audit_key
from healthbridge.settings import Settings


def test_the_key_file_is_made_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    key = audit_key(None, tmp_path / "data")
    path = tmp_path / "data" / "audit.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 64
    assert audit_key(None, tmp_path / "data") == key
    assert list(path.parent.iterdir()) == [path]  # no draft left behind


def test_a_configured_key_wins(tmp_path: Path) -> None:
    assert audit_key("s" * 40, tmp_path) == b"s" * 40
    assert not (tmp_path / "audit.key").exists()
    with pytest.raises(AuditKeyError, match="shorter than 32"):
        audit_key("short", tmp_path)
    with pytest.raises(ValueError, match="at least 32"):
        Settings(audit_key="short")


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    audit_key(None, tmp_path)
    (tmp_path / "audit.key").chmod(0o644)
    with pytest.raises(AuditKeyError, match="chmod 600"):
        audit_key(None, tmp_path)


def test_the_verifier_does_not_make_a_key(tmp_path: Path) -> None:
    with pytest.raises(AuditKeyError, match="No audit key"):
        audit_key(None, tmp_path, create=False)
    assert not (tmp_path / "audit.key").exists()
