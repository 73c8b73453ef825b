"""Real clients against a real server process (``healthbridge serve --demo`` on a loopback
port): the SMART Python client (fhirclient) for a standalone launch, Authlib's OAuth 2.0 clients
(authorization code with PKCE S256, refresh, revocation; client credentials with
private_key_jwt), and the demo's printed sign-in instructions.

https://hl7.org/fhir/smart-app-launch/app-launch.html#launch-app-standalone-launch,
https://hl7.org/fhir/smart-app-launch/backend-services.html
"""

from __future__ import annotations

import html
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import pytest
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc7523.assertion import private_key_jwt_sign
from fhirclient import client as smart_client
from fhirclient.auth import FHIROAuth2Auth
from fhirclient.models.observation import Observation
from joserfc.jwk import RSAKey

from tests.auth.forms import form
from tests.durability.server import free_port

REDIRECT = "http://127.0.0.1/callback"
PASSWORD = "alice's long password"
SERVICE_KEY = RSAKey.generate_key(2048, parameters={"kid": "svc-key"}, private=True)


@dataclass
class Running:
    root: str
    log: Path

    @property
    def fhir(self) -> str:
        return f"{self.root}/fhir"

    def discovery(self) -> dict[str, Any]:
        answer = httpx2.get(f"{self.fhir}/.well-known/smart-configuration", timeout=10)
        config: dict[str, Any] = answer.json()
        return config


