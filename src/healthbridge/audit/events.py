"""AuditEvent builders in the IHE Basic Audit Log Patterns (BALP) shapes: pure functions.

https://hl7.org/fhir/R4/auditevent.html and https://profiles.ihe.net/ITI/BALP/ (RESTful
activity: Create, Read, Update, Delete, Query, with a Patient; the OAuth access-token agent
pattern). Every event has

* ``type``: ``audit-event-type#rest`` for FHIR interactions; DICOM ``110114`` User
  Authentication for logins, logouts and tokens;
* ``subtype``: the ``restful-interaction`` code (read, vread, search-type, create...); DICOM
  ``110122`` Login / ``110123`` Logout; for tokens :data:`LOCAL_SUBTYPES` (``token-issue``,
  ``token-refresh``, ``token-revoke``), issue and refresh also as IHE ``ITI-71`` Get Access
  Token;
* ``action`` C/R/U/D/E, ``recorded``, ``outcome`` 0 (success), 4 (4xx: the request failed,
  including 401, 403 and 404 by policy) or 8 (5xx) with ``outcomeDesc``;
* ``agent``: the user (``requestor``; ``who.reference`` = fhirUser, ``who.identifier`` = the
  subject; type IRCP information recipient, or AUT author for writes; the token ``jti`` in
  ``policy`` as ``urn:ietf:params:oauth:jti:...``), the client application (DICOM 110150,
  ``who.identifier`` = client_id, ``network`` = its IP address; the requestor and policy holder
  when there is no user) and this server (110153 Source Role ID when data leaves it on a read,
  else 110152 Destination Role ID; ``network`` = its base URL);
* ``source``: this server as observer, type 4 Application Server;
* ``entity``: the resource (System Object, role Domain Resource, ``Type/id/_history/n``), the
  Patient (Person, role Patient; one event per Patient), the query (role Query, ``query`` =
  the request, base64), the token (role Security Resource).

Each builder returns :class:`~healthbridge.store.audit.AuditEntry` values, ready to append: the
JSON without an id (the log numbers it) and the columns audit searches filter on.
"""

from __future__ import annotations

import base64
import ipaddress
import time
from typing import Any, NamedTuple

import msgspec

from healthbridge.audit.records import WRITES, AuditRecord, Who
from healthbridge.fhir.datetimes import to_micros
from healthbridge.store.audit import AuditEntry
from healthbridge.store.repository import OutboxEvent

AUDIT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
IHE_EVENT = "urn:ihe:event-type-code"
LOCAL_SUBTYPES = "http://healthbridge.dev/fhir/CodeSystem/audit-event-subtype"
"""HealthBridge's codes for the token lifecycle (BALP and DICOM define none for refresh or
revocation): ``token-issue``, ``token-refresh``, ``token-revoke``."""
OPERATIONS = "http://healthbridge.dev/fhir/CodeSystem/operation"
"""A second subtype of an ``operation`` event: the operation's ``$name``."""
OUTCOME = "http://terminology.hl7.org/CodeSystem/audit-event-outcome"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
NETWORK_TYPE_IP, NETWORK_TYPE_NAME, NETWORK_TYPE_URI = "2", "1", "5"
JTI_PREFIX = "urn:ietf:params:oauth:jti:"

_encode = msgspec.json.encode
_OUTCOME_DISPLAY = {"0": "Success", "4": "Minor failure", "8": "Serious failure"}
_AUTH: dict[str, tuple[dict[str, str], ...]] = {
    "login": ({"system": DCM, "code": "110122", "display": "Login"},),
    "login-failed": ({"system": DCM, "code": "110122", "display": "Login"},),
    "logout": ({"system": DCM, "code": "110123", "display": "Logout"},),
    "token-issue": (
        {"system": LOCAL_SUBTYPES, "code": "token-issue", "display": "Access token issued"},
        {"system": IHE_EVENT, "code": "ITI-71", "display": "Get Access Token"},
    ),
    "token-refresh": (
        {"system": LOCAL_SUBTYPES, "code": "token-refresh", "display": "Access token refreshed"},
        {"system": IHE_EVENT, "code": "ITI-71", "display": "Get Access Token"},
    ),
    "token-revoke": (
        {"system": LOCAL_SUBTYPES, "code": "token-revoke", "display": "Token revoked"},
    ),
}
_READS = frozenset({"read", "vread", "history-instance", "history-type", "history-system"})
_ACTIONS = {"create": "C", "update": "U", "patch": "U", "delete": "D"}


