"""The token endpoint (RFC 6749 section 3.2, ``POST /auth/token``) and the revocation (RFC 7009,
``POST /auth/revoke``) and introspection (RFC 7662, ``POST /auth/introspect``) endpoints.

Each reads the urlencoded form, hands it to Authlib in a worker thread (:mod:`.bridge`) and
answers JSON with ``Cache-Control: no-store`` and ``Pragma: no-cache`` (RFC 6749 section 5.1)
and CORS for browser apps (no credentials, any origin: :mod:`.http`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Error
from starlette.requests import Request
from starlette.responses import Response

from healthbridge.auth import bridge
from healthbridge.auth.config import AuthConfig
from healthbridge.auth.http import BadForm, oauth_error, oauth_request, read_form, reply_response
from healthbridge.auth.server import AuthServer, Reply


class TokenEndpoints:
    def __init__(self, config: AuthConfig, server: AuthServer) -> None:
        self._config = config
        self._server = server

    async def _run(self, request: Request, call: Callable[[Any], Reply]) -> Response:
        try:
            form = await read_form(request)
            req = oauth_request(self._config, request, (), form)
        except BadForm as exc:
            return oauth_error(400, "invalid_request", str(exc), cors=True)
        except OAuth2Error as exc:
            return oauth_error(400, exc.error or "invalid_request", exc.description, cors=True)
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
