"""User accounts of the sign-in page: who may authorize apps, and who they are in FHIR terms.

SMART's ``fhirUser`` (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html#fhiruser)
links each account to the Patient, Practitioner or RelatedPerson resource the person is. Roles
(``admin``, ``auditor``, ...) travel in the access token for the server's own policies.
Passwords are Argon2id hashes (:mod:`.passwords`); TOTP (:mod:`.totp`) is an optional second
factor. After ``lockout_threshold`` failed sign-ins in a row an account is locked for
``lockout_duration`` (NIST SP 800-63B 5.2.2 https://pages.nist.gov/800-63-3/sp800-63b.html#throttle);
the counter is updated with compare-and-set writes, so parallel guesses all count.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from healthbridge.auth import passwords, state, totp
from healthbridge.store.instants import Clock, utc
from healthbridge.store.records import Record, RecordStore

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
ROLE = re.compile(r"[a-z][a-z0-9-]{0,31}")
FHIR_USER = re.compile(r"(Patient|Practitioner|RelatedPerson)/[A-Za-z0-9\-.]{1,64}")
_RETRIES = 10


class UserError(ValueError):
    """A user name, role, link or password that cannot be accepted."""


@dataclass(frozen=True, slots=True)
class User:
    username: str
    fhir_user: str | None  # e.g. "Patient/123"
    roles: frozenset[str] = frozenset()
    password_hash: str | None = None
    totp_secret: str | None = None
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
        raise UserError("fhirUser must be Patient/<id>, Practitioner/<id> or RelatedPerson/<id>")
    for role in roles:
        if not ROLE.fullmatch(role):
            raise UserError(f"{role!r} is not a role name (lower-case letters, digits, -)")


class UserStore:
    def __init__(self, records: RecordStore, clock: Clock, lockout: Lockout | None = None):
        self._records = records
        self._clock = clock
        self.lockout = lockout or Lockout()

    def now(self) -> datetime:
        return utc(self._clock())

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
        if not await self._records.add_record(state.USER, username, user.value()):
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
            written = await self._records.put_record(
                state.USER, username, changed.value(), if_version=user.version
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
        if await totp.verify(self._records, fresh.username, fresh.totp_secret, code, self.now()):
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
                state.USER, username, changed.value(), if_version=user.version
            ):
                return


def _replace(user: User, changes: dict[str, Any]) -> User:
    unknown = set(changes) - {f for f in User.__dataclass_fields__ if f != "username"}
    if unknown:
        raise TypeError(f"unknown user fields {sorted(unknown)}")
    if "roles" in changes:
        changes = {**changes, "roles": frozenset(changes["roles"])}
    return dataclasses.replace(user, **changes)
