"""The authorization endpoint (RFC 6749 section 3.1 and 4.1.1; SMART
https://hl7.org/fhir/smart-app-launch/app-launch.html#obtain-authorization-code):
``GET /auth/authorize`` checks the app's request, shows the sign-in page or the consent page;
``POST /auth/authorize`` (the consent form) issues the code or the refusal.

The request is validated by Authlib (client, exact redirect URI, response type, scopes the
client may ask for, PKCE S256) and our SMART checks (``aud``, ``launch``) each time, so the
hidden fields of the consent form cannot smuggle anything past them. When the request is bad
and the redirect URI is not one of the client's, the user sees an error page and nothing is
sent anywhere; otherwise errors go back to the app's redirect URI with ``state``.

The consent page describes the scopes in plain words and lets the user untick resource types,
narrow Observation and Condition scopes to categories (granular scopes), decline offline
access, and, for a practitioner in a standalone launch that needs a patient, pick the patient.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oidc.core.errors import ConsentRequiredError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from healthbridge.auth import bridge, consent, pages, state
from healthbridge.auth.config import AuthConfig
from healthbridge.auth.http import BadForm, oauth_request, query_pairs, read_form, reply_response
from healthbridge.auth.issuance import Authorization
from healthbridge.auth.launch import LaunchContext
from healthbridge.auth.patients import PatientDirectory
from healthbridge.auth.server import AuthServer, OAuthRequest
from healthbridge.auth.sessions import BrowserSession, Sessions
from healthbridge.auth.users import User
from healthbridge.security.scopes import Scopes, parse_scopes

OAUTH_PARAMS = frozenset(
    (
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "aud",
        "code_challenge",
        "code_challenge_method",
        "nonce",
        "launch",
        "prompt",
        "max_age",
        "login_hint",
    )
)


def origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") else ""


def error_response(error: OAuth2Error) -> Response:
    """Back to the app when its redirect URI was verified; otherwise an error page."""
    if error.redirect_uri:
        status, _, headers = error()
        return Response(status_code=status, headers={**dict(headers), "Cache-Control": "no-store"})
    description = error.description or error.error or "invalid request"
    return pages.message_page(
        "The app's request was refused", f"{description} ({error.error})", status=400
    )


class AuthorizationEndpoint:
    def __init__(
        self,
        config: AuthConfig,
        server: AuthServer,
        sessions: Sessions,
        patients: PatientDirectory,
    ) -> None:
        self._config = config
        self._server = server
        self._sessions = sessions
        self._patients = patients

    async def _signed_in(self, request: Request) -> tuple[BrowserSession | None, User | None]:
        session = await self._sessions.get(request)
        if session is None:
            return None, None
        user = await self._server.users.get(session.username)
        if user is None or user.disabled or user.locked(self._server.users.now()):
            return None, None
        return session, user

    async def get(self, request: Request) -> Response:
        return await self._show(request, query_pairs(request))

    async def _show(
        self,
        request: Request,
        params: list[tuple[str, str]],
        *,
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        oauth_params = [(n, v) for n, v in params if n in OAUTH_PARAMS]
        session, user = await self._signed_in(request)
        try:
            req = oauth_request(self._config, request, oauth_params)
            grant = await bridge.in_thread(self._server.get_consent_grant, req, user)
            prompts = req.payload.data.get("prompt", "").split()
            if "none" in prompts:  # this server always asks
                raise ConsentRequiredError(redirect_uri=grant.redirect_uri, state=req.payload.state)
        except OAuth2Error as exc:
            return error_response(exc)
        csrf = self._sessions.csrf_token(request)
        client = grant.request.client
        if user is None or session is None or ("login" in prompts and error is None):
            again = [(n, v) for n, v in oauth_params if n != "prompt"]
            response: Response = pages.login_page(
                csrf,
                urlencode(again),
                client_name=client.name,
                form_origins=[origin(grant.redirect_uri)],
            )
        else:
            view = await self._view(grant.request, user, csrf, oauth_params, dict(params), error)
            response = pages.consent_page(view, status=status)
        self._sessions.keep_csrf(response, csrf)
        return response

    async def _view(
        self,
        req: OAuthRequest,
        user: User,
        csrf: str,
        oauth_params: list[tuple[str, str]],
        params: dict[str, str],
        error: str | None,
    ) -> pages.ConsentView:
        scopes = self._grantable(req, user)
        own = user.fhir_type == "Patient"
        launch = req.launch_context
        label = None
        choices = None
        if launch is not None and launch.patient:
            label = await self._patients.label(launch.patient)
        elif own and user.fhir_user:
            label = await self._patients.label(user.fhir_user.split("/", 1)[1])
        elif user.fhir_type == "RelatedPerson" and user.fhir_user:
            patient = await self._patients.patient_of_related_person(user.fhir_user.split("/")[1])
            label = await self._patients.label(patient) if patient else None
        elif _needs_patient(scopes):
            among = await self._patients.pickable(user.fhir_user, user.roles)
            choices = await self._patients.search(params.get("patient_search", ""), among)
        return pages.ConsentView(
            csrf=csrf,
            client_name=req.client.name,
            user_label=user.name or user.username,
            lines=consent.describe(scopes, own),
            oauth_params=oauth_params,
            redirect_origin=origin(req.payload.redirect_uri or ""),
            own_record=own,
            patient_choices=choices,
            patient_search=params.get("patient_search", ""),
            patient_label=label,
            error=error,
            resource_scopes=frozenset(s.text for s in scopes.resources),
        )

    @staticmethod
    def _grantable(req: OAuthRequest, user: User) -> Scopes:
        patient_user = user.fhir_type in ("Patient", "RelatedPerson")
        return parse_scopes(consent.fit_to_user(parse_scopes(req.scope or ""), patient_user))

    async def post(self, request: Request) -> Response:
        try:
            form = await read_form(request)
        except BadForm as exc:
            return pages.message_page("Bad request", str(exc), status=400)
        fields = dict(reversed(form))
        if not self._sessions.check_csrf(request, fields.get("csrf")):
            return pages.message_page(
                "This form has expired", "Go back to the app and start again.", status=403
            )
        oauth_params = [(n, v) for n, v in form if n in OAUTH_PARAMS]
        session, user = await self._signed_in(request)
        if session is None or user is None:
            return await self._show(request, oauth_params)
        req = oauth_request(self._config, request, (), oauth_params)
        try:
            grant = await bridge.in_thread(self._server.get_consent_grant, req, user)
        except OAuth2Error as exc:
            return error_response(exc)
        if fields.get("decision") != "allow":
            reply = await bridge.in_thread(
                self._server.create_authorization_response, req, None, grant
            )
            return reply_response(reply)
        chosen = [v for n, v in form if n == "grant"]
        categories: dict[str, list[str]] = {}
        for name, value in form:
            if name.startswith("category:"):
                categories.setdefault(name.removeprefix("category:"), []).append(value)
        granted = consent.granted_scope(
            self._grantable(grant.request, user),
            chosen,
            categories,
            offline=fields.get("offline") == "yes",
        )
        context = await self._context(
            user, grant.request.launch_context, parse_scopes(granted), fields.get("patient")
        )
        if isinstance(context, str):
            return await self._show(request, oauth_params, error=context, status=400)
        authorization = Authorization(
            grant=state.new_id(),
            subject=user.username,
            client_id=grant.request.client.client_id,
            scope=granted,
            fhir_user=user.fhir_user,
            roles=user.roles,
            patient=context[0],
            encounter=context[1],
            auth_time=session.auth_time,
            amr=session.amr,
            name=user.name,
        )
        reply = await bridge.in_thread(
            self._server.create_authorization_response, req, authorization, grant
        )
        return reply_response(reply)

    async def _context(
        self, user: User, launch: LaunchContext | None, granted: Scopes, picked: str | None
    ) -> tuple[str | None, str | None] | str:
        """(patient, encounter) of the grant, or the message why there is none."""
        kind, _, own_id = (user.fhir_user or "").partition("/")
        own_patient = own_id if kind == "Patient" else None
        if kind == "RelatedPerson":
            own_patient = await self._patients.patient_of_related_person(own_id)
            if own_patient is None:
                return "Your account is not linked to a patient."
        if launch is not None:
            if own_patient is not None and launch.patient != own_patient:
                return "This launch is about another patient."
            return launch.patient, launch.encounter
        if not _needs_patient(granted):
            return None, None
        if own_patient is not None:
            return own_patient, None
        if not picked:
            return "Choose a patient."
        among = await self._patients.pickable(user.fhir_user, user.roles)
        if (among is not None and picked not in among) or not await self._patients.exists(picked):
            return "That patient was not found."  # (not among yours: the same answer)
        return picked, None


def _needs_patient(scopes: Scopes) -> bool:
    return "patient" in scopes.contexts or "patient" in scopes.launch_contexts


def login_redirect(next_query: str) -> RedirectResponse:
    return RedirectResponse(f"/auth/authorize?{next_query}", status_code=303)
