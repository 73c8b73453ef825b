"""Signing in and out of the authorization server's pages (OpenID Connect Core section 3.1.2.3,
"Authorization Server Authenticates End-User"): user name and password (Argon2id), then the
TOTP code when the account has one (RFC 6238), with lockout after repeated failures
(:mod:`.users`). A successful sign-in starts a new browser session (a new id: no session
fixation) and returns to the authorization request that asked for it.

Every failure says the same thing, whether the name is unknown, the password wrong, the account
disabled or locked: the page must not tell an attacker which names exist.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.auth import pages
from healthbridge.auth.authorize import login_redirect
from healthbridge.auth.events import AuthEvent, EventSink
from healthbridge.auth.http import BadForm, client_address, read_form
from healthbridge.auth.sessions import Sessions
from healthbridge.auth.users import SignIn, UserStore

FAILED = (
    "Sign-in failed: the user name or password is wrong, or the account is locked "
    "for a while after repeated failures."
)


def _next(value: str | None) -> str:
    """The authorization request to return to, re-encoded (only ever a query string of
    ``/auth/authorize``, so it cannot redirect anywhere else)."""
    try:
        return urlencode(parse_qsl(value or "", keep_blank_values=True, max_num_fields=50))
    except ValueError:
        return ""


class LoginPages:
    def __init__(self, users: UserStore, sessions: Sessions, events: EventSink) -> None:
        self._users = users
        self._sessions = sessions
        self._events = events

    async def _form(self, request: Request) -> dict[str, str] | Response:
        try:
            form = dict(reversed(await read_form(request)))
        except BadForm as exc:
            return pages.message_page("Bad request", str(exc), status=400)
        if not self._sessions.check_csrf(request, form.get("csrf")):
            return pages.message_page(
                "This form has expired", "Go back to the app and start again.", status=403
            )
        return form

    def _signed_in(self, next_query: str) -> Response:
        if next_query:
            return login_redirect(next_query)
        return pages.message_page("Signed in", "You are signed in. You may close this page.")

    async def login(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        username = form.get("username", "").strip()
        next_query = _next(form.get("next"))
        csrf = form["csrf"]
        outcome, user = await self._users.sign_in(username, form.get("password", ""))
        address = client_address(request)
        if outcome is SignIn.FAILED or user is None:
            await self._events(
                AuthEvent("login-failed", "failure", subject=username[:64], address=address)
            )
            return pages.login_page(csrf, next_query, error=FAILED, status=401)
        if outcome is SignIn.NEEDS_TOTP:
            response: Response = pages.totp_page(csrf, next_query)
            await self._sessions.start_pending(response, user.username)
            return response
        response = self._signed_in(next_query)
        await self._sessions.start(response, user.username, ("pwd",))
        await self._events(
            AuthEvent("login", subject=user.username, fhir_user=user.fhir_user, address=address)
        )
        return response

    async def totp(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        next_query = _next(form.get("next"))
        csrf = form["csrf"]
        username = await self._sessions.pending(request)
        user = await self._users.get(username) if username else None
        address = client_address(request)
        if user is None:
            return pages.login_page(
                csrf, next_query, error="The sign-in took too long; sign in again.", status=401
            )
        if not await self._users.check_totp(user, form.get("code", "")):
            await self._events(
                AuthEvent("login-failed", "failure", subject=user.username, address=address)
            )
            fresh = await self._users.get(user.username)
            if fresh is None or fresh.locked(self._users.now()):
                response: Response = pages.login_page(csrf, next_query, error=FAILED, status=401)
                await self._sessions.end_pending(request, response)
                return response
            return pages.totp_page(
                csrf, next_query, error="That code is not right; try the current one.", status=401
            )
        response = self._signed_in(next_query)
        await self._sessions.end_pending(request, response)
        await self._sessions.start(response, user.username, ("pwd", "otp"))
        await self._events(
            AuthEvent("login", subject=user.username, fhir_user=user.fhir_user, address=address)
        )
        return response

    async def logout(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        session = await self._sessions.get(request)
        response: Response = pages.message_page("Signed out", "You are signed out.")
        await self._sessions.end(request, response)
        if session is not None:
            await self._events(
                AuthEvent("logout", subject=session.username, address=client_address(request))
            )
        return response