class AuditSource:
    """This server, as the observer that records the events: ``base_url`` is its FHIR base
    (``https://fhir.example.org/fhir``), ``site`` a name for where it runs. It keeps the parts
    of the events that repeat (the source, the agents of recent users) encoded once."""

    MAX_CACHED = 4096

    def __init__(
        self, base_url: str, site: str = "HealthBridge", name: str = "HealthBridge FHIR server"
    ) -> None:
        self.base_url = base_url
        self.site = site
        self.name = name
        self.reference: dict[str, Any] = {
            "identifier": {"system": "urn:ietf:rfc:3986", "value": base_url},
            "display": name,
        }
        self.source = msgspec.Raw(
            _encode(
                {
                    "site": site,
                    "observer": self.reference,
                    "type": [_coding(SOURCE_TYPE, "4")],
                }
            )
        )
        self._agents: dict[tuple[Who, str], msgspec.Raw] = {}

    def agents(self, who: Who, action: str) -> msgspec.Raw:
        """The encoded agents of an event by ``who`` with ``action`` (cached per user)."""
        key = (who, action)
        found = self._agents.get(key)
        if found is None:
            if len(self._agents) >= self.MAX_CACHED:
                self._agents.clear()
            found = self._agents[key] = msgspec.Raw(_encode(_agents(who, self, action)))
        return found


def outcome_code(status: int) -> str:
    """DICOM/FHIR outcome of an HTTP status: 0 below 400, 4 for 4xx, 8 for 5xx."""
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


def action_code(interaction: str | None) -> str:
    if interaction in _ACTIONS:
        return _ACTIONS[interaction]
    return "R" if interaction in _READS else "E"


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def _network(address: str) -> dict[str, str]:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return {"address": address, "type": NETWORK_TYPE_NAME}
    return {"address": address, "type": NETWORK_TYPE_IP}


def _instant(micros: int, cache: list[Any] = [None, ""]) -> str:  # noqa: B006 (a memo)
    """``format_instant`` of microseconds since the epoch, the seconds formatted once."""
    second, fraction = divmod(micros, 1_000_000)
    if cache[0] != second:
        cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        cache[0] = second
    return f"{cache[1]}.{fraction:06d}Z"


def _agents(who: Who, source: AuditSource, action: str) -> list[dict[str, Any]]:
    """The user, the client application and this server (BALP)."""
    agents: list[dict[str, Any]] = []
    user = who.subject or who.fhir_user
    policy = [JTI_PREFIX + who.jti] if who.jti else None
    if user:
        reference: dict[str, Any] = {}
        if who.fhir_user:
            reference["reference"] = who.fhir_user
        if who.subject:
            reference["identifier"] = {"value": who.subject}
        agent: dict[str, Any] = {
            "type": {"coding": [_coding(PARTICIPATION, "AUT" if action in "CUD" else "IRCP")]},
            "who": reference,
            "requestor": True,
        }
        if policy:
            agent["policy"] = policy
        agents.append(agent)
    if who.client_id or who.address:
        client: dict[str, Any] = {"type": {"coding": [_coding(DCM, "110150")]}}
        if who.client_id:
            client["who"] = {"identifier": {"value": who.client_id}}
        client["requestor"] = not user
        if who.address:
            client["network"] = _network(who.address)
        if policy and not user:
            client["policy"] = policy
        agents.append(client)
    agents.append(
        {
            "type": {"coding": [_coding(DCM, "110153" if action == "R" else "110152")]},
            "who": source.reference,
            "requestor": False,
            "network": {"address": source.base_url, "type": NETWORK_TYPE_URI},
        }
    )
    return agents


def _raw(value: Any) -> msgspec.Raw:
    return msgspec.Raw(_encode(value))


_PERSON, _PATIENT = _raw(_coding(ENTITY_TYPE, "1")), _raw(_coding(OBJECT_ROLE, "1"))
_OBJECT = _raw(_coding(ENTITY_TYPE, "2"))
_DOMAIN_RESOURCE, _QUERY = _raw(_coding(OBJECT_ROLE, "4")), _raw(_coding(OBJECT_ROLE, "24"))
_SECURITY_RESOURCE = _raw(_coding(OBJECT_ROLE, "13"))
_REST = _raw(_coding(AUDIT_TYPE, "rest", "Restful Operation"))
_USER_AUTHENTICATION = _raw(_coding(DCM, "110114", "User Authentication"))
_SUBTYPES: dict[str, msgspec.Raw] = {}


def _interaction(code: str) -> msgspec.Raw:
    found = _SUBTYPES.get(code)
    if found is None:
        found = _SUBTYPES[code] = _raw(_coding(INTERACTION, code))
    return found


def _patient_entity(patient: str) -> dict[str, Any]:
    return {"what": {"reference": f"Patient/{patient}"}, "type": _PERSON, "role": _PATIENT}


