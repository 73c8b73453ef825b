"""Refresh tokens (RFC 6749 section 6; rotation and reuse detection per RFC 9700 4.14.2),
revocation (RFC 7009) and introspection (RFC 7662, SMART
https://hl7.org/fhir/smart-app-launch/token-introspection.html). SECURITY.md: "new scopes are a
subset of the old; a random refresh token -> 400/401; a refresh token used twice -> the second
fails and the whole grant is revoked. Refresh tokens can live >= 3 months. Revocation takes
effect at once for access and refresh tokens; introspection answers active: false for revoked
or garbage tokens"."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from healthbridge.settings import Settings
from tests.auth.conftest import Harness, make_harness
from tests.support.databases import SQL_BACKEND_PARAMS, PostgresDatabase


def _refresh(auth: Harness, token: str, **extra: str) -> Any:
    data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": "app", **extra}
    return auth.client.post("/auth/token", data=data)


def test_refresh_rotates_and_keeps_the_context(any_auth: Harness) -> None:
    auth = any_auth
    first = auth.tokens()
    answer = _refresh(auth, first["refresh_token"])
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    second = answer.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["patient"] == "p1" and second["scope"] == first["scope"]
    assert (
        auth.claims(second["access_token"])["grant"] == auth.claims(first["access_token"])["grant"]
    )
    assert auth.fhir("Patient/p1", second["access_token"]).status_code == 200
    third = _refresh(auth, second["refresh_token"])
    assert third.status_code == 200


def test_refresh_reuse_revokes_the_grant(any_auth: Harness) -> None:
    auth = any_auth
    first = auth.tokens()
    second = _refresh(auth, first["refresh_token"]).json()
    assert auth.fhir("Patient/p1", second["access_token"]).status_code == 200
    reused = _refresh(auth, first["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    # The whole grant is gone: the newest refresh token and every access token.
    assert _refresh(auth, second["refresh_token"]).status_code == 400
    assert auth.fhir("Patient/p1", second["access_token"]).status_code == 401
    assert auth.fhir("Patient/p1", first["access_token"]).status_code == 401
    # Other grants of the same user are unaffected.
    other = auth.tokens()
    assert auth.fhir("Patient/p1", other["access_token"]).status_code == 200


def test_refresh_scopes_may_only_shrink(auth: Harness) -> None:
    first = auth.tokens()
    narrower = _refresh(auth, first["refresh_token"], scope="patient/*.rs openid")
    assert narrower.status_code == 200, narrower.text
    body = narrower.json()
    assert body["scope"] == "patient/*.rs openid"
    assert auth.claims(body["access_token"])["scope"] == "patient/*.rs openid"
    # The new refresh token still carries the original grant.
    wider = _refresh(auth, body["refresh_token"], scope="patient/*.cruds")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"


@pytest.mark.parametrize("token", ["random-token", "", "a" * 600, "x.y.z"])
def test_random_refresh_tokens_are_refused(auth: Harness, token: str) -> None:
    answer = _refresh(auth, token)
    assert answer.status_code in (400, 401)
    assert answer.json()["error"] in ("invalid_grant", "invalid_request")


def test_refresh_token_by_another_client_is_refused(auth: Harness) -> None:
    auth.public_app("other")
    tokens = auth.tokens()
    answer = _refresh(auth, tokens["refresh_token"], client_id="other")
    assert answer.status_code == 400


def test_refresh_tokens_live_three_months_and_are_stored_hashed(auth: Harness) -> None:
    assert Settings().auth_refresh_token_days >= 90
    tokens = auth.tokens()
    records = auth.run(auth.repo.records.records("refresh"))
    assert len(records) == 1
    assert records[0].key != tokens["refresh_token"]
    assert tokens["refresh_token"] not in str(records[0].value)
    expires = records[0].expires
    assert expires is not None
    assert expires - datetime.now(UTC) > timedelta(days=89)


def test_a_disabled_user_cannot_refresh(auth: Harness) -> None:
    from healthbridge.auth.users import UserStore
    from healthbridge.store.instants import system_clock

    tokens = auth.tokens()
    auth.run(UserStore(auth.repo.records, system_clock).update("pat", disabled=True))
    assert _refresh(auth, tokens["refresh_token"]).status_code == 400


def test_disabling_a_user_stops_their_access_tokens_at_once(any_auth: Harness) -> None:
    """A disabled account's unexpired access tokens answer 401 on the next request, in every
    process (the revocation record and the change signal), and work again once re-enabled."""
    from healthbridge.auth.users import UserStore
    from healthbridge.store.instants import system_clock

    auth = any_auth
    users = UserStore(auth.repo.records, system_clock)
    tokens = auth.tokens()
    assert auth.fhir("Patient/p1", tokens["access_token"]).status_code == 200
    auth.run(users.update("pat", disabled=True))
    assert auth.fhir("Patient/p1", tokens["access_token"]).status_code == 401
    auth.run(users.update("pat", disabled=False))
    assert auth.fhir("Patient/p1", tokens["access_token"]).status_code == 200


def test_disabling_a_client_stops_its_access_tokens_at_once(any_auth: Harness) -> None:
    from healthbridge.auth.clients import ClientStore

    auth = any_auth
    tokens = auth.tokens()
    assert auth.fhir("Patient/p1", tokens["access_token"]).status_code == 200
    auth.run(ClientStore(auth.repo.records).update("app", disabled=True))
    assert auth.fhir("Patient/p1", tokens["access_token"]).status_code == 401
    assert _refresh(auth, tokens["refresh_token"]).status_code in (400, 401)


def _revoke(auth: Harness, token: str, **extra: str) -> Any:
    return auth.client.post("/auth/revoke", data={"token": token, "client_id": "app", **extra})


def test_revoking_an_access_token_takes_effect_at_once(any_auth: Harness) -> None:
    auth = any_auth
    tokens = auth.tokens()
    assert auth.fhir("Patient/p1", tokens["access_token"]).status_code == 200
    answer = _revoke(auth, tokens["access_token"], token_type_hint="access_token")
    assert answer.status_code == 200
    assert auth.fhir("Patient/p1", tokens["access_token"]).status_code == 401
    # The refresh token of the grant still works (only that access token was revoked).
    assert _refresh(auth, tokens["refresh_token"]).status_code == 200


def test_revoking_a_refresh_token_revokes_the_grant(auth: Harness) -> None:
    tokens = auth.tokens()
    assert _revoke(auth, tokens["refresh_token"]).status_code == 200
    assert _refresh(auth, tokens["refresh_token"]).status_code == 400
    assert auth.fhir("Patient/p1", tokens["access_token"]).status_code == 401


def test_revocation_of_unknown_tokens_and_by_other_clients(auth: Harness) -> None:
    assert _revoke(auth, "garbage").status_code == 200  # RFC 7009 2.2
    auth.public_app("other")
    tokens = auth.tokens()
    other = auth.client.post(
        "/auth/revoke", data={"token": tokens["access_token"], "client_id": "other"}
    )
    assert other.status_code == 400
    assert auth.fhir("Patient/p1", tokens["access_token"]).status_code == 200


def _introspect(auth: Harness, token: str, secret: str, client: str = "conf") -> dict[str, Any]:
    answer = auth.client.post("/auth/introspect", data={"token": token}, auth=(client, secret))
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body: dict[str, Any] = answer.json()
    return body


def test_introspection(auth: Harness) -> None:
    resource_server = auth.secret_app("rs", roles=frozenset({"introspect"}))
    tokens = auth.tokens()
    active = _introspect(auth, tokens["access_token"], resource_server, "rs")
    assert active["active"] is True
    assert active["scope"] == tokens["scope"] and active["client_id"] == "app"
    assert active["patient"] == "p1" and active["fhirUser"] == "Patient/p1"
    assert active["sub"] == "pat" and active["exp"] > active["iat"]
    refresh = _introspect(auth, tokens["refresh_token"], resource_server, "rs")
    assert refresh["active"] is True and refresh["client_id"] == "app"
    for garbage in ("garbage", "a.b.c", tokens["id_token"]):
        assert _introspect(auth, garbage, resource_server, "rs") == {"active": False}
    _revoke(auth, tokens["access_token"])
    assert _introspect(auth, tokens["access_token"], resource_server, "rs") == {"active": False}
    _revoke(auth, tokens["refresh_token"])
    assert _introspect(auth, tokens["refresh_token"], resource_server, "rs") == {"active": False}


def test_introspection_of_another_clients_token_needs_the_role(auth: Harness) -> None:
    secret = auth.secret_app("conf")
    tokens = auth.tokens()
    assert _introspect(auth, tokens["access_token"], secret) == {"active": False}
    anonymous = auth.client.post("/auth/introspect", data={"token": tokens["access_token"]})
    assert anonymous.status_code in (400, 401)


@pytest.mark.parametrize("kind", SQL_BACKEND_PARAMS)
def test_revocation_reaches_every_server_process(
    kind: str, tmp_path: Path, postgres_database: PostgresDatabase
) -> None:
    """Two app instances on one database (as two Granian workers): a token revoked through
    one is refused by the other on its next request."""
    if kind == "postgresql":
        postgres_database.require()
    with ExitStack() as stack:
        one = make_harness(kind, tmp_path, postgres_database)
        first = next(one)
        stack.callback(one.close)
        tokens = first.tokens()
        # The second process opens the same database (no fixtures: they exist already).
        second = _second_process(kind, tmp_path, postgres_database)
        other = next(second)
        stack.callback(second.close)
        assert other.fhir("Patient/p1", tokens["access_token"]).status_code == 200
        assert _revoke(first, tokens["access_token"]).status_code == 200
        assert other.fhir("Patient/p1", tokens["access_token"]).status_code == 401


def _second_process(kind: str, tmp_path: Path, postgres: PostgresDatabase) -> Any:
    from starlette.testclient import TestClient

    from healthbridge.app import create_app
    from healthbridge.store.sql import open_repository
    from tests.auth.conftest import FHIR
    from tests.support.databases import sqlite_url

    url = sqlite_url(tmp_path) if kind == "sqlite" else postgres.require()
    settings = Settings(
        data_dir=tmp_path, access_log=False, public_base_url=FHIR, rate_limits=False
    )

    async def factory() -> Any:
        return await open_repository(url)

    app = create_app(settings, repository_factory=factory)
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as client:
        yield Harness(client, None)  # type: ignore[arg-type]


def test_the_token_endpoint_is_rate_limited_per_client(tmp_path: Path) -> None:
    """SECURITY.md: token endpoints are limited per client as well as per address: a client
    over its budget gets 429 slow_down with Retry-After; another client is not affected."""
    harness = make_harness("memory", tmp_path, rate_limits=True, rate_limit_token_client="2/minute")
    auth = next(harness)
    try:

        def ask(client_id: str) -> Any:
            return auth.client.post(
                "/auth/token",
                data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": client_id},
            )

        assert [ask("app").status_code for _ in range(2)] == [400, 400]
        refused = ask("app")
        assert refused.status_code == 429
        assert refused.json()["error"] == "slow_down"
        assert int(refused.headers["retry-after"]) >= 1
        assert ask("other").status_code in (400, 401)
    finally:
        next(harness, None)
