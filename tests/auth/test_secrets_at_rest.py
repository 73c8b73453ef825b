"""The authorization server's secrets are sealed in the database (healthbridge.infra.sealing,
AES-256-GCM per NIST SP 800-38D): the private signing JWKs (RFC 7517) and the TOTP secrets
(RFC 6238). A copy of the database holds no key material, yet tokens and codes still verify."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from joserfc import jws
from starlette.testclient import TestClient

from healthbridge.app import create_app
from healthbridge.auth import totp
from healthbridge.auth.users import UserStore
from healthbridge.infra.sealing import Sealer, SealingError
from healthbridge.infra.secret_keys import SecretKeyError
from healthbridge.settings import Settings
from healthbridge.store.instants import system_clock
from healthbridge.store.memory import MemoryRepository
from healthbridge.store.repository import Repository
from tests.auth.conftest import Harness
from tests.auth.forms import form

PRIVATE_PARAMETERS = ("d", "p", "q", "dp", "dq", "qi")  # RFC 7518 section 6.3.2


def _value(auth: Harness, kind: str, key: str) -> dict[str, Any]:
    record = auth.run(auth.repo.records.get_record(kind, key))
    assert record is not None
    return record.value


def _users(auth: Harness) -> UserStore:
    return UserStore(auth.repo.records, system_clock, sealer=auth.sealer)


def _totp_sign_in(auth: Harness, username: str, secret: str) -> Any:
    step = auth.sign_in(auth.authorize_params(), username)
    assert step.status_code == 200 and "one-time code" in step.text, step.text
    fields = dict(form(step.text, "/auth/login/totp").fields)
    code = totp.current_code(secret, datetime.now(UTC))
    return auth.client.post(
        "/auth/login/totp", data={**fields, "code": code}, follow_redirects=False
    )


def test_signing_keys_are_sealed_and_tokens_still_verify(any_auth: Harness) -> None:
    auth = any_auth
    assert auth.sealer is not None
    tokens = auth.tokens()
    assert auth.fhir("Patient/p1", tokens["access_token"]).status_code == 200
    signed_with = jws.extract_compact(tokens["access_token"].encode()).headers()["kid"]
    records = auth.run(auth.repo.records.records("signing-key"))
    assert len(records) == 2  # this period's key and the next one's
    assert signed_with in {r.value["kid"] for r in records}
    for record in records:
        stored = json.dumps(record.value)
        assert set(record.value) == {"kid", "jwk", "period"}
        assert record.value["jwk"].startswith(f"sealed:v1:{auth.sealer.key_id}:")
        private = auth.signing_key(record.value["kid"]).as_dict(private=True)
        for name in PRIVATE_PARAMETERS:
            assert private[name] not in stored
    # The published key set is unchanged: public parts only.
    published = auth.client.get("/auth/jwks").json()["keys"]
    assert {k["kid"] for k in published} == {r.value["kid"] for r in records}
    assert not any(name in key for key in published for name in PRIVATE_PARAMETERS)


def test_totp_secrets_are_sealed_and_codes_still_verify(any_auth: Harness) -> None:
    auth = any_auth
    secret = totp.new_secret()
    auth.run(_users(auth).update("doc", totp_secret=secret))
    stored = _value(auth, "user", "doc")
    assert stored["totp"].startswith("sealed:v1:") and secret not in json.dumps(stored)
    assert Sealer.key_id_of(stored["totp"]) == auth.sealer.key_id  # type: ignore[union-attr]
    answer = _totp_sign_in(auth, "doc", secret)
    assert answer.status_code == 303, answer.text
    # Other writes of the account keep the secret sealed (and working).
    auth.run(_users(auth).update("doc", name="Dr Doc"))
    assert Sealer.is_sealed(_value(auth, "user", "doc")["totp"])


def test_a_sealed_secret_copied_to_another_account_does_not_open(any_auth: Harness) -> None:
    """The purpose (``totp/<username>``) is the associated data."""
    auth = any_auth
    users = _users(auth)
    secret = totp.new_secret()
    auth.run(users.update("doc", totp_secret=secret))
    copied = {**_value(auth, "user", "pat"), "totp": _value(auth, "user", "doc")["totp"]}
    auth.run(auth.repo.records.put_record("user", "pat", copied))
    pat = auth.run(users.get("pat"))
    assert pat is not None
    with pytest.raises(SealingError, match="copied from another record"):
        auth.run(users.check_totp(pat, totp.current_code(secret, datetime.now(UTC))))


def test_legacy_plaintext_secrets_still_work_and_are_sealed_when_written(
    any_auth: Harness,
) -> None:
    """A database from before sealing keeps working; each account is sealed on its next write."""
    auth = any_auth
    secret = totp.new_secret()
    legacy = {**_value(auth, "user", "doc"), "totp": secret}
    auth.run(auth.repo.records.put_record("user", "doc", legacy))
    assert _totp_sign_in(auth, "doc", secret).status_code == 303
    auth.run(_users(auth).update("doc", name="Dr Doc"))
    stored = _value(auth, "user", "doc")["totp"]
    assert Sealer.is_sealed(stored) and secret not in stored
    assert auth.sealer is not None and auth.sealer.open(stored, "totp/doc") == secret


def test_without_the_secret_key_a_totp_secret_cannot_be_stored(any_auth: Harness) -> None:
    from healthbridge.auth.users import UserError

    auth = any_auth
    bare = UserStore(auth.repo.records, system_clock)  # account chores: no key
    with pytest.raises(UserError, match="secret key"):
        auth.run(bare.update("doc", totp_secret=totp.new_secret()))
    auth.run(_users(auth).update("doc", totp_secret=totp.new_secret()))
    sealed = _value(auth, "user", "doc")["totp"]
    auth.run(bare.update("doc", disabled=True))  # a stored secret is carried over untouched
    assert _value(auth, "user", "doc")["totp"] == sealed


def test_a_bad_secret_key_stops_the_start(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text("too short\n")
    key_file.chmod(0o600)
    settings = Settings(data_dir=tmp_path, access_log=False, rate_limits=False)

    async def factory() -> Repository:
        return MemoryRepository()

    app = create_app(settings, repository_factory=factory)
    with pytest.raises(SecretKeyError, match="shorter than 32 characters"), TestClient(app):
        pass
