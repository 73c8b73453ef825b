"""User accounts of the sign-in page: who may authorize apps, and who they are in FHIR terms.

SMART's ``fhirUser`` (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html#fhiruser)
links each account to the Patient, Practitioner (or PractitionerRole) or RelatedPerson resource
the person is. Roles (``admin``, ``auditor``, ``restricted-data``, ``all-patients``...) travel in
the access token for the server's own policies (docs/access-control.md).
Passwords are Argon2id hashes (:mod:`.passwords`); TOTP (:mod:`.totp`) is an optional second
factor. After ``lockout_threshold`` failed sign-ins in a row an account is locked for
``lockout_duration`` (NIST SP 800-63B 5.2.2 https://pages.nist.gov/800-63-3/sp800-63b.html#throttle);
the counter is updated with compare-and-set writes, so parallel guesses all count.

TOTP secrets are stored sealed (:mod:`healthbridge.infra.sealing`, purpose ``totp/<username>``):
:attr:`User.totp_secret` is the stored form, opened only to check a code. A secret given in
plain (enrolment) is sealed when written; so is a legacy plaintext one, or one sealed with an
older key, whenever its account is written again (and by ``healthbridge secrets rotate``,
:data:`TOTP_SECRETS`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from healthbridge.auth import passwords, state, totp
from healthbridge.infra.sealing import Sealer, SealingError
from healthbridge.store.instants import Clock, utc
from healthbridge.store.records import Record, RecordStore
from healthbridge.store.sealed_records import SealedField

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
ROLE = re.compile(r"[a-z][a-z0-9-]{0,31}")
FHIR_USER = re.compile(
    r"(Patient|Practitioner|PractitionerRole|RelatedPerson)/[A-Za-z0-9\-.]{1,64}"
)
_RETRIES = 10


class UserError(ValueError):
    """A user name, role, link or password that cannot be accepted."""


@dataclass(frozen=True, slots=True)
class User:
    username: str
    fhir_user: str | None  # e.g. "Patient/123"
    roles: frozenset[str] = frozenset()
    password_hash: str | None = None
    totp_secret: str | None = None  # as stored: sealed (plain only until written)
    disabled: bool = False
    failures: int = 0
    locked_until: datetime | None = None
    name: str = ""
    version: int = 0

    @property
    def fhir_type(self) -> str | None:
        return self.fhir_user.split("/", 1)[0] if self.fhir_user else None

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until

    def value(self) -> dict[str, Any]:
        return {
            "fhir_user": self.fhir_user,
            "roles": sorted(self.roles),
            "password": self.password_hash,
            "totp": self.totp_secret,
            "disabled": self.disabled,
            "failures": self.failures,
            "locked_until": self.locked_until.isoformat() if self.locked_until else None,
            "name": self.name,
        }


def _user(record: Record) -> User:
    v = record.value
    locked = v.get("locked_until")
    return User(
        username=record.key,
        fhir_user=v.get("fhir_user"),
        roles=frozenset(v.get("roles") or ()),
        password_hash=v.get("password"),
        totp_secret=v.get("totp"),
        disabled=bool(v.get("disabled")),
        failures=int(v.get("failures") or 0),
        locked_until=datetime.fromisoformat(locked) if locked else None,
        name=v.get("name") or "",
        version=record.version,
    )


def _totp_purpose(username: str) -> str:
    return f"totp/{username}"


TOTP_SECRETS = SealedField(
    "TOTP secrets", state.USER, "totp", lambda record: _totp_purpose(record.key)
)
"""The users' TOTP secrets, for ``healthbridge secrets status`` and ``rotate``."""


class SignIn(Enum):
    OK = "ok"
    NEEDS_TOTP = "totp"
    FAILED = "failed"  # wrong name or password, disabled, or locked: one answer for all


@dataclass(frozen=True, slots=True)
class Lockout:
    threshold: int = 5
    duration: timedelta = timedelta(minutes=15)


def check_fields(username: str, fhir_user: str | None, roles: frozenset[str]) -> None:
    if not USERNAME.fullmatch(username):
        raise UserError(
            "a user name is 1-64 letters, digits and . _ @ - (starting with a letter or digit)"
        )
    if fhir_user is not None and not FHIR_USER.fullmatch(fhir_user):
        raise UserError(
            "fhirUser must be Patient/<id>, Practitioner/<id>, PractitionerRole/<id> or "
            "RelatedPerson/<id>"
        )
    for role in roles:
        if not ROLE.fullmatch(role):
            raise UserError(f"{role!r} is not a role name (lower-case letters, digits, -)")


