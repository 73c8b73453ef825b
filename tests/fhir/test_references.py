"""Placeholder and conditional references in a transaction (https://hl7.org/fhir/R4/http.html
#trules): every matching string is replaced, at any depth, and narrative links too."""

from __future__ import annotations

from healthbridge.fhir.references import find_links, is_conditional, rewrite

P = "urn:uuid:0b6e5b8e-7c1a-4f57-9d4c-3f2a1e0d9c11"


def test_every_matching_string_is_replaced_and_nothing_else() -> None:
    resource = {
        "resourceType": "DocumentReference",
        "subject": {"reference": P},
        "content": [{"attachment": {"url": P}}],
        "extension": [{"url": "http://x", "valueUri": P}],
        "contained": [{"resourceType": "List", "entry": [{"item": {"reference": P}}]}],
        "securityLabel": [{"text": "see " + P}],  # not equal: left alone
        "identifier": [{"value": "urn:uuid:other"}],
        "text": {"div": f'<div><a href="{P}">x</a><img src=\'{P}\'/><a href="#x">y</a></div>'},
        "list": [P, "keep"],
    }
    rewrite(resource, {P: "Patient/1"})
    assert resource["subject"] == {"reference": "Patient/1"}
    assert resource["content"][0]["attachment"]["url"] == "Patient/1"
    assert resource["extension"][0]["valueUri"] == "Patient/1"
    assert resource["contained"][0]["entry"][0]["item"]["reference"] == "Patient/1"
    assert resource["securityLabel"][0]["text"] == "see " + P
    assert resource["identifier"][0]["value"] == "urn:uuid:other"
    assert resource["text"]["div"] == (
        '<div><a href="Patient/1">x</a><img src=\'Patient/1\'/><a href="#x">y</a></div>'
    )
    assert resource["list"] == ["Patient/1", "keep"]


def test_conditional_references_are_found() -> None:
    resource = {
        "subject": {"reference": "Patient?identifier=http://x|1"},
        "performer": [{"reference": "Practitioner?identifier=http://npi|2"}],
        "basedOn": [{"reference": "ServiceRequest/1"}],
        "note": [{"text": "Patient?identifier=not-a-reference"}],
    }
    assert find_links(resource, frozenset()).conditional == {
        "Patient?identifier=http://x|1",
        "Practitioner?identifier=http://npi|2",
    }
    assert is_conditional("Patient?identifier=1")
    assert not is_conditional("Patient/1") and not is_conditional("http://x/Patient?x=1")
