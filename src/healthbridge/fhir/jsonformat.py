"""FHIR JSON representation: https://hl7.org/fhir/R4/json.html.

Decoding keeps decimals exact (``72.50`` decodes to ``Decimal('72.50')`` and encodes back to
``72.50``), which the spec requires ("the precision of the decimal value has to be preserved").
Malformed input raises :class:`~healthbridge.fhir.errors.InvalidRequest`, never anything else.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from healthbridge.fhir.errors import InvalidRequest

_decoder = msgspec.json.Decoder(float_hook=Decimal)
_encoder = msgspec.json.Encoder(decimal_format="number")


def loads(data: bytes | str) -> Any:
    """Decode FHIR JSON; raise InvalidRequest (code ``structure``) on anything malformed."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        text = str(exc)
        if "truncated" in text:
            text += " (or it holds a lone UTF-16 surrogate escape, which FHIR JSON forbids)"
        raise InvalidRequest(f"The body is not valid JSON: {text}", code="structure") from None
    except RecursionError:
        raise InvalidRequest("The JSON body is nested too deeply", code="structure") from None
    except UnicodeDecodeError:
        raise InvalidRequest("The body is not valid UTF-8", code="structure") from None


def dumps(value: Any) -> bytes:
    """Encode to compact JSON bytes, decimals written exactly as decoded."""
    return _encoder.encode(value)


def pretty(data: bytes) -> bytes:
    """Indent already-encoded JSON bytes (for ``_pretty=true``) without re-parsing values."""
    return msgspec.json.format(data, indent=2)
