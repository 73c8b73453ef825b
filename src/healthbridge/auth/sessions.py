"""Browser sessions of the sign-in and consent pages, and their CSRF protection
(OWASP https://cheatsheetseries.owasp.org/cheatsheets/Session_Management_Cheat_Sheet.html and
Cross-Site_Request_Forgery_Prevention_Cheat_Sheet.html).

* A session id is a random 256-bit value in an ``HttpOnly``, ``SameSite=Lax`` cookie limited to
  ``/auth`` (``Secure`` when the issuer is https); the database holds only its digest, with the
  user name, the sign-in time and methods, and it expires after ``session_lifetime``.
* A sign-in that still needs its TOTP code is a short-lived *pending* record (5 minutes) named
  by another such cookie; the session starts only once the code is right.
* Every form carries a CSRF token equal to the ``hb_csrf`` cookie (``SameSite=Strict``,
  ``HttpOnly``), the double-submit pattern: a cross-site page can neither read nor set it.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.auth import state
from healthbridge.infra import tokens
from healthbridge.store.instants import Clock, utc
from healthbridge.store.records import RecordStore

SESSION_COOKIE = "hb_session"
PENDING_COOKIE = "hb_pending"
CSRF_COOKIE = "hb_csrf"
COOKIE_PATH = "/auth"
PENDING_LIFETIME = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class BrowserSession:
    username: str
    auth_time: int  # epoch seconds of the sign-in
    amr: tuple[str, ...]  # authentication methods: "pwd", "otp"


class Sessions:
    def __init__(
        self, records: RecordStore, clock: Clock, lifetime: timedelta, *, secure: bool
    ) -> None:
        self._records = records
        self._clock = clock
        self.lifetime = lifetime
        self.secure = secure

    def _now(self) -> datetime:
        return utc(self._clock())

    def _set(self, response: Response, name: str, value: str, max_age: int, same_site: str) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=COOKIE_PATH,
            secure=self.secure,
            httponly=True,
            samesite=same_site,  # type: ignore[arg-type]
        )

    async def start(self, response: Response, username: str, amr: tuple[str, ...]) -> None:
        """Sign ``username`` in: a new session cookie on ``response``."""
        sid = tokens.new_secret(32)
        now = self._now()
        value = {"username": username, "auth_time": int(now.timestamp()), "amr": list(amr)}
        await self._records.put_record(
            state.SESSION, tokens.digest(sid), value, now + self.lifetime
        )
        self._set(response, SESSION_COOKIE, sid, int(self.lifetime.total_seconds()), "lax")

    async def get(self, request: Request) -> BrowserSession | None:
        sid = request.cookies.get(SESSION_COOKIE)
        if not sid or len(sid) > 128:
            return None
        record = await self._records.get_record(state.SESSION, tokens.digest(sid))
        if record is None:
            return None
        v = record.value
        return BrowserSession(v["username"], int(v["auth_time"]), tuple(v.get("amr") or ()))

    async def end(self, request: Request, response: Response) -> None:
        sid = request.cookies.get(SESSION_COOKIE)
        if sid and len(sid) <= 128:
            await self._records.delete_record(state.SESSION, tokens.digest(sid))
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)

    async def start_pending(self, response: Response, username: str) -> None:
        """A sign-in that passed the password and waits for the TOTP code."""
        pid = tokens.new_secret(32)
        expires = self._now() + PENDING_LIFETIME
        await self._records.put_record(
            state.PENDING_LOGIN, tokens.digest(pid), {"username": username}, expires
        )
        self._set(response, PENDING_COOKIE, pid, int(PENDING_LIFETIME.total_seconds()), "strict")

    async def pending(self, request: Request) -> str | None:
        pid = request.cookies.get(PENDING_COOKIE)
        if not pid or len(pid) > 128:
            return None
        record = await self._records.get_record(state.PENDING_LOGIN, tokens.digest(pid))
        return None if record is None else str(record.value["username"])

    async def end_pending(self, request: Request, response: Response) -> None:
        pid = request.cookies.get(PENDING_COOKIE)
        if pid and len(pid) <= 128:
            await self._records.delete_record(state.PENDING_LOGIN, tokens.digest(pid))
        response.delete_cookie(PENDING_COOKIE, path=COOKIE_PATH)

    # --- CSRF (double submit) ----------------------------------------------------------------

    def csrf_token(self, request: Request) -> str:
        """The request's CSRF token (from its cookie), or a new one to set with
        :meth:`keep_csrf`."""
        token = request.cookies.get(CSRF_COOKIE)
        if token and 20 <= len(token) <= 128:
            return token
        return tokens.new_secret(32)

    def keep_csrf(self, response: Response, token: str) -> None:
        self._set(response, CSRF_COOKIE, token, 12 * 3600, "strict")

    @staticmethod
    def check_csrf(request: Request, submitted: str | None) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE)
        if not cookie or not submitted:
            return False
        return hmac.compare_digest(cookie.encode(), submitted.encode())
