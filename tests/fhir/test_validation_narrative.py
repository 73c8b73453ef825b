"""Narrative XHTML: https://hl7.org/fhir/R4/narrative.html#xhtml (txt-1, txt-2) and the safety
rules that follow from it (no scripts, forms, frames, objects, event attributes)."""

from __future__ import annotations

import pytest

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.validation import Validator
from tests.fhir import samples
from tests.fhir.conftest import only_issue

NS = 'xmlns="http://www.w3.org/1999/xhtml"'


def narrative_issue(validator: Validator, div: str) -> str:
    patient = samples.patient()
    patient["text"]["div"] = div
    issue = only_issue(validator.validate(patient))
    assert (issue.severity, issue.expression) == ("error", ("Patient.text.div",))
    assert issue.code == "invariant"
    return issue.diagnostics


@pytest.mark.parametrize(
    "div",
    [
        f"<div {NS}>Hello</div>",
        f'<div {NS} xml:lang="en"><p class="x" style="color: red">A <b>b</b></p><br/></div>',
        f'<div {NS}><table border="1"><tr><td colspan="2">1 &amp; 2 &#160;</td></tr></table></div>',
        f'<div {NS}><a href="https://example.org/x?a=1&amp;b=2">link</a><a name="n">a</a></div>',
        f'<div {NS}><img src="#photo" alt="photo"/>caption</div>',
        f'<div {NS}><img src="data:image/png;base64,iVBORw0KGgo=" alt="icon"/>x</div>',
        f"<div {NS}><!-- a comment --><![CDATA[ 1 < 2 ]]></div>",
    ],
)
def test_safe_narratives_pass(validator: Validator, div: str) -> None:
    patient = samples.patient()
    patient["text"]["div"] = div
    assert validator.validate(patient) == []


@pytest.mark.parametrize(
    ("div", "text"),
    [
        (f"<div {NS}><script>alert(1)</script>x</div>", "<script>"),
        (f'<div {NS}><iframe src="https://evil.example"/>x</div>', "<iframe>"),
        (f'<div {NS}><object data="x.swf"/>x</div>', "<object>"),
        (f'<div {NS}><embed src="x.swf"/>x</div>', "<embed>"),
        (f'<div {NS}><form action="/steal"><p>x</p></form></div>', "<form>"),
        (f'<div {NS}><p onclick="alert(1)">x</p></div>', "event-handler"),
        (f'<div {NS}><img src="x.png" onError="alert(1)"/>x</div>', "event-handler"),
        (f'<div {NS}><p style="width: expression(alert(1))">x</p></div>', "script expression"),
        (f'<div {NS}><a href="javascript:alert(1)">x</a></div>', "javascript:"),
        (f'<div {NS}><a href=" JaVa&#9;Script:alert(1)">x</a></div>', "javascript:"),
        (f'<div {NS}><a href="data:text/html;base64,PHNjcmlwdD4=">x</a></div>', "data:"),
        (f'<div {NS}><img src="data:image/svg+xml;base64,PHN2Zz4="/>x</div>', "data:"),
        (f'<div {NS}><p xmlns:x="urn:x" x:href="a">x</p></div>', "not allowed"),
        (f'<div {NS}><font color="red">x</font></div>', "<font>"),
    ],
)
def test_unsafe_narratives_fail(validator: Validator, div: str, text: str) -> None:
    message = narrative_issue(validator, div)
    assert message.startswith("txt-1")
    assert text in message


def test_doctype_and_entity_declarations_are_refused(validator: Validator) -> None:
    laughs = (
        '<!DOCTYPE div [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        f"<div {NS}>&b;</div>"
    )
    assert "DOCTYPE" in narrative_issue(validator, laughs)
    external = f'<!DOCTYPE div SYSTEM "file:///etc/passwd"><div {NS}>x</div>'
    assert "DOCTYPE" in narrative_issue(validator, external)
    assert "ENTITY" in narrative_issue(validator, f'<!ENTITY x "y"><div {NS}>x</div>')


def test_html_named_entities_are_not_xml(validator: Validator) -> None:
    assert "well-formed" in narrative_issue(validator, f"<div {NS}>a&nbsp;b</div>")


@pytest.mark.parametrize(
    ("div", "text"),
    [
        ("<div>no namespace</div>", "root must be"),
        (f"<p {NS}>not a div</p>", "root must be"),
        (f"<div {NS}><p>unclosed</div>", "well-formed"),
        ("plain text", "well-formed"),
        (f'<div {NS}><svg xmlns="http://www.w3.org/2000/svg"/>x</div>', "XHTML namespace"),
    ],
)
def test_div_must_be_xhtml(validator: Validator, div: str, text: str) -> None:
    message = narrative_issue(validator, div)
    assert message.startswith("txt-1")
    assert text in message


def test_narrative_needs_content(validator: Validator) -> None:
    message = narrative_issue(validator, f"<div {NS}>\n   <p> </p></div>")
    assert message.startswith("txt-2")


def test_narrative_status_is_bound(validator: Validator) -> None:
    patient = samples.patient()
    patient["text"]["status"] = "made-up"
    issue = only_issue(validator.validate(patient))
    assert (issue.code, issue.expression) == ("code-invalid", ("Patient.text.status",))


def test_narrative_length_limit_is_separate(definitions: Definitions) -> None:
    """xhtml is not a string type, so the 1 MB string rule does not bind it."""
    validator = Validator(definitions, max_string_length=10, max_narrative_length=100)
    patient = {"resourceType": "Patient", "text": {"status": "generated", "div": ""}}
    patient["text"]["div"] = f"<div {NS}>{'x' * 50}</div>"
    assert validator.validate(patient) == []
    patient["text"]["div"] = f"<div {NS}>{'x' * 100}</div>"
    issue = only_issue(validator.validate(patient))
    assert (issue.code, issue.expression) == ("value", ("Patient.text.div",))
