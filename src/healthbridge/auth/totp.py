"""The optional second sign-in factor: time-based one-time passwords (TOTP, RFC 6238
https://www.rfc-editor.org/rfc/rfc6238) through pyotp, 6 digits every 30 s.

A code is accepted in its own 30-second step or the one before or after (clock drift), and only
once: the accepted step is recorded per user (:data:`~.state.TOTP_USED`), so a code seen over
someone's shoulder cannot be replayed within its window.
"""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta

import pyotp

from healthbridge.auth import state
from healthbridge.store.records import RecordStore

STEP_SECONDS = 30
DRIFT_STEPS = 1


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, username: str, issuer: str) -> str:
    """The ``otpauth://`` URI authenticator apps read (usually from a QR code)."""
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=issuer)


def current_code(secret: str, now: datetime) -> str:
    """The code for ``now`` (tests and the demo)."""
    return pyotp.TOTP(secret).at(now)


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    totp = pyotp.TOTP(secret)
    if not (code.isdigit() and len(code) == totp.digits):
        return None
    step = totp.timecode(now)
    for candidate in range(step - DRIFT_STEPS, step + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(candidate), code):
            return candidate
    return None


async def verify(
    records: RecordStore, username: str, secret: str, code: str, now: datetime
) -> bool:
    """Whether ``code`` is valid now and was not accepted before (it is used up if so)."""
    step = _matching_step(secret, code.strip().replace(" ", ""), now)
    if step is None:
        return False
    expires = now + timedelta(seconds=STEP_SECONDS * (2 * DRIFT_STEPS + 2))
    return await records.add_record(state.TOTP_USED, f"{username} {step}", {}, expires)
