"""Revocation across server processes (RFC 7009 section 2; SECURITY.md: "Revocation (RFC 7009)
takes effect at once for access and refresh tokens").

Each server process has its own token verifier with its own cache of verified tokens. Two
repositories over one database stand for two processes: a token revoked through one must be
refused by the other on its very next use (SQLite: the signal file is bumped before the revoking
call returns), or within moments on PostgreSQL (LISTEN/NOTIFY).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from healthbridge.auth.config import AuthConfig
from healthbridge.auth.credentials import Credentials
from healthbridge.auth.issuance import Authorization, TokenIssuer
from healthbridge.auth.keys import KeyRing
from healthbridge.auth.tokens import TokenVerifier
from healthbridge.fhir.errors import Unauthorized
from healthbridge.store.instants import system_clock
from healthbridge.store.repository import Repository
from healthbridge.store.sql import migrate, open_repository
from tests.auth.conftest import BASE, FHIR
from tests.support import databases
from tests.support.sealing import SEALER


@pytest.fixture(params=databases.SQL_BACKEND_PARAMS)
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = databases.sqlite_url(tmp_path)
        migrate(url)
        yield url
        return
    postgres: databases.PostgresDatabase = request.getfixturevalue("postgres_database")
    url = postgres.require()
    databases.run_blocking(databases.empty_postgres(url))
    yield url


async def _keys(repo: Repository) -> KeyRing:
    keys = KeyRing(
        repo.records, system_clock, timedelta(days=30), timedelta(minutes=10), sealer=SEALER
    )
    await keys.refresh()
    return keys


async def _verifier(repo: Repository) -> TokenVerifier:
    return TokenVerifier(await _keys(repo), repo.records, BASE, frozenset({FHIR}))


async def _refused(verifier: TokenVerifier, token: str, wait_s: float) -> bool:
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        try:
            await verifier.authenticate(f"Bearer {token}")
        except Unauthorized:
            return True
        if asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(0.01)


async def test_a_token_revoked_in_one_process_is_refused_by_the_others(sql_url: str) -> None:
    one, other = await open_repository(sql_url), await open_repository(sql_url)
    try:
        config = AuthConfig(BASE, FHIR, frozenset({FHIR}))
        issuer = TokenIssuer(config, await _keys(one))
        verifier_one = await _verifier(one)
        verifier_other = await _verifier(other)
        wait_s = 0.0 if sql_url.startswith("sqlite") else 2.0
        grant = Authorization("g1", "pat", "app", "patient/*.rs", patient="p1")
        token, claims = issuer.access_token(grant, "patient/*.rs")
        other_grant = Authorization("g2", "pat", "app", "patient/*.rs", patient="p1")
        second, _ = issuer.access_token(other_grant, "patient/*.rs")
        for verifier in (verifier_one, verifier_other):  # both have it cached as not revoked
            await verifier.authenticate(f"Bearer {token}")
            await verifier.authenticate(f"Bearer {second}")
        credentials = Credentials(one.records, config, system_clock)
        await credentials.revoke_access(claims["jti"], claims["exp"])
        assert await _refused(verifier_other, token, wait_s)
        assert await _refused(verifier_one, token, 0.0)
        await verifier_other.authenticate(f"Bearer {second}")  # other tokens still work
        await credentials.revoke_grant("g2", "test")
        assert await _refused(verifier_other, second, wait_s)
    finally:
        await one.close()
        await other.close()
