"""Cross-origin access to the FHIR API for browser apps (SMART App Launch: public clients run in
the browser, https://hl7.org/fhir/smart-app-launch/app-launch.html#support-for-public-and-confidential-apps;
the Fetch standard's CORS protocol, https://fetch.spec.whatwg.org/#http-cors-protocol).

The API authenticates with bearer tokens, never cookies, so any origin may call it:
``Access-Control-Allow-Origin: *`` and never ``Access-Control-Allow-Credentials`` (an arbitrary
Origin is never reflected together with credentials, SECURITY.md). Preflight requests
(``OPTIONS`` with ``Access-Control-Request-Method``) are answered here, before authentication,
as the protocol requires (a preflight carries no credentials). Responses to requests that carry
an ``Origin`` expose the headers FHIR clients read (``Location``, ``ETag``...).
"""

from __future__ import annotations

from starlette.types import Message, Scope, Send

ALLOW_METHODS = b"GET, HEAD, POST, PUT, PATCH, DELETE"
ALLOW_HEADERS = (
    b"Authorization, Content-Type, Accept, If-Match, If-None-Match, If-None-Exist, "
    b"If-Modified-Since, Prefer, X-Request-Id"
)
EXPOSE_HEADERS = (
    b"Location, Content-Location, ETag, Last-Modified, Retry-After, RateLimit, "
    b"RateLimit-Policy, X-Request-Id, WWW-Authenticate, X-Subscription-Secret"
)
MAX_AGE = b"600"


def has_origin(scope: Scope) -> bool:
    return any(name == b"origin" for name, _ in scope["headers"])


def is_preflight(scope: Scope) -> bool:
    return scope["method"] == "OPTIONS" and any(
        name == b"access-control-request-method" for name, _ in scope["headers"]
    )


async def preflight(send: Send) -> None:
    """204 with what a browser may send (no body, no authentication needed)."""
    await send(
        {
            "type": "http.response.start",
            "status": 204,
            "headers": [
                (b"access-control-allow-origin", b"*"),
                (b"access-control-allow-methods", ALLOW_METHODS),
                (b"access-control-allow-headers", ALLOW_HEADERS),
                (b"access-control-max-age", MAX_AGE),
                (b"vary", b"Origin"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})


def exposing(send: Send) -> Send:
    """``send`` adding the CORS response headers to the response start."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            headers.append((b"access-control-allow-origin", b"*"))
            headers.append((b"access-control-expose-headers", EXPOSE_HEADERS))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped
