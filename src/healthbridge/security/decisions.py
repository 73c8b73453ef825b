"""Access decisions from SMART scopes: https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html.

Each FHIR interaction needs one permission letter on the resource type
(https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html#scopes-for-requesting-fhir-resources):
read, vread and instance history need ``r``; searches and type or system history ``s``; create
``c``; update and patch ``u``; delete ``d``. A token's scopes grant that letter in the ``system``,
``user`` or ``patient`` context; a ``patient/`` grant holds only inside the token's patient's
compartment (a decision carries that patient so the enforcing repository can restrict to it),
and granular scopes narrow it to the resources their search parameters match.

Pure: the enforcing repository wrapper turns a :class:`Decision` into refusals and search
restrictions.
"""

from __future__ import annotations

from dataclasses import dataclass

from healthbridge.security.context import MEMO_SIZE, AccessContext
from healthbridge.security.scopes import Context

PERMISSION_OF = {
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "search-type": "s",
    "search-system": "s",
    "history-type": "s",
    "history-system": "s",
    "create": "c",
    "update": "u",
    "patch": "u",
    "delete": "d",
}
"""CapabilityStatement interaction code -> the SMART permission it needs."""

CONTEXT_ORDER: tuple[Context, ...] = ("system", "user", "patient")
"""The broadest grant wins: a ``user/`` or ``system/`` grant is not held to one patient."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one interaction on one resource type.

    ``allowed`` False: refuse (403, or 404 where existence must not leak). Otherwise
    ``patient`` (when not None) confines the interaction to that patient's compartment and
    ``filters`` (when not empty) to the resources matching at least one of the granular scopes'
    parameter sets."""

    allowed: bool
    context: Context | None = None
    patient: str | None = None
    filters: tuple[tuple[tuple[str, str], ...], ...] = ()
    reason: str = ""


def decide(access: AccessContext, resource_type: str, interaction: str) -> Decision:
    """What ``access`` may do with ``interaction`` (a CapabilityStatement code) on
    ``resource_type`` (remembered in ``access.memo``)."""
    key = ("decide", resource_type, interaction)
    found: Decision | None = access.memo.get(key)
    if found is None:
        found = _decide(access, resource_type, interaction)
        if len(access.memo) < MEMO_SIZE:
            access.memo[key] = found
    return found


def _decide(access: AccessContext, resource_type: str, interaction: str) -> Decision:
    permission = PERMISSION_OF.get(interaction)
    if permission is None:
        return Decision(False, reason=f"the interaction {interaction!r} is not scoped")
    for context in CONTEXT_ORDER:
        granted = access.scopes.grants(context, resource_type, permission)
        if not granted:
            continue
        if context == "patient" and access.patient is None:
            return Decision(False, reason="patient/ scopes need a patient in the launch context")
        filters = () if any(not s.filters for s in granted) else tuple(s.filters for s in granted)
        patient = access.patient if context == "patient" else None
        return Decision(True, context, patient, filters)
    return Decision(
        False,
        reason=f"no granted scope allows {interaction} on {resource_type} "
        f"(it needs .{permission} on {resource_type} or *)",
    )
