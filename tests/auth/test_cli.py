"""``healthbridge users ...`` and ``healthbridge clients ...`` (docs/authorization.md)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from joserfc.jwk import RSAKey
from typer.testing import CliRunner

from healthbridge.auth.clients import ClientStore
from healthbridge.auth.users import UserStore
from healthbridge.cli import app
from healthbridge.store.instants import system_clock
from healthbridge.store.sql import open_repository
from tests.support.databases import sqlite_url


def _invoke(tmp_path: Path, *args: str, stdin: str | None = None) -> str:
    result = CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path)], input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


def _fails(tmp_path: Path, *args: str, stdin: str | None = None) -> str:
    result = CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path)], input=stdin)
    assert result.exit_code != 0, result.output
    return result.output


def _stores(tmp_path: Path) -> tuple[UserStore, ClientStore, object]:
    async def open_() -> object:
        return await open_repository(sqlite_url(tmp_path))

    repo = asyncio.run(open_())
    return UserStore(repo.records, system_clock), ClientStore(repo.records), repo  # type: ignore[attr-defined]


def test_users_commands(tmp_path: Path) -> None:
    out = _invoke(
        tmp_path,
        "users",
        "create",
        "alice",
        "--fhir-user",
        "Practitioner/dr1",
        "--role",
        "admin",
        "--password-stdin",
        stdin="a long password\n",
    )
    assert "Created user alice" in out
    assert "at least 8" in _fails(
        tmp_path, "users", "create", "bob", "--password-stdin", stdin="short\n"
    )
    assert "taken" in _fails(
        tmp_path, "users", "create", "alice", "--password-stdin", stdin="another password\n"
    )
    assert "fhirUser" in _fails(
        tmp_path,
        "users",
        "create",
        "carol",
        "--fhir-user",
        "Observation/1",
        "--password-stdin",
        stdin="a long password\n",
    )
    totp = _invoke(
        tmp_path, "users", "create", "dave", "--totp", "--password-stdin", stdin="a long password\n"
    )
    assert "otpauth://totp/" in totp
    listing = _invoke(tmp_path, "users", "list")
    assert "alice" in listing and "Practitioner/dr1" in listing and "admin" in listing
    _invoke(tmp_path, "users", "disable", "alice")
    assert "disabled" in _invoke(tmp_path, "users", "list")
    _invoke(tmp_path, "users", "enable", "alice")
    _invoke(tmp_path, "users", "set-password", "alice", "--password-stdin", stdin="new password!\n")
    _invoke(tmp_path, "users", "unlock", "alice")
    _invoke(tmp_path, "users", "totp", "dave", "--off")
    users, _, repo = _stores(tmp_path)

    async def check() -> None:
        try:
            alice = await users.get("alice")
            assert alice is not None and not alice.disabled
            assert (await users.sign_in("alice", "new password!"))[0].value == "ok"
            dave = await users.get("dave")
            assert dave is not None and dave.totp_secret is None
        finally:
            await repo.close()  # type: ignore[attr-defined]

    asyncio.run(check())


def test_clients_commands(tmp_path: Path) -> None:
    out = _invoke(
        tmp_path,
        "clients",
        "create",
        "--name",
        "Web App",
        "--id",
        "web",
        "--auth",
        "client_secret_basic",
        "--redirect-uri",
        "https://app.example.org/cb",
    )
    assert "client_id: web" in out and "client_secret: " in out
    secret = out.split("client_secret: ")[1].split()[0]
    rotated = _invoke(tmp_path, "clients", "rotate-secret", "web")
    new_secret = rotated.split("client_secret: ")[1].split()[0]
    assert new_secret != secret
    jwks = tmp_path / "jwks.json"
    key = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    backend = _invoke(
        tmp_path,
        "clients",
        "create",
        "--name",
        "Exporter",
        "--backend",
        "--auth",
        "private_key_jwt",
        "--jwks",
        str(jwks),
        "--scope",
        "system/*.rs",
    )
    backend_id = backend.split("client_id: ")[1].split()[0]
    assert "client_secret" not in backend
    assert "redirect" in _fails(tmp_path, "clients", "create", "--name", "Nowhere")
    listing = _invoke(tmp_path, "clients", "list")
    assert "web" in listing and "Exporter" in listing
    _invoke(tmp_path, "clients", "disable", "web")
    _invoke(tmp_path, "clients", "set-keys", backend_id, "--jwks-uri", "https://keys.example/jwks")
    _, clients, repo = _stores(tmp_path)

    async def check() -> None:
        try:
            web = await clients.get("web")
            assert web is not None and web.disabled and web.check_client_secret(new_secret)
            assert not web.check_client_secret(secret)
            assert await clients.active("web") is None
            exporter = await clients.get(backend_id)
            assert exporter is not None and exporter.jwks_uri == "https://keys.example/jwks"
            assert exporter.jwks is None and exporter.grant_types == {"client_credentials"}
        finally:
            await repo.close()  # type: ignore[attr-defined]

    asyncio.run(check())
