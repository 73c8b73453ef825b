"""Decisions are remembered per token (security/decisions.py): the same answers as deciding
afresh, and never carried over to a context with other scopes or another launch patient
(SMART App Launch scopes: https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html)."""

from __future__ import annotations

from dataclasses import replace

from healthbridge.security.context import AccessContext
from healthbridge.security.decisions import _decide, decide
from healthbridge.security.scopes import parse_scopes

CASES = [
    ("Observation", "read"),
    ("Observation", "search-type"),
    ("Observation", "create"),
    ("Patient", "read"),
    ("AuditEvent", "read"),
    ("Observation", "no-such-interaction"),
]


def test_remembered_decisions_are_the_fresh_ones() -> None:
    access = AccessContext(parse_scopes("patient/Observation.rs patient/Patient.r"), patient="p1")
    for _ in range(2):
        for resource_type, interaction in CASES:
            assert decide(access, resource_type, interaction) == _decide(
                access, resource_type, interaction
            )
    assert len(access.memo) == len(CASES)


def test_a_changed_context_decides_afresh() -> None:
    access = AccessContext(parse_scopes("patient/*.rs"), patient="p1")
    assert decide(access, "Observation", "read").patient == "p1"
    other = replace(access, patient="p2")
    assert other.memo == {} and decide(other, "Observation", "read").patient == "p2"
    unlaunched = replace(access, patient=None)
    assert not decide(unlaunched, "Observation", "read").allowed
    assert decide(access, "Observation", "read").allowed
