"""The demo's accounts and app (``healthbridge serve --demo``), and the page its app returns to.

:func:`prepare_demo` makes (or refreshes) a patient account linked to ``Patient/demo-patient-1``
and a clinician account linked to ``Practitioner/demo-practitioner-1``, each with a new random
password every start (no default credentials), and a public demo app (``demo-app``, PKCE) whose
redirect URI is this server's ``/auth/demo/callback``. It returns an authorization URL to open
in a browser: after signing in and allowing access, the callback page shows the code and the
``curl`` command that exchanges it for a token (SMART App Launch's standalone launch,
https://hl7.org/fhir/smart-app-launch/app-launch.html#launch-app-standalone-launch).
"""

from __future__ import annotations

import base64
import hashlib
import shlex
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.auth import pages
from healthbridge.auth.clients import Client, ClientStore
from healthbridge.auth.config import AuthConfig
from healthbridge.auth.users import UserError, UserStore
from healthbridge.infra import tokens
from healthbridge.store.instants import Clock, system_clock, utc
from healthbridge.store.records import RecordStore

DEMO_CLIENT = "demo-app"
DEMO_SCOPE = (
    "launch/patient openid fhirUser offline_access patient/*.rs "
    "user/Patient.rs user/Observation.rs user/Condition.rs user/Encounter.rs"
)
DEMO_PKCE = "demo-pkce"  # record kind: state -> code_verifier of a printed demo link
PATIENT_USER = ("demo-patient", "Patient/demo-patient-1", "Demo Patient")
CLINICIAN_USER = ("demo-clinician", "Practitioner/demo-practitioner-1", "Demo Clinician")


@dataclass(frozen=True, slots=True)
class DemoLogins:
    passwords: dict[str, str]  # user name -> password (new each start)
    fhir_users: dict[str, str]  # user name -> the resource the account is
    authorize_url: str
    client_id: str
    redirect_uri: str


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def prepare_demo(
    config: AuthConfig, records: RecordStore, clock: Clock = system_clock
) -> DemoLogins:
    """Create or refresh the demo accounts and app; new passwords every time."""
    users = UserStore(records, clock)
    passwords: dict[str, str] = {}
    for username, fhir_user, name in (PATIENT_USER, CLINICIAN_USER):
        password = tokens.new_secret(12)
        try:
            await users.create(username, password, fhir_user=fhir_user, name=name)
        except UserError:
            await users.update(username, disabled=False, fhir_user=fhir_user, name=name)
            await users.set_password(username, password)
        passwords[username] = password
    redirect_uri = config.url("/auth/demo/callback")
    clients = ClientStore(records)
    demo = Client(
        DEMO_CLIENT,
        "HealthBridge demo app",
        "none",
        (redirect_uri,),
        frozenset({"authorization_code", "refresh_token"}),
        DEMO_SCOPE,
    )
    if await clients.get(DEMO_CLIENT) is None:
        await clients.register(demo)
    else:
        await clients.update(
            DEMO_CLIENT,
            redirect_uris=demo.redirect_uris,
            scope=DEMO_SCOPE,
            grant_types=demo.grant_types,
            disabled=False,
        )
    verifier, link_state = tokens.new_secret(48), tokens.new_secret(12)
    expires = utc(clock()) + timedelta(days=1)
    await records.put_record(DEMO_PKCE, link_state, {"verifier": verifier}, expires)
    query = {
        "response_type": "code",
        "client_id": DEMO_CLIENT,
        "redirect_uri": redirect_uri,
        "scope": "launch/patient openid fhirUser offline_access patient/*.rs",
        "state": link_state,
        "aud": config.fhir_base,
        "code_challenge": _challenge(verifier),
        "code_challenge_method": "S256",
    }
    url = config.url("/auth/authorize") + "?" + urlencode(query)
    links = {PATIENT_USER[0]: PATIENT_USER[1], CLINICIAN_USER[0]: CLINICIAN_USER[1]}
    return DemoLogins(passwords, links, url, DEMO_CLIENT, redirect_uri)


class DemoCallback:
    """``GET /auth/demo/callback``: shows the code and how to exchange it (demo mode only)."""

    def __init__(self, config: AuthConfig, records: RecordStore) -> None:
        self._config = config
        self._records = records

    async def callback(self, request: Request) -> Response:
        code = request.query_params.get("code", "")
        link_state = request.query_params.get("state", "")
        if not code:
            error = request.query_params.get("error", "no code")
            return pages.message_page("No code", f"The authorization ended with: {error}")
        record = await self._records.get_record(DEMO_PKCE, link_state) if link_state else None
        verifier = record.value["verifier"] if record else "<the code_verifier>"
        command = " ".join(
            [
                "curl -s -X POST",
                shlex.quote(self._config.token_endpoint),
                "-d grant_type=authorization_code",
                "-d " + shlex.quote(f"code={code}"),
                "-d " + shlex.quote(f"redirect_uri={self._config.url('/auth/demo/callback')}"),
                f"-d client_id={DEMO_CLIENT}",
                "-d " + shlex.quote(f"code_verifier={verifier}"),
            ]
        )
        return pages.demo_callback_page(code, link_state, command)
