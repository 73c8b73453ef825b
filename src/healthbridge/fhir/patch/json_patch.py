"""JSON Patch (RFC 6902, https://www.rfc-editor.org/rfc/rfc6902) on a FHIR resource.

https://hl7.org/fhir/R4/http.html#patch: ``PATCH [base]/[type]/[id]`` with
``Content-Type: application/json-patch+json``. The operations are applied by the ``jsonpatch``
library to a copy of the stored resource (decimals stay :class:`~decimal.Decimal`, so ``72.50``
is kept exactly). Errors:

* a malformed patch document (not a list of operations, unknown ``op``, a bad JSON Pointer,
  more than :data:`MAX_OPERATIONS`) is InvalidRequest (400), naming the operation;
* a patch that cannot be applied (a path that does not exist, a ``test`` that fails) is
  Unprocessable (422): the document was understood, the resource did not fit it.

Checking the result (same ``resourceType`` and ``id``, valid content) is the caller's job, as for
any update.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

from healthbridge.fhir.errors import InvalidRequest, Unprocessable
from healthbridge.fhir.types import Resource

MEDIA_TYPE = "application/json-patch+json"
MAX_OPERATIONS = 1000
OPERATIONS = frozenset({"add", "remove", "replace", "move", "copy", "test"})


def _check(patch: Any) -> list[dict[str, Any]]:
    if not isinstance(patch, list):
        raise InvalidRequest(
            "A JSON Patch is a JSON array of operations (RFC 6902)", code="structure"
        )
    if len(patch) > MAX_OPERATIONS:
        raise InvalidRequest(
            f"A JSON Patch may hold at most {MAX_OPERATIONS} operations", code="too-costly"
        )
    for index, operation in enumerate(patch):
        where = f"operation {index + 1}"
        if not isinstance(operation, dict) or operation.get("op") not in OPERATIONS:
            raise InvalidRequest(
                f"{where}: 'op' must be one of {', '.join(sorted(OPERATIONS))}", code="structure"
            )
        for key in ("path", "from") if operation["op"] in ("move", "copy") else ("path",):
            if not isinstance(operation.get(key), str):
                raise InvalidRequest(
                    f"{where}: '{key}' must be a JSON Pointer string", code="structure"
                )
        if operation["op"] in ("add", "replace", "test") and "value" not in operation:
            raise InvalidRequest(f"{where}: '{operation['op']}' needs a 'value'", code="required")
    return patch


def apply_json_patch(resource: Resource, patch: Any) -> Resource:
    """The patched copy of ``resource`` (which is left as it was)."""
    operations = _check(patch)
    try:
        patched = jsonpatch.JsonPatch(operations).apply(copy.deepcopy(resource))
    except jsonpatch.JsonPatchTestFailed as exc:
        raise Unprocessable(f"A JSON Patch 'test' failed: {exc}", code="processing") from None
    except (jsonpatch.JsonPatchConflict, jsonpointer.JsonPointerException) as exc:
        raise Unprocessable(f"The JSON Patch does not apply to the resource: {exc}") from None
    except jsonpatch.InvalidJsonPatch as exc:
        raise InvalidRequest(f"The JSON Patch is malformed: {exc}", code="structure") from None
    if not isinstance(patched, dict):
        raise Unprocessable("The JSON Patch replaced the whole resource with a non-object")
    return patched