class UserStore:
    def __init__(
        self,
        records: RecordStore,
        clock: Clock,
        lockout: Lockout | None = None,
        *,
        sealer: Sealer | None = None,
    ):
        """``sealer`` seals the TOTP secrets written and opens them to check codes. Without
        one (account chores that never touch the second factor) stored secrets are kept as
        they are, and setting or checking one raises :class:`UserError`."""
        self._records = records
        self._clock = clock
        self._sealer = sealer
        self.lockout = lockout or Lockout()

    def now(self) -> datetime:
        return utc(self._clock())

    def _stored(self, user: User, before: str | None = None) -> dict[str, Any]:
        """The record value of ``user``, its TOTP secret sealed with the current key
        (``before``: the secret as stored until now, kept when there is no sealer)."""
        value = user.value()
        secret = user.totp_secret or None
        if self._sealer is None:
            if secret is not None and secret != before:
                raise UserError("a TOTP secret is stored sealed: this needs the secret key")
        elif secret is not None and not self._sealer.is_current(secret):
            purpose = _totp_purpose(user.username)
            # Sealed with a key not configured here: kept as it is (`secrets status` shows it).
            with contextlib.suppress(SealingError):
                secret = self._sealer.seal(self._sealer.open(secret, purpose), purpose)
        value["totp"] = secret
        return value

    async def get(self, username: str) -> User | None:
        if not USERNAME.fullmatch(username):
            return None
        record = await self._records.get_record(state.USER, username)
        return None if record is None else _user(record)

    async def all(self) -> list[User]:
        found: list[User] = []
        after: str | None = None
        while True:
            page = await self._records.records(state.USER, after_key=after, limit=500)
            found += [_user(r) for r in page]
            if len(page) < 500:
                return found
            after = page[-1].key

    async def create(
        self,
        username: str,
        password: str,
        *,
        fhir_user: str | None = None,
        roles: frozenset[str] = frozenset(),
        name: str = "",
    ) -> User:
        """A new account; UserError when the name is taken or a field is malformed."""
        check_fields(username, fhir_user, roles)
        try:
            hashed = await passwords.hash_password(password)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        user = User(username, fhir_user, roles, hashed, name=name)
        if not await self._records.add_record(state.USER, username, self._stored(user)):
            raise UserError(f"the user name {username!r} is taken")
        return await self._require(username)

    async def _require(self, username: str) -> User:
        user = await self.get(username)
        if user is None:
            raise UserError(f"there is no user {username!r}")
        return user

    async def update(self, username: str, **changes: Any) -> User:
        """Change fields of the account (compare-and-set, retried on a concurrent change)."""
        for _ in range(_RETRIES):
            user = await self._require(username)
            changed = _replace(user, changes)
            check_fields(changed.username, changed.fhir_user, changed.roles)
            value = self._stored(changed, user.totp_secret)
            written = await self._records.put_record(
                state.USER, username, value, if_version=user.version
            )
            if written is not None:
                if changed.disabled != user.disabled:
                    await state.mark_disabled(
                        self._records, state.DISABLED_USER, username, changed.disabled
                    )
                return _user(written)
        raise UserError(f"the account {username!r} keeps changing; try again")

    async def set_password(self, username: str, password: str) -> User:
        try:
            hashed = await passwords.hash_password(password)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        return await self.update(username, password_hash=hashed, failures=0, locked_until=None)

    async def sign_in(self, username: str, password: str) -> tuple[SignIn, User | None]:
        """Check a name and password; counts failures and locks the account at the threshold."""
        user = await self.get(username)
        usable = user is not None and not user.disabled and not user.locked(self.now())
        matches = await passwords.verify_password(
            user.password_hash if user is not None and usable else None, password
        )
        if user is None or not usable:
            return SignIn.FAILED, None
        if not matches:
            await self.record_failure(username)
            return SignIn.FAILED, None
        if user.failures:
            user = await self.update(username, failures=0)
        return (SignIn.NEEDS_TOTP if user.totp_secret else SignIn.OK), user

    async def check_totp(self, user: User, code: str) -> bool:
        """The second factor; a wrong code counts as a failed sign-in."""
        fresh = await self.get(user.username)
        if fresh is None or fresh.disabled or fresh.locked(self.now()) or not fresh.totp_secret:
            return False
        if self._sealer is None:
            raise UserError("checking a TOTP code needs the secret key")
        secret = self._sealer.open(fresh.totp_secret, _totp_purpose(fresh.username))
        if await totp.verify(self._records, fresh.username, secret, code, self.now()):
            return True
        await self.record_failure(fresh.username)
        return False

    async def record_failure(self, username: str) -> None:
        for _ in range(_RETRIES):
            user = await self.get(username)
            if user is None:
                return
            failures = user.failures + 1
            locked = user.locked_until
            if failures >= self.lockout.threshold:
                failures, locked = 0, self.now() + self.lockout.duration
            changed = _replace(user, {"failures": failures, "locked_until": locked})
            if await self._records.put_record(
                state.USER,
                username,
                self._stored(changed, user.totp_secret),
                if_version=user.version,
            ):
                return


def _replace(user: User, changes: dict[str, Any]) -> User:
    unknown = set(changes) - {f for f in User.__dataclass_fields__ if f != "username"}
    if unknown:
        raise TypeError(f"unknown user fields {sorted(unknown)}")
    if "roles" in changes:
        changes = {**changes, "roles": frozenset(changes["roles"])}
    return dataclasses.replace(user, **changes)
