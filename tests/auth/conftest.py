"""Fixtures for the authorization server: the real app (Starlette TestClient runs its lifespan)
on the memory, SQLite and PostgreSQL backends, with helpers that act as the browser (sign-in and
consent forms) and as the app (PKCE, token requests).

https://hl7.org/fhir/smart-app-launch/app-launch.html
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from joserfc import jws, jwt
from joserfc.jwk import RSAKey
from starlette.testclient import TestClient

from healthbridge.app import create_app
from healthbridge.auth.clients import Client, ClientStore
from healthbridge.auth.users import UserStore
from healthbridge.infra.sealing import Sealer
from healthbridge.infra.secret_keys import load_sealer
from healthbridge.settings import Settings
from healthbridge.store.instants import system_clock
from healthbridge.store.repository import Repository
from tests.auth.forms import form
from tests.rest.conftest import _Closing
from tests.support import databases
from tests.support.databases import BACKEND_PARAMS, PostgresDatabase, open_backend

T = TypeVar("T")
BASE = "http://localhost"
FHIR = f"{BASE}/fhir"
REDIRECT = "https://app.example.org/callback"
PASSWORD = "correct horse battery"
PATIENT_RESOURCE = {
    "resourceType": "Patient",
    "id": "p1",
    "name": [{"family": "Okafor", "given": ["Amara"]}],
    "birthDate": "1980-04-02",
}
OTHER_PATIENT = {
    "resourceType": "Patient",
    "id": "p2",
    "name": [{"family": "Lindqvist", "given": ["Ben"]}],
}
PRACTITIONER = {"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "House"}]}
RELATED = {
    "resourceType": "RelatedPerson",
    "id": "rp1",
    "patient": {"reference": "Patient/p2"},
    "name": [{"family": "Lindqvist", "given": ["Mum"]}],
}
CARE_TEAMS = [
    {
        "resourceType": "CareTeam",
        "id": f"ct-{patient}",
        "status": "active",
        "subject": {"reference": f"Patient/{patient}"},
        "participant": [{"member": {"reference": "Practitioner/dr1"}}],
    }
    for patient in ("p1", "p2")
]
"""Dr House (``doc``) cares for both patients: the picker offers them, user/ scopes reach them
(security/care_team.py)."""
ENCOUNTER = {
    "resourceType": "Encounter",
    "id": "e1",
    "status": "finished",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
    "subject": {"reference": "Patient/p1"},
}


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class Harness:
    """The running app, its repository, and browser/app helpers."""

    client: TestClient
    repo: Repository
    created: list[str] = field(default_factory=list)
    sealer: Sealer | None = None  # the app's: opens the secrets it stores sealed

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Await ``work`` on the app's own event loop."""

        async def call() -> T:
            return await work

        portal = self.client.portal
        assert portal is not None
        return portal.call(call)

    def call(self, function: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        return self.run(function(*args))

    # --- setup ---------------------------------------------------------------------------------

    def put(self, resource: dict[str, Any]) -> None:
        self.run(self.repo.update(resource["resourceType"], resource["id"], resource))

    def user(self, username: str, fhir_user: str | None, *roles: str, **kw: Any) -> None:
        users = UserStore(self.repo.records, system_clock)
        self.run(
            users.create(username, PASSWORD, fhir_user=fhir_user, roles=frozenset(roles), **kw)
        )

    def register(self, client: Client) -> tuple[Client, str | None]:
        return self.run(ClientStore(self.repo.records).register(client))

    def public_app(self, client_id: str = "app", scope: str | None = None) -> Client:
        client = Client(
            client_id,
            "Health App",
            "none",
            (REDIRECT,),
            frozenset({"authorization_code", "refresh_token"}),
            scope
            or "launch launch/patient launch/encounter openid fhirUser profile offline_access "
            "patient/*.cruds user/*.cruds patient/*.read",
        )
        return self.register(client)[0]

    def secret_app(self, client_id: str = "conf", roles: frozenset[str] = frozenset()) -> str:
        client = Client(
            client_id,
            "Confidential App",
            "client_secret_basic",
            (REDIRECT,),
            frozenset({"authorization_code", "refresh_token"}),
            "launch/patient openid fhirUser offline_access patient/*.rs user/*.rs",
            roles=roles,
        )
        secret = self.register(client)[1]
        assert secret is not None
        return secret

    def signing_key(self, kid: str) -> RSAKey:
        """The server's private signing key ``kid`` (to forge tokens in tests)."""
        for record in self.run(self.repo.records.records("signing-key")):
            jwk = record.value["jwk"]
            if isinstance(jwk, str):  # sealed (auth/keys.py)
                assert self.sealer is not None
                jwk = json.loads(self.sealer.open(jwk, f"signing-key/{record.value['kid']}"))
            if jwk["kid"] == kid:
                return RSAKey.import_key(jwk)
        raise AssertionError(f"no key {kid}")

    def forge(
        self, claims: dict[str, Any], *, like: str, header: dict[str, Any] | None = None
    ) -> str:
        """A token signed with the server's key (the one that signed ``like``)."""
        kid = jws.extract_compact(like.encode()).headers()["kid"]
        head = {"alg": "RS256", "typ": "at+jwt", "kid": kid, **(header or {})}
        return jwt.encode(head, claims, self.signing_key(kid))

    # --- the browser -------------------------------------------------------------------------

    def authorize_params(self, **overrides: str | None) -> dict[str, str]:
        verifier, challenge = pkce()
        params = {
            "response_type": "code",
            "client_id": "app",
            "redirect_uri": REDIRECT,
            "scope": "launch/patient openid fhirUser offline_access patient/*.rs",
            "state": secrets.token_urlsafe(8),
            "aud": FHIR,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        params.update({k: v for k, v in overrides.items() if v is not None})
        for name in [k for k, v in overrides.items() if v is None]:
            params.pop(name, None)
        params["_verifier"] = verifier
        return params

    def sign_in(self, params: dict[str, str], username: str, password: str = PASSWORD) -> Any:
        """In a fresh browser: GET the authorization URL, then post the sign-in form; the
        login response."""
        self.client.cookies.clear()
        query = {k: v for k, v in params.items() if not k.startswith("_")}
        page = self.client.get("/auth/authorize?" + urlencode(query))
        assert page.status_code == 200, page.text
        login = form(page.text, "/auth/login")
        fields = dict(login.fields)
        fields.update(username=username, password=password)
        return self.client.post("/auth/login", data=fields, follow_redirects=False)

    def consent_page(self, params: dict[str, str], username: str = "pat") -> Any:
        response = self.sign_in(params, username)
        assert response.status_code == 303, response.text
        page = self.client.get(response.headers["location"])
        assert page.status_code == 200, page.text
        return page

    def approve(
        self,
        page_html: str,
        *,
        deselect: tuple[str, ...] = (),
        categories: dict[str, list[str]] | None = None,
        offline: bool = True,
        patient: str | None = None,
        decision: str = "allow",
    ) -> Any:
        consent = form(page_html, "/auth/authorize")
        data: list[tuple[str, str]] = list(consent.fields)
        for name, value, checked in consent.checkboxes:
            if name == "grant" and checked and value not in deselect:
                data.append((name, value))
            if name == "offline" and offline:
                data.append((name, value))
        for scope, values in (categories or {}).items():
            data += [(f"category:{scope}", v) for v in values]
        if patient is not None:
            data.append(("patient", patient))
        data.append(("decision", decision))
        return self.client.post(
            "/auth/authorize",
            content=urlencode(data),
            headers={"content-type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )

    def code_for(self, params: dict[str, str], username: str = "pat", **choices: Any) -> str:
        page = self.consent_page(params, username)
        answer = self.approve(page.text, **choices)
        assert answer.status_code == 302, answer.text
        location = answer.headers["location"]
        assert location.startswith(REDIRECT)
        found = query_of(location)
        assert found["state"] == params["state"]
        return found["code"]

    # --- the app -------------------------------------------------------------------------------

    def exchange(self, params: dict[str, str], code: str, **extra: str) -> Any:
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": params["redirect_uri"],
            "client_id": params["client_id"],
            "code_verifier": params["_verifier"],
        }
        data.update(extra)
        return self.client.post("/auth/token", data={k: v for k, v in data.items() if v != ""})

    def claims(self, token: str) -> dict[str, Any]:
        """The (unverified) claims of a JWT."""
        return dict(json.loads(jws.extract_compact(token.encode()).payload))

    def fhir(self, path: str, token: str | None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.get(f"/fhir/{path}", headers=headers)

    def tokens(self, username: str = "pat", **overrides: str | None) -> dict[str, Any]:
        params = self.authorize_params(**overrides)
        code = self.code_for(params, username)
        answer = self.exchange(params, code)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body


def make_harness(
    kind: str, tmp_path: Path, postgres: PostgresDatabase | None = None, **overrides: Any
) -> Iterator[Harness]:
    values = {"public_base_url": FHIR, "rate_limits": False, **overrides}
    settings = Settings(data_dir=tmp_path, access_log=False, **values)
    sealer = load_sealer(settings.secret_key, settings.secret_keys_previous, settings.data_dir)
    stack = AsyncExitStack()
    holder: dict[str, Repository] = {}

    async def factory() -> Repository:
        repo = await stack.enter_async_context(open_backend(kind, tmp_path, postgres))  # type: ignore[arg-type]
        holder["repo"] = repo
        return _Closing(repo, stack)  # type: ignore[return-value]

    app = create_app(settings, repository_factory=factory)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
        harness = Harness(client, holder["repo"], sealer=sealer)
        for resource in (
            PATIENT_RESOURCE,
            OTHER_PATIENT,
            PRACTITIONER,
            RELATED,
            ENCOUNTER,
            *CARE_TEAMS,
        ):
            harness.put(resource)
        harness.user("pat", "Patient/p1", name="Amara Okafor")
        harness.user("doc", "Practitioner/dr1")
        harness.user("mum", "RelatedPerson/rp1")
        harness.user("admin", None, "admin")
        harness.public_app()
        yield harness


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[PostgresDatabase]:
    with databases.postgres_database() as db:
        yield db


@pytest.fixture
def auth(tmp_path: Path) -> Iterator[Harness]:
    """The app with its authorization server on the in-memory backend."""
    yield from make_harness("memory", tmp_path)


@pytest.fixture(params=BACKEND_PARAMS)
def any_auth(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_database: PostgresDatabase
) -> Iterator[Harness]:
    """The same on every backend: memory, SQLite and PostgreSQL (skipped with a reason when
    unreachable)."""
    kind = str(request.param)
    if kind == "postgresql":
        postgres_database.require()
        yield from make_harness(kind, tmp_path, postgres_database)
    else:
        yield from make_harness(kind, tmp_path)