def _data_entity(resource_type: str, id: str, version: str | None) -> dict[str, Any]:
    reference = f"{resource_type}/{id}"
    if version is not None:
        reference += f"/_history/{version}"
    return {"what": {"reference": reference}, "type": _OBJECT, "role": _DOMAIN_RESOURCE}


def _query_entity(query: str) -> dict[str, Any]:
    return {"type": _OBJECT, "role": _QUERY, "query": base64.b64encode(query.encode()).decode()}


def _token_entity(jti: str) -> dict[str, Any]:
    what = {"identifier": {"value": JTI_PREFIX + jti}}
    return {"what": what, "type": _OBJECT, "role": _SECURITY_RESOURCE}


class _Head(NamedTuple):
    """What an event is: type and subtype (codes for the log's columns, encoded for the
    JSON), action, outcome and its description."""

    type: str
    type_json: msgspec.Raw
    subtype: str
    subtype_json: list[Any]
    action: str
    outcome: str
    description: str | None


def _entry(
    head: _Head,
    recorded: int,
    who: Who,
    source: AuditSource,
    entities: list[dict[str, Any]],
    patient: str | None,
    source_seq: int | None = None,
) -> AuditEntry:
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": head.type_json,
        "subtype": head.subtype_json,
        "action": head.action,
        "recorded": _instant(recorded),
        "outcome": head.outcome,
    }
    if head.outcome != "0" or head.description:
        event["outcomeDesc"] = head.description or _OUTCOME_DISPLAY[head.outcome]
    event["agent"] = source.agents(who, head.action)
    event["source"] = source.source
    if entities:
        event["entity"] = entities
    return AuditEntry(
        recorded=recorded,
        type=head.type,
        subtype=head.subtype,
        action=head.action,
        outcome=head.outcome,
        patient=patient,
        agent=who.agent,
        client=who.client_id,
        body=_encode(event),
        source_seq=source_seq,
    )


def record_entries(
    record: AuditRecord, source: AuditSource, patients: list[str]
) -> list[AuditEntry]:
    """The AuditEvents of ``record``: one per Patient in ``patients`` (BALP: an event per
    patient, so each patient's disclosures can be listed), or one without a Patient."""
    if record.kind != "rest":
        return [_auth_entry(record, source)]
    interaction = record.interaction or "operation"
    outcome = outcome_code(record.status)
    description = record.description
    if description is None and outcome != "0":
        description = f"HTTP {record.status}"
    subtype: list[Any] = [_interaction(interaction)]
    if record.operation:
        subtype.append(_coding(OPERATIONS, record.operation))
    action = action_code(interaction)
    head = _Head("rest", _REST, interaction, subtype, action, outcome, description)
    shared: list[dict[str, Any]] = []
    if record.resource_type and record.id:  # a type-level interaction has its query
        shared.append(_data_entity(record.resource_type, record.id, record.version))
    if record.query:
        shared.append(_query_entity(record.query))
    if not patients:
        return [_entry(head, record.recorded, record.who, source, shared, None)]
    return [
        _entry(head, record.recorded, record.who, source, [_patient_entity(p), *shared], p)
        for p in patients
    ]


def _auth_entry(record: AuditRecord, source: AuditSource) -> AuditEntry:
    subtype = _AUTH[record.kind]
    status = 401 if record.kind == "login-failed" and record.status < 400 else record.status
    head = _Head(
        "110114",
        _USER_AUTHENTICATION,
        subtype[0]["code"],
        list(subtype),
        "E",
        outcome_code(status),
        record.description,
    )
    entities = [_token_entity(record.who.jti)] if record.who.jti else []
    if record.query:
        entities.append(_query_entity(record.query))
    patient = record.patients[0] if record.patients else None
    return _entry(head, record.recorded, record.who, source, entities, patient)


def change_entry(event: OutboxEvent, patients: list[str], source: AuditSource) -> AuditEntry:
    """The AuditEvent of one committed change (an outbox row): who made it comes from the row's
    actor. One event per change (``source_seq`` makes relaying it idempotent); every Patient is
    an entity, the first is the one searches by patient find."""
    interaction = event.method if event.method in WRITES else "update"
    action = action_code(interaction)
    head = _Head("rest", _REST, interaction, [_interaction(interaction)], action, "0", None)
    entities = [_patient_entity(p) for p in patients]
    entities.append(_data_entity(event.resource_type, event.id, str(event.version_id)))
    who = Who.from_actor(event.actor)
    patient = patients[0] if patients else None
    recorded = to_micros(event.recorded)
    return _entry(head, recorded, who, source, entities, patient, source_seq=event.seq)
