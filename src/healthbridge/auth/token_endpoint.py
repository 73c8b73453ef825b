"""The token endpoint (RFC 6749 section 3.2, ``POST /auth/token``) and the revocation (RFC 7009,
``POST /auth/revoke``) and introspection (RFC 7662, ``POST /auth/introspect``) endpoints.

Each reads the urlencoded form, hands it to Authlib in a worker thread (:mod:`.bridge`) and
answers JSON with ``Cache-Control: no-store`` and ``Pragma: no-cache`` (RFC 6749 section 5.1)
and CORS for browser apps (no credentials, any origin: :mod:`.http`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any
from urllib.parse import unquote

from authlib.oauth2.rfc6749 import OAuth2Error
from starlette.requests import Request
from starlette.responses import Response

from healthbridge.auth import bridge
from healthbridge.auth.config import AuthConfig
from healthbridge.auth.http import BadForm, oauth_error, oauth_request, read_form, reply_response
from healthbridge.auth.server import AuthServer, Reply
from healthbridge.fhir.errors import TooManyRequests

Charge = Callable[[str], Awaitable[None]]
"""Spends one token request from a client's budget (raises TooManyRequests when it is spent)."""


def claimed_client(request: Request, form: list[tuple[str, str]]) -> str | None:
    """The client a token request names, before it is authenticated (for its rate budget):
    ``client_id``, the HTTP Basic user, or a client assertion's ``iss``."""
    fields = dict(form)
    if fields.get("client_id"):
        return fields["client_id"]
    authorization = request.headers.get("authorization", "")
    if authorization[:6].lower() == "basic ":
        with suppress(ValueError, binascii.Error):
            user = base64.b64decode(authorization[6:], validate=True).decode().partition(":")[0]
            return unquote(user) or None
    assertion = fields.get("client_assertion", "")
    if assertion.count(".") == 2:
        with suppress(ValueError, binascii.Error):
            payload = assertion.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            issuer = claims.get("iss") if isinstance(claims, dict) else None
            return issuer if isinstance(issuer, str) and issuer else None
    return None


class TokenEndpoints:
    def __init__(self, config: AuthConfig, server: AuthServer, charge: Charge | None = None):
        self._config = config
        self._server = server
        self._charge = charge
        """The per-client token budget (SECURITY.md: token endpoints limited per client too;
        the per-address budget is the rate-limit middleware's)."""

    async def _run(self, request: Request, call: Callable[[Any], Reply]) -> Response:
        try:
            form = await read_form(request)
            client = claimed_client(request, form) if self._charge is not None else None
            if client is not None and self._charge is not None:
                await self._charge(client)
            req = oauth_request(self._config, request, (), form)
        except BadForm as exc:
            return oauth_error(400, "invalid_request", str(exc), cors=True)
        except OAuth2Error as exc:
            return oauth_error(400, exc.error or "invalid_request", exc.description, cors=True)
        except TooManyRequests as exc:  # RFC 8628 section 3.5: slow_down
            return oauth_error(429, "slow_down", str(exc), cors=True, **exc.headers)
        await self._server.keys.current()  # a new period's key is loaded before Authlib signs
        reply = await bridge.in_thread(call, req)
        return reply_response(reply, cors=True)

    async def token(self, request: Request) -> Response:
        return await self._run(request, self._server.create_token_response)

    async def revoke(self, request: Request) -> Response:
        return await self._run(
            request, lambda req: self._server.create_endpoint_response("revocation", req)
        )

    async def introspect(self, request: Request) -> Response:
        return await self._run(
            request, lambda req: self._server.create_endpoint_response("introspection", req)
        )
