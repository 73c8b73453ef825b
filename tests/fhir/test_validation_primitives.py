"""Primitive datatypes and their JSON form: https://hl7.org/fhir/R4/datatypes.html#primitive and
https://hl7.org/fhir/R4/json.html#primitive (including the ``_element`` extension siblings)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from healthbridge.fhir import jsonformat
from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.validation import Validator
from healthbridge.fhir.validation.primitives import REGEX_OVERRIDES, check_decimal
from tests.fhir import samples
from tests.fhir.conftest import only_issue


def patient_with(**elements: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", **elements}


def value_issue(validator: Validator, resource: dict[str, Any], expression: str) -> str:
    issue = only_issue(validator.validate(resource))
    assert (issue.severity, issue.code, issue.expression) == ("error", "value", (expression,))
    return issue.diagnostics


@pytest.mark.parametrize("value", ["true", 1, 0, "false"])
def test_boolean_must_be_a_json_boolean(validator: Validator, value: Any) -> None:
    message = value_issue(validator, patient_with(active=value), "Patient.active")
    assert "JSON boolean" in message


def test_integer_types(validator: Validator) -> None:
    def rank(value: Any) -> dict[str, Any]:
        return patient_with(telecom=[{"system": "phone", "value": "1", "rank": value}])

    assert validator.validate(rank(2**31 - 1)) == []
    for bad in (0, -1, 2**31, Decimal("1.0"), "1", True):
        value_issue(validator, rank(bad), "Patient.telecom[0].rank")  # positiveInt
    attachment = {"contentType": "text/plain", "size": 0}
    assert validator.validate(patient_with(photo=[attachment])) == []
    attachment["size"] = -1
    value_issue(validator, patient_with(photo=[attachment]), "Patient.photo[0].size")


def test_integer_is_32_bit(validator: Validator) -> None:
    def birth_order(value: Any) -> dict[str, Any]:
        return patient_with(multipleBirthInteger=value)

    assert validator.validate(birth_order(-(2**31))) == []
    message = value_issue(validator, birth_order(2**31), "Patient.multipleBirth.ofType(integer)")
    assert "out of range" in message
    value_issue(validator, birth_order(Decimal("2.5")), "Patient.multipleBirth.ofType(integer)")


@pytest.mark.parametrize(
    "text", ["72.50", "0", "-0.0", "1E-22", "1000000000000000000", "1.000000000000000000E-245"]
)
def test_decimals_within_the_documented_range_pass(validator: Validator, text: str) -> None:
    observation = samples.observation()
    observation["valueQuantity"]["value"] = jsonformat.loads(text)
    assert validator.validate(observation) == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1e400", "out of range"),
        ("-1e308", "out of range"),
        ("1e-400", "out of range"),
        ("1." + "1" * 40, "digits"),
        ("1" * 40, "digits"),
        ('"72.5"', "JSON number"),
    ],
)
def test_absurd_or_mistyped_decimals_fail(validator: Validator, text: str, reason: str) -> None:
    observation = samples.observation()
    observation["valueQuantity"]["value"] = jsonformat.loads(text)
    message = value_issue(validator, observation, "Observation.value.ofType(Quantity).value")
    assert reason in message


def test_non_finite_decimals_fail() -> None:
    assert check_decimal(Decimal("Infinity")) is not None
    assert check_decimal(Decimal("NaN")) is not None
    assert check_decimal(True) is not None
    assert check_decimal(Decimal("72.50")) is None


def test_decimal_precision_survives_loads_and_dumps(validator: Validator) -> None:
    """json.html: the precision of a decimal is preserved (72.50 stays 72.50)."""
    body = (
        b'{"resourceType":"Observation","status":"final","code":{"text":"w"},'
        b'"valueQuantity":{"value":72.50}}'
    )
    resource = jsonformat.loads(body)
    assert resource["valueQuantity"]["value"] == Decimal("72.50")
    assert validator.validate(resource) == []
    assert jsonformat.dumps(resource) == body


def test_strings_may_not_be_empty(validator: Validator) -> None:
    message = value_issue(validator, patient_with(name=[{"family": ""}]), "Patient.name[0].family")
    assert "SHALL NOT be empty" in message


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x0b", "\x0c", "\x1f"])
def test_control_characters_are_refused(validator: Validator, char: str) -> None:
    resource = patient_with(name=[{"family": f"Cha{char}lmers"}])
    message = value_issue(validator, resource, "Patient.name[0].family")
    assert f"U+{ord(char):04X}" in message


def test_tab_cr_lf_and_unicode_whitespace_are_allowed(validator: Validator) -> None:
    resource = patient_with(
        name=[{"text": "Peter\tJames\r\nChalmers", "family": "Ch\u00a0almers\u2028"}],
        gender="male",
    )
    assert validator.validate(resource) == []


def test_string_length_limit_is_configurable(definitions: Definitions) -> None:
    validator = Validator(definitions, max_string_length=10)
    assert validator.validate(patient_with(name=[{"family": "x" * 10}])) == []
    resource = patient_with(name=[{"family": "x" * 11}])
    message = value_issue(validator, resource, "Patient.name[0].family")
    assert "the limit is 10" in message


def test_default_string_limit_is_one_megabyte(validator: Validator) -> None:
    assert validator.validate(patient_with(name=[{"family": "x" * 1_048_576}])) == []
    resource = patient_with(name=[{"family": "x" * 1_048_577}])
    assert "1,048,576" in value_issue(validator, resource, "Patient.name[0].family")


@pytest.mark.parametrize("value", ["1974", "1974-12", "1974-12-25", "2024-02-29", "2000-02-29"])
def test_valid_dates(validator: Validator, value: str) -> None:
    assert validator.validate(patient_with(birthDate=value)) == []


@pytest.mark.parametrize(
    "value",
    [
        "2023-02-30",
        "2023-02-29",
        "1900-02-29",
        "2023-04-31",
        "2023-13-01",
        "0000",
        "74-12-25",
        "1974-12-25T10:00:00Z",
        "1974/12/25",
        " 1974",
    ],
)
def test_invalid_dates(validator: Validator, value: str) -> None:
    value_issue(validator, patient_with(birthDate=value), "Patient.birthDate")


@pytest.mark.parametrize("value", ["2015-02-07T13:28:17-05:00", "2015", "2015-02-07T13:28:17.239Z"])
def test_valid_date_times(validator: Validator, value: str) -> None:
    assert validator.validate(patient_with(deceasedDateTime=value)) == []


@pytest.mark.parametrize(
    "value", ["2015-02-07T13:28:17", "2015-02-07T25:00:00Z", "2015-02-30T10:00:00Z", "2015-02-07T"]
)
def test_invalid_date_times(validator: Validator, value: str) -> None:
    value_issue(
        validator, patient_with(deceasedDateTime=value), "Patient.deceased.ofType(dateTime)"
    )


def test_instant_needs_seconds_and_zone(validator: Validator) -> None:
    resource = patient_with(meta={"lastUpdated": "2015-02-07T13:28:17.239+02:00"})
    assert validator.validate(resource) == []
    resource = patient_with(meta={"lastUpdated": "2015-02-07"})
    value_issue(validator, resource, "Patient.meta.lastUpdated")


def test_time(validator: Validator) -> None:
    def opening(value: str) -> dict[str, Any]:
        return {
            "resourceType": "Location",
            "hoursOfOperation": [{"openingTime": value}],
        }

    assert validator.validate(opening("09:00:00")) == []
    value_issue(validator, opening("24:00:00"), "Location.hoursOfOperation[0].openingTime")
    value_issue(validator, opening("9:00"), "Location.hoursOfOperation[0].openingTime")


@pytest.mark.parametrize("value", ["a" * 64, "A-Za-z0-9.-", "123"])
def test_valid_ids(validator: Validator, value: str) -> None:
    assert validator.validate(patient_with(id=value)) == []


@pytest.mark.parametrize("value", ["a" * 65, "a_b", "a b", "é", "a/b"])
def test_invalid_ids(validator: Validator, value: str) -> None:
    value_issue(validator, patient_with(id=value), "Patient.id")


def test_uri_has_no_whitespace(validator: Validator) -> None:
    def identifier(system: str) -> dict[str, Any]:
        return patient_with(identifier=[{"system": system, "value": "1"}])

    assert validator.validate(identifier("urn:oid:1.2.x")) == []  # a uri, not an oid
    value_issue(validator, identifier("http://exa mple.org"), "Patient.identifier[0].system")


def test_base64_binary(validator: Validator) -> None:
    def photo(data: str) -> dict[str, Any]:
        return patient_with(photo=[{"contentType": "image/png", "data": data}])

    assert validator.validate(photo("aGVsbG8=\n aGk=")) == []
    value_issue(validator, photo("aGVsbG8"), "Patient.photo[0].data")
    value_issue(validator, photo("a*b="), "Patient.photo[0].data")


def test_code_has_no_leading_trailing_or_double_spaces(validator: Validator) -> None:
    assert validator.validate(patient_with(photo=[{"contentType": "text/plain; a=b"}])) == []
    for bad in (" text/plain", "text/plain ", "text//plain  x"):
        resource = patient_with(photo=[{"contentType": bad}])
        value_issue(validator, resource, "Patient.photo[0].contentType")


@pytest.mark.parametrize(
    ("value_type", "good", "bad"),
    [
        ("Oid", "urn:oid:1.2.840.10008", "1.2.840.10008"),
        ("Uuid", "urn:uuid:a5b0c1d2-0000-4000-8000-00000000000a", "urn:uuid:A5B0C1D2"),
        ("Canonical", "http://hl7.org/fhir/ValueSet/x|4.0.1", "http://x y"),
        ("Url", "https://example.org/a?b=c", "https://example.org/a b"),
        ("Markdown", "# Title\n\n* item", ""),
        ("UnsignedInt", 0, -1),
        ("Time", "23:59:60", "23:60:00"),
    ],
)
def test_extension_value_types(validator: Validator, value_type: str, good: Any, bad: Any) -> None:
    def extended(value: Any) -> dict[str, Any]:
        extension = {"url": "http://example.org/x", f"value{value_type}": value}
        return patient_with(extension=[extension])

    assert validator.validate(extended(good)) == []
    expression = f"Patient.extension[0].value.ofType({value_type[0].lower()}{value_type[1:]})"
    value_issue(validator, extended(bad), expression)


def test_every_primitive_type_has_a_check(definitions: Definitions) -> None:
    """Each spec regex is used as is unless overridden with a documented reason."""
    primitives = {n: t for n, t in definitions.types.items() if t.kind == "primitive-type"}
    assert set(REGEX_OVERRIDES) <= set(primitives)
    for name, type_def in primitives.items():
        assert type_def.regex is not None or name == "xhtml", name


def test_primitive_extension_sibling(validator: Validator) -> None:
    patient = samples.patient()
    assert validator.validate(patient) == []
    del patient["birthDate"]  # an extension without a value is fine
    assert validator.validate(patient) == []
    patient["_birthDate"]["colour"] = "red"
    issue = only_issue(validator.validate(patient))
    assert (issue.code, issue.expression) == ("structure", ("Patient.birthDate.colour",))


def test_primitive_extension_sibling_of_a_choice(validator: Validator) -> None:
    extension = [{"url": "http://example.org/x", "valueCode": "a"}]
    assert validator.validate(patient_with(_deceasedBoolean={"extension": extension})) == []
    issue = only_issue(
        validator.validate(patient_with(deceasedDateTime="2020", _deceasedBoolean={"id": "1"}))
    )
    assert (issue.code, issue.expression) == ("structure", ("Patient.deceased",))


def test_primitive_extension_sibling_of_a_complex_element_is_unknown(validator: Validator) -> None:
    issue = only_issue(validator.validate(patient_with(_name=[{"id": "x"}])))
    assert (issue.code, issue.expression) == ("structure", ("Patient._name",))


def test_aligned_primitive_arrays(validator: Validator) -> None:
    ext = {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}
    name = {"given": ["Peter", None, "James"], "_given": [None, ext, None]}
    assert validator.validate(patient_with(name=[name])) == []
    only_extensions = {"_given": [ext, ext]}
    assert validator.validate(patient_with(name=[only_extensions])) == []


def test_misaligned_primitive_arrays(validator: Validator) -> None:
    ext = {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}
    shorter = {"given": ["Peter", "James"], "_given": [ext]}
    issue = only_issue(validator.validate(patient_with(name=[shorter])))
    assert (issue.code, issue.expression) == ("structure", ("Patient.name[0].given",))
    assert "must align" in issue.diagnostics
    both_null = {"given": ["Peter", None], "_given": [ext, None]}
    issues = validator.validate(patient_with(name=[both_null]))
    assert [(i.code, i.expression) for i in issues] == [
        ("structure", ("Patient.name[0].given[1]",)),
        ("structure", ("Patient.name[0].given[1]",)),
    ]
    null_without_partner = {"_given": [None, ext]}
    issue = only_issue(validator.validate(patient_with(name=[null_without_partner])))
    assert issue.expression == ("Patient.name[0].given[0]",)
