"""Signing in (OpenID Connect Core 3.1.2.3): Argon2id passwords, lockout after repeated failures
(NIST SP 800-63B 5.2.2), the TOTP second factor (RFC 6238) used once, sessions and sign-out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from healthbridge.auth import totp
from healthbridge.auth.users import SignIn, UserStore
from healthbridge.store.instants import system_clock
from healthbridge.store.memory_records import MemoryRecords
from tests.auth.conftest import PASSWORD, Harness, make_harness
from tests.auth.forms import form
from tests.support.clock import FakeClock


def _user_record(auth: Harness, username: str) -> dict[str, Any]:
    record = auth.run(auth.repo.records.get_record("user", username))
    assert record is not None
    return record.value


def test_passwords_are_stored_as_argon2id(auth: Harness) -> None:
    stored = _user_record(auth, "pat")["password"]
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_wrong_password_unknown_user_and_disabled_user_look_the_same(auth: Harness) -> None:
    params = auth.authorize_params()
    auth.run(UserStore(auth.repo.records, system_clock).update("mum", disabled=True))
    alerts = set()
    for username, password in (("pat", "wrong password"), ("ghost", PASSWORD), ("mum", PASSWORD)):
        answer = auth.sign_in(params, username, password)
        assert answer.status_code == 401
        assert "hb_session" not in answer.cookies
        assert form(answer.text, "/auth/login")  # the sign-in form again
        alerts.add(answer.text.split('role="alert">')[1].split("<")[0])
    assert len(alerts) == 1 and "Sign-in failed" in alerts.pop()
    assert auth.sign_in(params, "pat").status_code == 303


def test_lockout_after_repeated_failures(tmp_path: Path) -> None:
    for auth in make_harness("memory", tmp_path, auth_lockout_threshold=3):
        params = auth.authorize_params()
        for _ in range(3):
            assert auth.sign_in(params, "pat", "wrong password").status_code == 401
        locked = auth.sign_in(params, "pat")  # the right password, but locked
        assert locked.status_code == 401
        assert _user_record(auth, "pat")["locked_until"]
        assert auth.sign_in(params, "doc").status_code == 303  # others are not affected
        users = UserStore(auth.repo.records, system_clock)
        auth.run(users.update("pat", failures=0, locked_until=None))  # `users unlock`
        assert auth.sign_in(params, "pat").status_code == 303


async def test_lockout_expires_and_success_resets_the_count() -> None:
    clock = FakeClock()
    records = MemoryRecords(clock)
    users = UserStore(records, clock)
    await users.create("u", PASSWORD)
    for _ in range(4):
        assert (await users.sign_in("u", "nope"))[0] is SignIn.FAILED
    assert (await users.get("u")).failures == 4  # type: ignore[union-attr]
    assert (await users.sign_in("u", PASSWORD))[0] is SignIn.OK
    assert (await users.get("u")).failures == 0  # type: ignore[union-attr]
    for _ in range(5):
        await users.sign_in("u", "nope")
    assert (await users.sign_in("u", PASSWORD))[0] is SignIn.FAILED
    clock.advance(minutes=16)
    assert (await users.sign_in("u", PASSWORD))[0] is SignIn.OK


def test_totp_second_factor(any_auth: Harness) -> None:
    auth = any_auth
    secret = totp.new_secret()
    users = UserStore(auth.repo.records, system_clock, sealer=auth.sealer)
    auth.run(users.update("pat", totp_secret=secret))
    params = auth.authorize_params()
    step = auth.sign_in(params, "pat")
    assert step.status_code == 200 and "one-time code" in step.text
    assert "hb_session" not in step.cookies
    second = form(step.text, "/auth/login/totp")
    fields = dict(second.fields)
    wrong = auth.client.post("/auth/login/totp", data={**fields, "code": "000000"})
    if wrong.status_code != 303:  # 000000 may, once in a million, be the code
        assert wrong.status_code == 401
    code = totp.current_code(secret, datetime.now(UTC))
    right = auth.client.post(
        "/auth/login/totp", data={**fields, "code": code}, follow_redirects=False
    )
    assert right.status_code == 303, right.text
    assert right.headers["location"].startswith("/auth/authorize?")
    page = auth.client.get(right.headers["location"])
    assert form(page.text, "/auth/authorize").buttons  # the consent page
    # The same code cannot be used for another sign-in.
    step = auth.sign_in(params, "pat")
    again = auth.client.post(
        "/auth/login/totp",
        data={**dict(form(step.text, "/auth/login/totp").fields), "code": code},
    )
    assert again.status_code == 401


async def test_totp_accepts_drift_of_one_step_only() -> None:
    records = MemoryRecords(system_clock)
    secret = totp.new_secret()
    now = datetime.now(UTC)
    old = totp.current_code(secret, now - timedelta(seconds=30))
    ancient = totp.current_code(secret, now - timedelta(seconds=120))
    assert await totp.verify(records, "u", secret, old, now)
    if ancient != totp.current_code(secret, now):
        assert not await totp.verify(records, "u", secret, ancient, now)
    assert not await totp.verify(records, "u", secret, "12345", now)
    assert not await totp.verify(records, "u", secret, "abcdef", now)


def test_session_cookie_and_sign_out(auth: Harness) -> None:
    params = auth.authorize_params()
    answer = auth.sign_in(params, "pat")
    cookie = answer.headers["set-cookie"]
    assert "hb_session=" in cookie and "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "samesite=lax" in cookie.lower()
    assert "Path=/auth" in cookie
    page = auth.client.get(answer.headers["location"])
    csrf = form(page.text, "/auth/logout").hidden("csrf")
    out = auth.client.post("/auth/logout", data={"csrf": csrf})
    assert out.status_code == 200 and "signed out" in out.text
    again = auth.client.get(answer.headers["location"])
    assert form(again.text, "/auth/login")  # signed out: the sign-in page again


def test_session_records_hold_digests_not_ids(auth: Harness) -> None:
    answer = auth.sign_in(auth.authorize_params(), "pat")
    sid = answer.cookies["hb_session"]
    keys = [r.key for r in auth.run(auth.repo.records.records("session"))]
    assert keys and sid not in keys
