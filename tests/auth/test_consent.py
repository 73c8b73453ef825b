"""The consent screen (SMART App Launch: the user grants all or part of the requested access,
https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html), launch context for
patients, related persons and practitioners (the patient picker of a standalone launch), and the
EHR launch (https://hl7.org/fhir/smart-app-launch/app-launch.html#launch-app-ehr-launch)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

from healthbridge.auth.clients import Client
from healthbridge.auth.consent import OBSERVATION_CATEGORY
from tests.auth.conftest import REDIRECT, Harness, query_of
from tests.auth.forms import form, forms

SCOPE = "launch/patient openid fhirUser offline_access patient/Observation.rs patient/Condition.rs"


def _granted(auth: Harness, params: dict[str, str], username: str = "pat", **choices: Any) -> Any:
    code = auth.code_for(params, username, **choices)
    answer = auth.exchange(params, code)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_page_says_what_is_asked_in_plain_words(auth: Harness) -> None:
    page = auth.consent_page(auth.authorize_params(scope=SCOPE))
    text = page.text
    assert "Allow Health App to use health records?" in text
    assert "Read and search your observations" in text
    assert "Read and search your conditions and diagnoses" in text
    assert "Keep access when you are not using the app" in text
    assert "Amara Okafor" in text  # the patient the grant is about


def test_deselecting_a_resource_type(auth: Harness) -> None:
    params = auth.authorize_params(scope=SCOPE)
    body = _granted(auth, params, deselect=("patient/Condition.rs",))
    assert "patient/Condition.rs" not in body["scope"].split()
    assert "patient/Observation.rs" in body["scope"].split()
    access = auth.claims(body["access_token"])
    assert "patient/Condition.rs" not in access["scope"]


def test_choosing_categories_makes_granular_scopes(auth: Harness) -> None:
    params = auth.authorize_params(scope=SCOPE)
    lab = f"{OBSERVATION_CATEGORY}|laboratory"
    vitals = f"{OBSERVATION_CATEGORY}|vital-signs"
    body = _granted(auth, params, categories={"patient/Observation.rs": [lab, vitals]})
    scopes = body["scope"].split()
    assert f"patient/Observation.rs?category={lab}" in scopes
    assert f"patient/Observation.rs?category={vitals}" in scopes
    assert "patient/Observation.rs" not in scopes
    assert "patient/Condition.rs" in scopes
    # A category the page did not offer is ignored.
    params = auth.authorize_params(scope=SCOPE)
    body = _granted(auth, params, categories={"patient/Observation.rs": ["http://x|evil"]})
    assert "patient/Observation.rs" in body["scope"].split()


def test_declining_offline_access(auth: Harness) -> None:
    params = auth.authorize_params(scope=SCOPE)
    body = _granted(auth, params, offline=False)
    assert "offline_access" not in body["scope"].split()
    assert "refresh_token" not in body


def test_patient_users_get_their_own_record_for_user_scopes(auth: Harness) -> None:
    params = auth.authorize_params(scope="openid fhirUser user/*.cruds system/*.rs")
    body = _granted(auth, params)
    assert set(body["scope"].split()) == {"openid", "fhirUser", "patient/*.cruds"}
    assert body["patient"] == "p1"


def test_the_picker_offers_only_the_practitioners_patients(auth: Harness) -> None:
    """Care relationships (security/care_team.py) hold the picker too: a patient nobody made
    Dr House's is neither offered nor accepted (the answer for an unknown one), so a standalone
    launch cannot reach around the care set; the all-patients role picks anyone."""
    auth.put({"resourceType": "Patient", "id": "p9", "name": [{"family": "Stranger"}]})
    params = auth.authorize_params(scope=SCOPE)
    page = auth.consent_page(params, "doc")
    choices = form(page.text, "/auth/authorize").radios
    assert ("patient", "p9") not in choices and ("patient", "p1") in choices
    refused = auth.approve(page.text, patient="p9")
    assert refused.status_code == 400 and "not found" in refused.text
    auth.user("er", "Practitioner/dr1", "all-patients")
    page = auth.consent_page(auth.authorize_params(scope=SCOPE), "er")
    assert ("patient", "p9") in form(page.text, "/auth/authorize").radios


def test_related_person_acts_for_their_patient(auth: Harness) -> None:
    params = auth.authorize_params(scope=SCOPE)
    body = _granted(auth, params, "mum")
    assert body["patient"] == "p2"
    assert auth.claims(body["access_token"])["fhirUser"] == "RelatedPerson/rp1"


def test_practitioner_picks_the_patient(auth: Harness) -> None:
    params = auth.authorize_params(scope=SCOPE)
    page = auth.consent_page(params, "doc")
    choices = form(page.text, "/auth/authorize").radios
    assert ("patient", "p1") in choices and ("patient", "p2") in choices
    assert "Amara Okafor (born 1980-04-02)" in page.text
    # Searching narrows the list (a GET form that keeps the authorization request).
    search = form(page.text, "/auth/authorize", method="get")
    query = dict(search.fields)
    query["patient_search"] = "Lindqvist"
    found = auth.client.get("/auth/authorize", params=query)
    assert form(found.text, "/auth/authorize").radios == [("patient", "p2")]
    # Picking nobody is refused with a message; picking p2 grants p2.
    refused = auth.approve(page.text)
    assert refused.status_code == 400 and "Choose a patient" in refused.text
    missing = auth.approve(page.text, patient="no-such")
    assert missing.status_code == 400 and "not found" in missing.text
    answer = auth.approve(page.text, patient="p2")
    assert answer.status_code == 302
    body = auth.exchange(params, query_of(answer.headers["location"])["code"]).json()
    assert body["patient"] == "p2"
    assert auth.claims(body["access_token"])["fhirUser"] == "Practitioner/dr1"


def test_practitioner_without_patient_scopes_gets_no_picker(auth: Harness) -> None:
    params = auth.authorize_params(scope="openid fhirUser user/Patient.rs")
    page = auth.consent_page(params, "doc")
    assert form(page.text, "/auth/authorize").radios == []
    body = _granted(auth, params, "doc")
    assert "patient" not in body


def _admin_token(auth: Harness) -> str:
    token: str = auth.tokens("admin", scope="openid user/*.rs")["access_token"]
    assert auth.claims(token)["roles"] == ["admin"]
    return token


def _launch(auth: Harness, token: str, **body: Any) -> Any:
    return auth.client.post("/auth/launch", json=body, headers={"Authorization": f"Bearer {token}"})


def test_ehr_launch_carries_patient_and_encounter(any_auth: Harness) -> None:
    auth = any_auth
    admin = _admin_token(auth)
    made = _launch(auth, admin, patient="p1", encounter="e1")
    assert made.status_code == 201, made.text
    launch = made.json()
    assert launch["iss"] == "http://localhost/fhir" and launch["launch"]
    params = auth.authorize_params(
        scope="launch openid fhirUser patient/*.rs", launch=launch["launch"]
    )
    body = _granted(auth, params, "doc")
    assert (body["patient"], body["encounter"]) == ("p1", "e1")
    access = auth.claims(body["access_token"])
    assert (access["patient"], access["encounter"]) == ("p1", "e1")


def test_launch_api_needs_an_admin_or_ehr_token(auth: Harness) -> None:
    assert auth.client.post("/auth/launch", json={"patient": "p1"}).status_code == 401
    patient_token = auth.tokens()["access_token"]
    assert _launch(auth, patient_token, patient="p1").status_code == 403
    admin = _admin_token(auth)
    assert _launch(auth, admin, patient="nobody").status_code == 400
    assert _launch(auth, admin, patient="p1", encounter="nope").status_code == 400


def test_a_launch_bound_to_another_app_or_patient(auth: Harness) -> None:
    admin = _admin_token(auth)
    auth.public_app("other")
    launch = _launch(auth, admin, patient="p1", client_id="other").json()["launch"]
    params = auth.authorize_params(scope="launch openid patient/*.rs", launch=launch)
    answer = auth.client.get(
        "/auth/authorize",
        params={k: v for k, v in params.items() if not k.startswith("_")},
        follow_redirects=False,
    )
    assert answer.status_code == 302 and "code" not in query_of(answer.headers["location"])
    # A patient signing in to a launch about someone else gets no code.
    launch = _launch(auth, admin, patient="p2").json()["launch"]
    params = auth.authorize_params(scope="launch openid patient/*.rs", launch=launch)
    page = auth.consent_page(params, "pat")
    refused = auth.approve(page.text)
    assert refused.status_code == 400 and "another patient" in refused.text


class _Labels(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.labelled: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "input" and a.get("type") != "hidden":
            self.ids.append(a.get("id") or "")
        if tag == "label" and a.get("for"):
            self.labelled.add(a["for"] or "")


def test_pages_are_accessible_escaped_and_locked_down(auth: Harness) -> None:
    auth.register(
        Client(
            "xss",
            '<script>alert("x")</script> App',
            "none",
            (REDIRECT,),
            frozenset({"authorization_code"}),
            "openid patient/*.rs",
        )
    )
    params = auth.authorize_params(client_id="xss", scope="openid patient/*.rs")
    login = auth.client.get(
        "/auth/authorize", params={k: v for k, v in params.items() if not k.startswith("_")}
    )
    page = auth.consent_page(params)
    for response in (login, page):
        assert "<script>" not in response.text
        assert "&lt;script&gt;" in response.text
        csp = response.headers["content-security-policy"]
        assert "script-src" not in csp and "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        assert re.search(r"form-action 'self' https://app\.example\.org", csp)
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert '<html lang="en">' in response.text
        labels = _Labels()
        labels.feed(response.text)
        assert labels.ids and all(i and i in labels.labelled for i in labels.ids)
    assert all(f.method in ("get", "post") for f in forms(page.text))
