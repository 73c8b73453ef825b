"""Starlette glue of the authorization server: reading OAuth form bodies (RFC 6749 section
3.2: ``application/x-www-form-urlencoded``), wrapping them for Authlib, turning Authlib's
replies into responses, and CORS for browser apps.

CORS (https://fetch.spec.whatwg.org/#http-cors-protocol): discovery, JWKS, token, revocation
and introspection answer any origin with ``Access-Control-Allow-Origin: *`` and never with
``Access-Control-Allow-Credentials``: nothing there relies on cookies, and an arbitrary Origin
is never reflected. The sign-in and consent pages send no CORS headers at all.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from healthbridge.auth.config import AuthConfig
from healthbridge.auth.server import OAuthRequest, Reply

MAX_FORM_BYTES = 64 * 1024
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "600",
}
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class BadForm(Exception):
    """The body is not a form this server reads."""


async def read_form(request: Request, limit: int = MAX_FORM_BYTES) -> list[tuple[str, str]]:
    """The name/value pairs of an urlencoded body (blank values kept), at most ``limit`` bytes."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise BadForm("the body must be application/x-www-form-urlencoded")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadForm("the body is too large")
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        raise BadForm("the body is not a valid form") from None


def query_pairs(request: Request) -> list[tuple[str, str]]:
    try:
        return parse_qsl(request.url.query, keep_blank_values=True, max_num_fields=200)
    except ValueError:
        return []


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def oauth_request(
    config: AuthConfig,
    request: Request,
    query: Sequence[tuple[str, str]],
    form: Sequence[tuple[str, str]] = (),
) -> OAuthRequest:
    return OAuthRequest(
        request.method,
        config.url(request.url.path),
        request.headers,
        query,
        form,
        client_address(request),
    )


def reply_response(reply: Reply, *, cors: bool = False) -> Response:
    headers = dict(reply.headers)
    headers.update(NO_STORE)
    headers.pop("Content-Type", None)
    if cors:
        headers.update(CORS_HEADERS)
    if reply.status in (301, 302, 303, 307) or reply.body in ("", None):
        return Response(status_code=reply.status, headers=headers)
    return Response(
        json.dumps(reply.body),
        status_code=reply.status,
        headers=headers,
        media_type="application/json",
    )


def oauth_error(
    status: int, error: str, description: str, *, cors: bool = False, **extra: str
) -> Response:
    headers = {**NO_STORE, **(CORS_HEADERS if cors else {}), **extra}
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


def preflight(request: Request) -> Response:
    return Response(status_code=204, headers=CORS_HEADERS)


def json_response(body: Any, *, status: int = 200, cors: bool = False) -> Response:
    headers = {**(CORS_HEADERS if cors else {})}
    return JSONResponse(body, status_code=status, headers=headers)
