"""What the consent screen says and what the user's choices grant (SMART App Launch:
https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html; "the user may ... grant a
subset of the requested scopes", and granular scopes
https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html#finer-grained-resource-constraints-using-search-parameters).

Pure functions: :func:`describe` turns each requested scope into a plain-language line,
:func:`categories_for` lists the categories a user may narrow a resource scope to, and
:func:`granted_scope` applies the user's choices (deselected resource types, chosen categories,
whether to allow offline access) to the requested scopes.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from healthbridge.security.scopes import ResourceScope, Scopes

OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
US_CORE_CONDITION_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/condition-category"

CATEGORIES: dict[str, tuple[tuple[str, str], ...]] = {
    "Observation": (
        (f"{OBSERVATION_CATEGORY}|laboratory", "Laboratory results"),
        (f"{OBSERVATION_CATEGORY}|vital-signs", "Vital signs"),
        (f"{OBSERVATION_CATEGORY}|social-history", "Social history"),
        (f"{OBSERVATION_CATEGORY}|survey", "Surveys and questionnaires"),
        (f"{OBSERVATION_CATEGORY}|imaging", "Imaging results"),
    ),
    "Condition": (
        (f"{CONDITION_CATEGORY}|problem-list-item", "Problem list"),
        (f"{CONDITION_CATEGORY}|encounter-diagnosis", "Diagnoses from visits"),
        (f"{US_CORE_CONDITION_CATEGORY}|health-concern", "Health concerns"),
    ),
}
"""Resource types whose scopes a user may narrow by ``category`` on the consent screen."""

_NAMES = {
    "*": "all kinds of health records",
    "AllergyIntolerance": "allergies and intolerances",
    "Condition": "conditions and diagnoses",
    "DiagnosticReport": "diagnostic reports",
    "DocumentReference": "documents and notes",
    "Encounter": "visits and encounters",
    "Immunization": "immunizations",
    "MedicationRequest": "medication prescriptions",
    "Observation": "observations (lab results, vital signs and other measurements)",
    "Patient": "patient demographics (name, birth date, contact details)",
    "Practitioner": "information about clinicians",
    "Procedure": "procedures",
}
_VERBS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
IDENTITY_TEXT = {
    "openid": "Know who you are (your account name)",
    "fhirUser": "Know which person's record is yours",
    "profile": "See your name",
    "online_access": "Keep access while you are signed in",
    "offline_access": "Keep access when you are not using the app, until you revoke it",
    "launch": "Use the patient and visit the app was opened for",
    "launch/patient": "Know which patient's record is being viewed",
    "launch/encounter": "Know which visit is being viewed",
}


@dataclass(frozen=True, slots=True)
class ScopeLine:
    scope: str  # the requested scope text
    text: str  # what it means, in plain words
    categories: tuple[tuple[str, str], ...] = ()  # (system|code, label) the user may pick


def _type_name(resource_type: str) -> str:
    if resource_type in _NAMES:
        return _NAMES[resource_type]
    return re.sub(r"(?<!^)(?=[A-Z])", " ", resource_type).lower() + " records"


def _verbs(permissions: Collection[str]) -> str:
    words = [_VERBS[p] for p in "cruds" if p in permissions]
    if len(words) == 1:
        return words[0].capitalize()
    return (", ".join(words[:-1]) + " and " + words[-1]).capitalize()


def describe_resource(scope: ResourceScope, own_record: bool) -> str:
    verbs, kind = _verbs(scope.permissions), _type_name(scope.resource_type)
    if scope.context == "patient":
        whose = "your" if own_record else "this patient's"
        text = f"{verbs} {whose} {kind}"
    elif scope.context == "user":
        text = f"{verbs} {kind} of any patient you have access to"
    else:
        text = f"{verbs} {kind} of every patient"
    if scope.filters:
        text += " (only " + ", ".join(f"{n} {v}" for n, v in scope.filters) + ")"
    return text


def categories_for(scope: ResourceScope) -> tuple[tuple[str, str], ...]:
    """Categories the user may limit ``scope`` to (read or search scopes without filters)."""
    if scope.filters or not scope.permissions & {"r", "s"}:
        return ()
    return CATEGORIES.get(scope.resource_type, ())


def describe(scopes: Scopes, own_record: bool) -> list[ScopeLine]:
    lines = [
        ScopeLine(s.text, describe_resource(s, own_record), categories_for(s))
        for s in scopes.resources
    ]
    identity = (["launch"] if scopes.launch else []) + [
        f"launch/{c}" for c in sorted(scopes.launch_contexts)
    ]
    identity += sorted(scopes.identity)
    lines += [ScopeLine(w, IDENTITY_TEXT.get(w, w)) for w in identity]
    return lines


def granted_scope(
    requested: Scopes,
    chosen: Collection[str],
    categories: Mapping[str, Collection[str]],
    *,
    offline: bool,
) -> str:
    """The scopes granted: the resource scopes whose text is in ``chosen`` (each replaced by
    one granular scope per category the user picked for it, if any), the launch and identity
    scopes, and ``offline_access`` only when ``offline``."""
    words: list[str] = []
    for scope in requested.resources:
        if scope.text not in chosen:
            continue
        allowed = {value for value, _ in categories_for(scope)}
        picked = [c for c in categories.get(scope.text, ()) if c in allowed]
        if picked:
            words += [f"{scope.text}?category={c}" for c in sorted(picked)]
        else:
            words.append(scope.text)
    words += ["launch"] if requested.launch else []
    words += [f"launch/{c}" for c in sorted(requested.launch_contexts)]
    words += [w for w in sorted(requested.identity) if w != "offline_access" or offline]
    return " ".join(words)


def fit_to_user(requested: Scopes, patient_user: bool) -> str:
    """The requested scopes a signed-in user may grant at all: never ``system/`` (backend
    services only); for a patient or related person, ``user/`` scopes become ``patient/``
    ones (what such a user may see is their own, or their patient's, record)."""
    words: list[str] = []
    for scope in requested.resources:
        if scope.context == "system":
            continue
        if patient_user and scope.context == "user":
            words.append("patient/" + scope.text.removeprefix("user/"))
        else:
            words.append(scope.text)
    words += ["launch"] if requested.launch else []
    words += [f"launch/{c}" for c in sorted(requested.launch_contexts)]
    words += sorted(requested.identity)
    return " ".join(dict.fromkeys(words))
