"""Access decisions from SMART scopes
(https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html): the permission each
interaction needs, the broadest context winning, patient/ grants held to the launch patient,
granular filters carried along."""

from __future__ import annotations

from healthbridge.security.context import AccessContext
from healthbridge.security.decisions import decide
from healthbridge.security.scopes import parse_scopes

LAB = "category=laboratory"


def access(scopes: str, patient: str | None = "p1") -> AccessContext:
    return AccessContext(parse_scopes(scopes), patient=patient)


def test_each_interaction_needs_its_letter() -> None:
    reader = access("patient/Observation.rs")
    for interaction in ("read", "vread", "history-instance", "search-type", "history-type"):
        assert decide(reader, "Observation", interaction).allowed, interaction
    for interaction in ("create", "update", "patch", "delete"):
        refused = decide(reader, "Observation", interaction)
        assert not refused.allowed and "Observation" in refused.reason
    assert not decide(reader, "Condition", "read").allowed
    assert not decide(access("patient/Observation.r"), "Observation", "search-type").allowed


def test_patient_grants_are_held_to_the_launch_patient() -> None:
    decision = decide(access("patient/*.rs"), "Condition", "search-type")
    assert decision.allowed and decision.context == "patient" and decision.patient == "p1"
    assert not decide(access("patient/*.rs", patient=None), "Condition", "read").allowed


def test_the_broadest_context_wins() -> None:
    decision = decide(access("patient/*.rs user/Observation.rs"), "Observation", "read")
    assert decision.context == "user" and decision.patient is None
    system = decide(access("system/*.cruds patient/*.rs"), "Observation", "delete")
    assert system.allowed and system.context == "system"


def test_granular_scopes_carry_their_filters_unless_one_is_unrestricted() -> None:
    granular = decide(
        access(f"patient/Observation.rs?{LAB} patient/Observation.rs?category=vital-signs"),
        "Observation",
        "search-type",
    )
    assert granular.filters == ((("category", "laboratory"),), (("category", "vital-signs"),))
    plain = decide(
        access(f"patient/Observation.rs?{LAB} patient/Observation.rs"), "Observation", "search-type"
    )
    assert plain.filters == ()


def test_unknown_interactions_are_refused() -> None:
    assert not decide(access("system/*.cruds"), "Observation", "transaction").allowed
