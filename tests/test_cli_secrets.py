"""``healthbridge secrets status`` and ``healthbridge secrets rotate`` on a SQLite database
(docs/authorization.md, "Secrets at rest"): counts per sealing key, re-sealing everything with
a new key (AES-256-GCM, NIST SP 800-38D) while the old one is a previous key, idempotent."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qs, urlsplit

from click.testing import Result
from typer.testing import CliRunner

from healthbridge.auth import state, totp
from healthbridge.auth.keys import KeyRing
from healthbridge.auth.users import UserStore
from healthbridge.cli import app
from healthbridge.infra.sealing import Sealer
from healthbridge.infra.secret_keys import load_sealer
from healthbridge.store.instants import system_clock
from healthbridge.store.repository import Repository
from healthbridge.store.sql import open_repository
from tests.support.databases import sqlite_url

T = TypeVar("T")
KEY_B = "key B: at least thirty-two characters long"
KEY_C = "key C: at least thirty-two characters long"


def _cli(data_dir: Path, *args: str, env: dict[str, str] | None = None, stdin: str = "") -> Result:
    return CliRunner().invoke(app, [*args, "--data-dir", str(data_dir)], input=stdin, env=env)


def _ok(data_dir: Path, *args: str, env: dict[str, str] | None = None, stdin: str = "") -> str:
    result = _cli(data_dir, *args, env=env, stdin=stdin)
    assert result.exit_code == 0, result.output
    return result.output


def _on_database(data_dir: Path, work: Callable[[Repository], Awaitable[T]]) -> T:
    async def run() -> T:
        repo = await open_repository(sqlite_url(data_dir))
        try:
            return await work(repo)
        finally:
            await repo.close()

    return asyncio.run(run())


def _signing_keys(data_dir: Path, sealer: Sealer) -> str:
    """What the server does on start: make the signing keys (sealed); the current kid."""

    async def work(repo: Repository) -> str:
        ring = KeyRing(repo.records, system_clock, timedelta(days=30), KEEP, sealer=sealer)
        await ring.refresh()
        return ring.signing_key().kid

    return _on_database(data_dir, work)


KEEP = timedelta(minutes=10)


def test_status_and_rotate(tmp_path: Path) -> None:
    out = _ok(tmp_path, "users", "create", "dave", "--totp", "--password-stdin", stdin="p" * 12)
    dave_secret = parse_qs(urlsplit(out.split("TOTP: add to an authenticator app: ")[1]).query)[
        "secret"
    ][0]
    _ok(tmp_path, "users", "create", "erin", "--password-stdin", stdin="p" * 12)
    first = load_sealer(None, [], tmp_path, create=False)  # secret.key, made by `users create`
    kid = _signing_keys(tmp_path, first)
    erin_secret = totp.new_secret()

    async def legacy(repo: Repository) -> None:  # erin's secret stored before sealing
        record = await repo.records.get_record(state.USER, "erin")
        assert record is not None
        await repo.records.put_record(state.USER, "erin", {**record.value, "totp": erin_secret})

    _on_database(tmp_path, legacy)

    status = _ok(tmp_path, "secrets", "status")
    assert f"{first.key_id} (current)" in status
    assert "token signing keys" in status and "TOTP secrets" in status
    assert "plaintext (not sealed)" in status and "1 to re-seal" in status

    # The operator moves the old key to the previous keys and sets a new one.
    old_key = (tmp_path / "secret.key").read_text().strip()
    rotated = {"HEALTHBRIDGE_SECRET_KEY": KEY_B, "HEALTHBRIDGE_SECRET_KEYS_PREVIOUS": old_key}
    new = Sealer.from_secrets(KEY_B)
    out = _ok(tmp_path, "secrets", "rotate", env=rotated)
    assert f"Sealing with key {new.key_id}" in out
    assert "token signing keys: 2 re-sealed, 0 already sealed with the current key, 0 failed" in out
    assert "TOTP secrets: 2 re-sealed, 0 already sealed with the current key, 0 failed" in out
    again = _ok(tmp_path, "secrets", "rotate", env=rotated)
    assert "token signing keys: 0 re-sealed, 2 already sealed" in again
    assert "TOTP secrets: 0 re-sealed, 2 already sealed" in again
    status = _ok(tmp_path, "secrets", "status", env=rotated)
    assert f"{new.key_id} (current)" in status and f"current key: {new.key_id}" in status
    assert first.key_id not in status.split("current key")[0]
    assert "plaintext" not in status and "to re-seal" not in status

    # The new key alone opens everything.
    assert _signing_keys(tmp_path, new) == kid

    async def codes(repo: Repository) -> None:
        users = UserStore(repo.records, system_clock, sealer=new)
        for name, secret in (("dave", dave_secret), ("erin", erin_secret)):
            user = await users.get(name)
            assert user is not None and new.is_current(user.totp_secret)
            assert await users.check_totp(user, totp.current_code(secret, users.now()))

    _on_database(tmp_path, codes)

    # A key that opens nothing stored: nothing is changed, and the way out is named.
    wrong = _cli(tmp_path, "secrets", "rotate", env={"HEALTHBRIDGE_SECRET_KEY": KEY_C})
    assert wrong.exit_code == 1
    assert "HEALTHBRIDGE_SECRET_KEYS_PREVIOUS" in wrong.output and "4 values" in wrong.output
    status = _ok(tmp_path, "secrets", "status", env={"HEALTHBRIDGE_SECRET_KEY": KEY_C})
    assert f"{new.key_id} (not configured)" in status
    assert "4 sealed with a key not configured" in status and "to re-seal" not in status


def test_the_commands_never_make_a_key_and_refuse_short_ones(tmp_path: Path) -> None:
    missing = _cli(tmp_path, "secrets", "rotate")
    assert missing.exit_code == 2 and "No secret key" in missing.output
    assert not (tmp_path / "secret.key").exists()
    status = _ok(tmp_path, "secrets", "status")  # counts still shown without a key
    assert "none stored" in status
    short = _cli(tmp_path, "secrets", "status", env={"HEALTHBRIDGE_SECRET_KEY": "a short key"})
    assert short.exit_code == 2 and "at least 32 characters" in short.output
    assert "a short key" not in short.output
