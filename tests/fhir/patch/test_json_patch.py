"""JSON Patch (RFC 6902) as PATCH uses it (https://hl7.org/fhir/R4/http.html#patch): the
conformance cases of ``../shared/data/fhir-patch/json-patch-tests.json`` and FHIR specifics."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from healthbridge.fhir.errors import InvalidRequest, Unprocessable
from healthbridge.fhir.patch.json_patch import apply_json_patch
from tests.fhir.conftest import shared_file

pytestmark = pytest.mark.shared_data


def _cases() -> list[dict[str, Any]]:
    path = shared_file("fhir-patch/json-patch-tests.json")
    return list(json.loads(path.read_text()))


def test_the_shared_json_patch_cases() -> None:
    """Every case: the expected document, or an error (and the input untouched)."""
    cases = _cases()
    assert len(cases) >= 16
    for case in cases:
        doc = json.loads(json.dumps(case["doc"]))
        if "expected" in case:
            assert apply_json_patch(doc, case["patch"]) == case["expected"], case["comment"]
        else:
            with pytest.raises((InvalidRequest, Unprocessable)):
                apply_json_patch(doc, case["patch"])
        assert doc == case["doc"], f"{case['comment']}: the input was modified"


def test_decimals_stay_exact() -> None:
    resource = {"resourceType": "Observation", "valueQuantity": {"value": Decimal("72.50")}}
    patched = apply_json_patch(resource, [{"op": "add", "path": "/status", "value": "final"}])
    assert patched["valueQuantity"]["value"] == Decimal("72.50")
    assert str(patched["valueQuantity"]["value"]) == "72.50"


@pytest.mark.parametrize(
    ("patch", "error"),
    [
        ({"op": "add"}, InvalidRequest),  # not a list
        ([{"op": "frobnicate", "path": "/a"}], InvalidRequest),
        ([{"op": "add", "path": "/a"}], InvalidRequest),  # no value
        ([{"op": "move", "path": "/a"}], InvalidRequest),  # no from
        ([{"op": "remove", "path": "/nothing"}], Unprocessable),
        ([{"op": "test", "path": "/status", "value": "draft"}], Unprocessable),
        ([{"op": "add", "path": "/a"}] * 2000, InvalidRequest),
    ],
)
def test_bad_patches(patch: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        apply_json_patch({"resourceType": "Observation", "status": "final"}, patch)
