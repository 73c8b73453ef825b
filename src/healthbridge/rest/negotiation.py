"""HTTP content negotiation and conditional headers for FHIR.

- Formats: https://hl7.org/fhir/R4/http.html#mime-type (``_format`` and ``Accept``; only JSON is
  served, so anything else is 406 Not Acceptable).
- ``Prefer: return=``: https://hl7.org/fhir/R4/http.html#ops.
- Versions and ETags: https://hl7.org/fhir/R4/http.html#versioning (``ETag: W/"3"``,
  ``If-Match``, ``If-None-Match``, ``If-Modified-Since``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from healthbridge.fhir.errors import InvalidRequest, NotAcceptable, UnsupportedMediaType

JSON_TYPES = frozenset(
    {"application/fhir+json", "application/json", "application/json+fhir", "json", "text/json"}
)
_WILDCARDS = frozenset({"*/*", "application/*"})
# An unencoded "+" in a query string arrives as a space: _format=application/fhir+json.
_FORMAT_ALIASES = JSON_TYPES | {"application/fhir json"}


def _media_type(value: str) -> tuple[str, float]:
    parts = [p.strip() for p in value.split(";")]
    quality = 1.0
    for param in parts[1:]:
        name, _, raw = param.partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(raw)
            except ValueError:
                quality = 0.0
    return parts[0].lower(), quality


def check_format(format_param: str | None, accept: str | None) -> None:
    """Raise NotAcceptable unless the client can take FHIR JSON."""
    if format_param is not None:
        media = format_param.split(";")[0].strip().lower()
        if media in _FORMAT_ALIASES:
            return
        raise NotAcceptable(
            f"_format={format_param!r} is not supported; this server speaks FHIR JSON "
            "(_format=json or application/fhir+json)",
            expression="_format",
        )
    if not accept:
        return
    for item in accept.split(","):
        if not item.strip():
            continue
        media, quality = _media_type(item)
        if quality > 0 and (media in JSON_TYPES or media in _WILDCARDS):
            return
    raise NotAcceptable(
        f"Accept: {accept!r} asks for a format this server does not produce; "
        "ask for application/fhir+json",
    )


def check_content_type(content_type: str | None, *, extra: frozenset[str] = frozenset()) -> str:
    """Return the request media type or raise 415 when it is not FHIR JSON (or ``extra``)."""
    if not content_type:
        raise UnsupportedMediaType(
            "The request has a body but no Content-Type; send Content-Type: application/fhir+json"
        )
    media = content_type.split(";")[0].strip().lower()
    if media in JSON_TYPES or media in extra:
        return media
    raise UnsupportedMediaType(
        f"Content-Type {media!r} is not supported; send application/fhir+json"
    )


def prefer_return(prefer: str | None) -> str:
    """``minimal``, ``representation`` (the default) or ``OperationOutcome``."""
    if prefer:
        for token in prefer.split(","):
            name, _, value = token.strip().partition("=")
            if name.strip().lower() == "return":
                value = value.strip().strip('"')
                if value in ("minimal", "representation", "OperationOutcome"):
                    return value
    return "representation"


def parse_etag(value: str, header: str) -> int:
    """``W/"3"`` (or ``"3"``) -> 3; anything else is a 400 naming the header."""
    raw = value.strip()
    if raw.startswith(("W/", "w/")):
        raw = raw[2:]
    raw = raw.strip('"')
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidRequest(
            f'{header}: {value!r} is not a version ETag such as W/"3"', expression=header
        )
    return int(raw)


def etag_matches(header: str, version_id: int) -> bool:
    """If-None-Match semantics: ``*`` or any listed ETag equal to the current version."""
    for raw_item in header.split(","):
        item = raw_item.strip()
        if item == "*":
            return True
        raw = item[2:] if item[:2] in ("W/", "w/") else item
        if raw.strip('"') == str(version_id):
            return True
    return False


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(moment: datetime) -> str:
    """RFC 9110 IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``) of a UTC datetime."""
    m = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    return (
        f"{_DAYS[m.weekday()]}, {m.day:02d} {_MONTHS[m.month - 1]} {m.year:04d} "
        f"{m.hour:02d}:{m.minute:02d}:{m.second:02d} GMT"
    )


def parse_http_date(value: str) -> datetime | None:
    """Parse an HTTP-date; None when unparseable (RFC 9110 says ignore an invalid date)."""
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else None
