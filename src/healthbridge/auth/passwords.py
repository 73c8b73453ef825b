"""Password hashes: Argon2id (RFC 9106 https://www.rfc-editor.org/rfc/rfc9106), through
argon2-cffi, with OWASP's minimum parameters for Argon2id (19 MiB, 2 passes, 1 lane:
https://cheatsheetseries.owasp.org/cheatsheets/Password_Storage_Cheat_Sheet.html#argon2id).

Hashing costs tens of milliseconds of CPU, so both calls run in a worker thread and never block
the event loop. A check for an unknown user still verifies against a fixed hash, so the time a
failed sign-in takes does not tell whether the account exists.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 8
MAX_LENGTH = 1024
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
_DUMMY = _hasher.hash("not a password of anyone")


def check_strength(password: str) -> None:
    """ValueError when ``password`` is too short or too long to accept."""
    if len(password) < MIN_LENGTH:
        raise ValueError(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise ValueError(f"a password may have at most {MAX_LENGTH} characters")


async def hash_password(password: str) -> str:
    check_strength(password)
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(stored: str | None, password: str) -> bool:
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches the stored hash (None: no such user; always False)."""
    return await asyncio.to_thread(_verify, stored, password)
