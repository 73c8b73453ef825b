"""The alert topics shipped with the server, as R5 SubscriptionTopics.

Spec: https://hl7.org/fhir/R5/subscriptiontopic.html (read through
:func:`healthbridge.subscriptions.topics.parse_topic`); their canonical URLs live under
``http://healthbridge.dev/fhir/SubscriptionTopic/``. The topics are data, in
``subscriptions/data/*.json``:

==========================  ==========================================================
topic                       fires when
==========================  ==========================================================
critical-lab-result         an Observation is interpreted critical (v3-ObservationInterpretation
                            HH, LL, AA) or its value is outside the critical range for its LOINC
                            code (ranges below)
lab-result-available        a laboratory Observation or a DiagnosticReport becomes final,
                            amended or corrected (status changes to it, or created with it)
appointment-changed         an Appointment becomes cancelled or its start changes (FHIRPath on
                            ``%previous``/``%current``)
encounter-start-discharge   an Encounter becomes in-progress, or finished, or gets a period.end
consent-changed             a Consent is created, or becomes inactive or rejected
missed-medication-dose      the missed-dose scheduler (:mod:`.missed_doses`) records a scheduled
                            dose with no administration by its due time plus grace as a not-done
                            MedicationAdministration (identifier urn:healthbridge:missed-dose|...)
==========================  ==========================================================

Critical ranges (``data/critical-ranges.json``, or ranges the server is configured with) become a
second resource trigger of ``critical-lab-result``: one OR'ed value of the ``code-value-quantity``
composite search parameter (https://hl7.org/fhir/R4/observation.html#search) per limit, e.g.
``http://loinc.org|2823-3$lt2.8|http://unitsofmeasure.org|mmol/L``; UCUM units compare in
canonical form (a g/L hemoglobin matches a g/dL limit), units that do not convert (glucose in
mg/dL and mmol/L) need a range each. The shipped defaults (potassium 2823-3, sodium 2951-2,
glucose 2345-7, hemoglobin 718-7, platelets 777-3, troponin T 6598-7) are the adult mean
critical limits of Kost GJ, "Critical limits for urgent clinician notification at US medical
centers", JAMA 1990;263(5):704-707 (also Kost GJ & Hale KN, "Table of critical limits", MLO), and
for platelets and conventional troponin T the limits common in US hospital critical-value lists.
Every laboratory must define its own list (The Joint Commission, NPSG.02.03.01): configure it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from importlib import resources
from typing import Any, Final

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import InvalidRequest
from healthbridge.subscriptions.topics import QueryCriteria, ResourceTrigger, Topic, parse_topic

BASE: Final = "http://healthbridge.dev/fhir/SubscriptionTopic/"
CRITICAL_LAB: Final = BASE + "critical-lab-result"
LOINC: Final = "http://loinc.org"
UCUM: Final = "http://unitsofmeasure.org"
TOPIC_FILES: Final = (
    "critical-lab-result.json",
    "lab-result-available.json",
    "appointment-changed.json",
    "encounter-start-discharge.json",
    "consent-changed.json",
    "missed-medication-dose.json",
)
RELEASED: Final = "status=preliminary,final,amended,corrected"


@dataclass(frozen=True, slots=True)
class CriticalRange:
    """Critical limits for one LOINC code in one UCUM unit: below ``low`` or above ``high``."""

    code: str
    unit: str
    low: Decimal | None = None
    high: Decimal | None = None
    display: str | None = None
    source: str | None = None


def _data(name: str) -> Any:
    return jsonformat.loads(
        resources.files("healthbridge.subscriptions").joinpath("data", name).read_bytes()
    )


def critical_ranges(raw: Iterable[Any]) -> tuple[CriticalRange, ...]:
    """Ranges from their JSON shape (``code``, ``unit``, ``low``, ``high``, ``display``,
    ``source``); InvalidRequest naming the bad entry."""
    out: list[CriticalRange] = []
    for i, item in enumerate(raw):
        where = f"ranges[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where} must be an object", expression=where)
        code, unit = item.get("code"), item.get("unit")
        if not isinstance(code, str) or not code or not isinstance(unit, str) or not unit:
            raise InvalidRequest(f"{where} needs a LOINC code and a UCUM unit", expression=where)
        low, high = (_decimal(item.get(k), f"{where}.{k}") for k in ("low", "high"))
        if low is None and high is None:
            raise InvalidRequest(f"{where} needs a low or a high limit", expression=where)
        if low is not None and high is not None and low >= high:
            raise InvalidRequest(f"{where}: low must be below high", expression=where)
        out.append(CriticalRange(code, unit, low, high, item.get("display"), item.get("source")))
    return tuple(out)


def _decimal(value: object, where: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
        raise InvalidRequest(f"{where} must be a number", expression=where)
    return Decimal(str(value))


def default_critical_ranges() -> tuple[CriticalRange, ...]:
    """The shipped defaults (``data/critical-ranges.json``)."""
    return critical_ranges(_data("critical-ranges.json")["ranges"])


def range_criteria(ranges: Sequence[CriticalRange]) -> str:
    """The search criteria matching an Observation outside any of ``ranges``."""
    values: list[str] = []
    for r in ranges:
        for prefix, limit in (("lt", r.low), ("gt", r.high)):
            if limit is not None:
                values.append(f"{LOINC}|{r.code}${prefix}{limit}|{UCUM}|{r.unit}")
    return f"{RELEASED}&code-value-quantity={','.join(values)}"


def _with_ranges(topic: Topic, ranges: Sequence[CriticalRange]) -> Topic:
    if not ranges:
        return topic
    trigger = ResourceTrigger(
        resource="Observation",
        interactions=("create", "update"),
        query=QueryCriteria(current=range_criteria(ranges), result_for_delete="test-fails"),
        description="The Observation's value is outside the critical range for its LOINC code.",
    )
    return replace(topic, resource_triggers=(*topic.resource_triggers, trigger))


def builtin_topics(ranges: Sequence[CriticalRange] | None = None) -> tuple[Topic, ...]:
    """The built-in topics; ``ranges`` replaces the default critical ranges (``()`` keeps
    only the interpretation trigger of the critical-lab-result topic)."""
    chosen = default_critical_ranges() if ranges is None else tuple(ranges)
    topics = [parse_topic(_data(name)) for name in TOPIC_FILES]
    return tuple(_with_ranges(t, chosen) if t.url == CRITICAL_LAB else t for t in topics)


def topic_resources() -> tuple[dict[str, Any], ...]:
    """The shipped SubscriptionTopic JSON, as served (without the range trigger, which is
    server configuration)."""
    return tuple(_data(name) for name in TOPIC_FILES)
