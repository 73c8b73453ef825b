"""The OAuth 2.0 grants this server offers, as Authlib grant classes, with SMART's rules
(https://hl7.org/fhir/smart-app-launch/app-launch.html and backend-services.html):

* authorization code (RFC 6749 section 4.1) with PKCE (RFC 7636) required of *every* client and
  ``S256`` the only method (Authlib accepts ``plain`` and lets confidential clients skip PKCE;
  :class:`S256Only` refuses both); ``aud`` must name this FHIR server and a ``launch`` must be
  one this server issued (:mod:`.launch`), else no code is issued;
* OpenID Connect id_tokens (https://openid.net/specs/openid-connect-core-1_0.html#CodeFlowAuth)
  signed with the server's current key, carrying ``fhirUser`` when that scope was granted;
* refresh tokens with rotation and reuse detection (:mod:`.credentials`);
* client credentials for backend services, ``system/`` scopes only.

The grants run in a worker thread (:mod:`.bridge`); their storage hooks call the async
:class:`~.credentials.Credentials` through :func:`.bridge.run`. ``self.server`` is the
:class:`~.server.AuthServer`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import InvalidRequestError, InvalidScopeError, OAuth2Error, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge
from authlib.oidc.core import OpenIDCode

from healthbridge.auth import bridge, state
from healthbridge.auth.credentials import IssuedCode, StoredRefresh
from healthbridge.auth.issuance import Authorization
from healthbridge.auth.keys import ALGORITHM
from healthbridge.security.scopes import parse_scopes

if TYPE_CHECKING:
    from healthbridge.auth.server import AuthServer

CONFIDENTIAL_OR_PUBLIC = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


class S256Only(CodeChallenge):  # type: ignore[misc]
    """PKCE for every client, ``S256`` only (SMART App Launch 2: "code_challenge_method ...
    SHALL be S256"; ``plain`` is refused)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": compare_s256_code_challenge}

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge (S256).")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256.")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'.")
        super().validate_code_verifier(grant, result)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_OR_PUBLIC
    server: AuthServer

    def validate_authorization_request(self) -> str:
        redirect_uri: str = super().validate_authorization_request()
        try:
            self.server.check_smart_request(self.request)
        except OAuth2Error as error:
            error.redirect_uri = redirect_uri
            raise
        return redirect_uri

    def save_authorization_code(self, code: str, request: Any) -> None:
        authorization: Authorization = request.user
        data = request.payload.data
        issued = IssuedCode(
            authorization,
            request.payload.redirect_uri,
            data["code_challenge"],
            data["code_challenge_method"],
            data.get("nonce"),
        )
        bridge.run(self.server.credentials.save_code(code, issued))

    def query_authorization_code(self, code: str, client: Any) -> IssuedCode | None:
        if not isinstance(code, str) or not code or len(code) > 512:
            return None
        return bridge.run(self.server.credentials.redeem_code(code, client.get_client_id()))

    def delete_authorization_code(self, authorization_code: IssuedCode) -> None:
        """Already taken when it was redeemed."""

    def authenticate_user(self, authorization_code: IssuedCode) -> Authorization | None:
        return bridge.run(self.server.still_valid(authorization_code.authorization))


class RefreshTokenGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_OR_PUBLIC
    INCLUDE_NEW_REFRESH_TOKEN = True
    server: AuthServer

    def authenticate_refresh_token(self, refresh_token: str) -> StoredRefresh | None:
        if not refresh_token or len(refresh_token) > 512:
            return None
        return bridge.run(self.server.credentials.rotate_refresh(refresh_token))

    def authenticate_user(self, refresh_token: StoredRefresh) -> Authorization | None:
        return bridge.run(self.server.still_valid(refresh_token.authorization))

    def revoke_old_credential(self, refresh_token: StoredRefresh) -> None:
        """Already taken when it was used."""


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    """SMART Backend Services: ``system/`` scopes for the client itself."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt", "client_secret_basic", "client_secret_post"]
    server: AuthServer

    def validate_token_request(self) -> None:
        super().validate_token_request()
        allowed = self.client.get_allowed_scope(self.request.payload.scope) or ""
        scopes = parse_scopes(allowed)
        kept = [s.text for s in scopes.resources if s.context == "system"]
        if not kept:
            raise InvalidScopeError(
                "Backend services need system/ scopes the client is registered for."
            )
        self.request.scope = " ".join(kept)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client = self.client
        authorization = Authorization(
            grant=state.new_id(),
            subject=client.client_id,
            client_id=client.client_id,
            scope=self.request.scope,
            roles=client.roles,
            backend=True,
        )
        self.request.user = authorization
        token = self.generate_token(
            user=authorization, scope=self.request.scope, include_refresh_token=False
        )
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class SmartOpenIDCode(OpenIDCode):  # type: ignore[misc]
    """id_tokens for the ``openid`` scope (SMART: https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html#scopes-for-requesting-identity-data)."""

    def __init__(self, server: AuthServer) -> None:
        super().__init__(require_nonce=False)
        self._server = server

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return False

    def resolve_client_private_key(self, client: Any) -> Any:
        return self._server.keys.signing_key().private

    def get_client_algorithm(self, client: Any) -> str:
        return ALGORITHM

    def get_encode_header(self, client: Any) -> dict[str, str]:
        return {"alg": ALGORITHM, "kid": self._server.keys.signing_key().kid, "typ": "JWT"}

    def get_client_claims(self, client: Any) -> dict[str, Any]:
        lifetime = int(self._server.config.access_lifetime.total_seconds())
        return {
            "iss": self._server.config.issuer,
            "aud": [client.get_client_id()],
            "exp": int(time.time()) + lifetime,
        }

    def generate_user_info(self, user: Authorization, scope: str) -> dict[str, Any]:
        words = set(scope.split())
        info: dict[str, Any] = {"sub": user.subject}
        if "fhirUser" in words and user.fhir_user:
            info["fhirUser"] = self._server.config.fhir_base + "/" + user.fhir_user
        if "profile" in words and user.name:
            info["name"] = user.name
        return info