def _cli(data_dir: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "healthbridge.cli", *args, "--data-dir", str(data_dir)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    data_dir = tmp_path_factory.mktemp("real-server")
    _cli(data_dir, "migrate")
    _cli(
        data_dir,
        "users",
        "create",
        "alice",
        "--fhir-user",
        "Patient/demo-patient-1",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    _cli(
        data_dir,
        "clients",
        "create",
        "--name",
        "SMART App",
        "--id",
        "smart-app",
        "--redirect-uri",
        REDIRECT,
        "--scope",
        "launch/patient openid fhirUser offline_access patient/*.rs",
    )
    jwks = data_dir / "svc-jwks.json"
    jwks.write_text(json.dumps({"keys": [SERVICE_KEY.as_dict(private=False)]}))
    _cli(
        data_dir,
        "clients",
        "create",
        "--name",
        "Backend",
        "--id",
        "svc",
        "--backend",
        "--auth",
        "private_key_jwt",
        "--jwks",
        str(jwks),
        "--scope",
        "system/*.rs",
    )
    port = free_port()
    log = data_dir / "server.log"
    env = {**os.environ, "HEALTHBRIDGE_LOG_LEVEL": "warning", "HEALTHBRIDGE_RATE_LIMITS": "false"}
    command = [sys.executable, "-m", "healthbridge.cli", "serve", "--demo"]
    command += ["--port", str(port), "--data-dir", str(data_dir)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            with suppress(httpx2.TransportError):
                if httpx2.get(f"{root}/readyz", timeout=5).status_code == 200:
                    break
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield Running(root, log)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def browser_consent(url: str, username: str, password: str) -> str:
    """What a person does in a browser: sign in, allow; returns the final redirect URL."""
    with httpx2.Client(follow_redirects=False, timeout=20) as browser:
        page = browser.get(url)
        assert page.status_code == 200, page.text
        login = form(page.text, "/auth/login")
        fields = {**dict(login.fields), "username": username, "password": password}
        root = f"{urlsplit(url).scheme}://{urlsplit(url).netloc}"
        signed_in = browser.post(f"{root}/auth/login", data=fields)
        assert signed_in.status_code == 303, signed_in.text
        consent_page = browser.get(root + signed_in.headers["location"])
        consent = form(consent_page.text, "/auth/authorize")
        data = list(consent.fields)
        data += [(n, v) for n, v, checked in consent.checkboxes if checked]
        data.append(("decision", "allow"))
        answer = browser.post(
            f"{root}/auth/authorize",
            content=urlencode(data),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert answer.status_code == 302, answer.text
        return str(answer.headers["location"])


def test_fhirclient_standalone_launch(server: Running) -> None:
    config = server.discovery()
    settings = {
        "app_id": "smart-app",
        "api_base": server.fhir,
        "redirect_uri": REDIRECT,
        "scope": "openid fhirUser patient/*.rs",
    }
    smart = smart_client.FHIRClient(settings=settings)
    # SMART 2 discovery (.well-known/smart-configuration), handed to the client's OAuth2 auth.
    smart.server.auth = FHIROAuth2Auth(
        state={
            "aud": server.fhir,
            "app_id": "smart-app",
            "redirect_uri": REDIRECT,
            "authorize_uri": config["authorization_endpoint"],
            "token_uri": config["token_endpoint"],
        }
    )
    authorize_url = smart.authorize_url
    assert "code_challenge_method=S256" in authorize_url
    callback = browser_consent(authorize_url, "alice", PASSWORD)
    assert callback.startswith(REDIRECT)
    smart.handle_callback(callback)
    assert smart.ready and smart.patient_id == "demo-patient-1"
    patient = smart.patient
    assert patient is not None and patient.id == "demo-patient-1"
    search = Observation.where({"patient": "demo-patient-1", "_count": "5"})
    found = list(search.perform_resources_iter(smart.server))
    assert found and all(o.subject.reference.endswith("demo-patient-1") for o in found)


async def test_authlib_code_flow_with_pkce_refresh_and_revocation(server: Running) -> None:
    config = server.discovery()
    async with AsyncOAuth2Client(
        client_id="smart-app",
        redirect_uri=REDIRECT,
        scope="launch/patient openid fhirUser offline_access patient/*.rs",
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
        timeout=20,
    ) as client:
        verifier = generate_token(64)
        url, state = client.create_authorization_url(
            config["authorization_endpoint"], code_verifier=verifier, aud=server.fhir
        )
        callback = browser_consent(url, "alice", PASSWORD)
        assert parse_qs(urlsplit(callback).query)["state"] == [state]
        token = await client.fetch_token(
            config["token_endpoint"], authorization_response=callback, code_verifier=verifier
        )
        assert token["patient"] == "demo-patient-1" and token["refresh_token"]
        read = await client.get(f"{server.fhir}/Patient/demo-patient-1")
        assert read.status_code == 200
        refreshed = await client.refresh_token(
            config["token_endpoint"], refresh_token=token["refresh_token"]
        )
        assert refreshed["access_token"] != token["access_token"]
        assert (await client.get(f"{server.fhir}/Patient/demo-patient-1")).status_code == 200
        await client.revoke_token(
            config["revocation_endpoint"], refreshed["access_token"], "access_token"
        )
        assert (await client.get(f"{server.fhir}/Patient/demo-patient-1")).status_code == 401


class Smart5MinutePrivateKeyJWT(PrivateKeyJWT):  # type: ignore[misc]
    """Authlib's private_key_jwt with SMART's bounds: exp 5 minutes ahead, a kid, a new jti."""

    def sign(self, auth: Any, token_endpoint: str) -> str:
        return str(
            private_key_jwt_sign(
                SERVICE_KEY,
                client_id=auth.client_id,
                token_endpoint=token_endpoint,
                alg="RS384",
                header={"kid": SERVICE_KEY.kid},
                expires_in=300,
            )
        )


def test_authlib_backend_service_with_private_key_jwt(server: Running) -> None:
    config = server.discovery()
    token_endpoint = config["token_endpoint"]
    with OAuth2Client(
        "svc",
        SERVICE_KEY,
        scope="system/*.rs",
        token_endpoint_auth_method=Smart5MinutePrivateKeyJWT(token_endpoint),
        timeout=20,
    ) as client:
        token = client.fetch_token(token_endpoint, grant_type="client_credentials")
        assert token["scope"] == "system/*.rs" and "refresh_token" not in token
        assert client.get(f"{server.fhir}/Patient/demo-patient-2").status_code == 200
        # Authlib's own default (exp one hour ahead) is refused: SMART allows five minutes.
    with OAuth2Client(
        "svc",
        SERVICE_KEY,
        scope="system/*.rs",
        token_endpoint_auth_method=PrivateKeyJWT(
            token_endpoint, alg="RS384", headers={"kid": SERVICE_KEY.kid}
        ),
        timeout=20,
    ) as default:
        with pytest.raises(OAuthError) as refused:
            default.fetch_token(token_endpoint, grant_type="client_credentials")
        assert refused.value.error == "invalid_client"


def test_the_printed_demo_instructions_work(server: Running) -> None:
    log = server.log.read_text()
    password = re.search(r"user demo-patient\s+password (\S+)", log)
    url = re.search(r"^\s+(http://\S+/auth/authorize\?\S+)$", log, re.MULTILINE)
    assert password and url, log
    callback = browser_consent(url.group(1), "demo-patient", password.group(1))
    assert callback.startswith(f"{server.root}/auth/demo/callback?")
    page = httpx2.get(callback, timeout=10)
    assert page.status_code == 200
    command = html.unescape(re.search(r"<pre>(.*?)</pre>", page.text, re.DOTALL).group(1))  # type: ignore[union-attr]
    words = shlex.split(command)
    data = dict(words[i + 1].split("=", 1) for i, w in enumerate(words) if w == "-d")
    token_endpoint = next(w for w in words if w.startswith("http"))
    answer = httpx2.post(token_endpoint, data=data, timeout=10)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["patient"] == "demo-patient-1"
    read = httpx2.get(
        f"{server.fhir}/Patient/demo-patient-1",
        headers={"Authorization": f"Bearer {body['access_token']}"},
        timeout=10,
    )
    assert read.status_code == 200
    assert "user demo-clinician" in log  # a practitioner to try the patient picker with
