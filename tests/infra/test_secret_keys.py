"""The key that seals secrets at rest lives outside the database: the setting, or
``secret.key`` made once with mode 0600 (healthbridge.infra.secret_keys), like the audit key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from healthbridge.infra.sealing import Sealer
from healthbridge.infra.secret_keys import SecretKeyError, load_sealer, secret_key
from healthbridge.settings import Settings

KEY_A = "key A: at least thirty-two characters long"
KEY_B = "key B: at least thirty-two characters long"


def test_the_key_file_is_made_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    key = secret_key(None, tmp_path / "data")
    path = tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 64
    assert secret_key(None, tmp_path / "data") == key
    assert list(path.parent.iterdir()) == [path]  # no draft left behind
    one = load_sealer(None, [], tmp_path / "data")
    assert one.key_id == load_sealer(None, [], tmp_path / "data").key_id


def test_a_configured_key_wins(tmp_path: Path) -> None:
    assert secret_key(KEY_A, tmp_path) == KEY_A
    assert not (tmp_path / "secret.key").exists()
    with pytest.raises(SecretKeyError, match="HEALTHBRIDGE_SECRET_KEY is shorter than 32"):
        secret_key("short", tmp_path)


def test_a_short_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_text("short\n")
    path.chmod(0o600)
    with pytest.raises(SecretKeyError, match="shorter than 32"):
        load_sealer(None, [], tmp_path)


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    secret_key(None, tmp_path)
    (tmp_path / "secret.key").chmod(0o644)
    with pytest.raises(SecretKeyError, match="chmod 600"):
        secret_key(None, tmp_path)


def test_commands_that_must_not_make_a_key_do_not(tmp_path: Path) -> None:
    with pytest.raises(SecretKeyError, match="No secret key"):
        load_sealer(None, [], tmp_path, create=False)
    assert not (tmp_path / "secret.key").exists()


def test_previous_keys_open_what_they_sealed(tmp_path: Path) -> None:
    sealed = load_sealer(KEY_A, [], tmp_path).seal("secret", "p")
    rotated = load_sealer(KEY_B, [KEY_A, " "], tmp_path)
    assert rotated.open(sealed, "p") == "secret"
    assert rotated.key_id == Sealer.from_secrets(KEY_B).key_id
    with pytest.raises(SecretKeyError, match="HEALTHBRIDGE_SECRET_KEYS_PREVIOUS is shorter"):
        load_sealer(KEY_B, ["short"], tmp_path)


def test_settings_refuse_short_keys_without_echoing_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad key fails at start-up, and the error does not print the key."""
    with pytest.raises(ValueError, match="at least 32") as raised:
        Settings(secret_key="a short secret")
    assert "a short secret" not in str(raised.value)
    monkeypatch.setenv("HEALTHBRIDGE_SECRET_KEYS_PREVIOUS", f"{KEY_A},a short secret")
    with pytest.raises(ValueError, match="at least 32") as raised:
        Settings()
    assert "a short secret" not in str(raised.value)
    monkeypatch.setenv("HEALTHBRIDGE_SECRET_KEYS_PREVIOUS", f" {KEY_A} , {KEY_B} ,")
    monkeypatch.setenv("HEALTHBRIDGE_SECRET_KEY", KEY_B)
    settings = Settings()
    assert settings.secret_keys_previous == [KEY_A, KEY_B] and settings.secret_key == KEY_B
    assert KEY_B not in repr(settings) and KEY_A not in repr(settings)
