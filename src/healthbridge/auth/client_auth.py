"""Asymmetric client authentication: ``private_key_jwt`` (RFC 7523 section 2.2,
https://www.rfc-editor.org/rfc/rfc7523#section-2.2, as SMART profiles it:
https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html).

Authlib's :class:`JWTBearerClientAssertion` does the RFC 7523 checks (``iss`` = ``sub`` = the
client id, ``aud`` = the token endpoint, ``exp`` present, ``jti`` once). SMART asks for more,
which this subclass adds:

* the assertion is signed with RS384 or ES384 (Authlib's default list refuses both; HS256,
  ``none`` and every other algorithm are refused here);
* ``kid`` is required and must name a key of the client's registered JWKS (given by value, or
  fetched from the registered ``jwks_uri`` through :mod:`.client_jwks`; an unknown ``kid`` makes
  one forced refetch); a ``jku`` header must equal the registered ``jwks_uri``;
* ``exp`` may be at most five minutes ahead;
* the ``jti`` is remembered until the assertion expires (``add_record``: one process wins), so a
  replayed assertion is ``invalid_client``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7523.client import ASSERTION_TYPE
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from healthbridge.auth.client_jwks import JwksFetcher, JwksFetchError
from healthbridge.auth.clients import Client

ALGORITHMS = ("RS384", "ES384")
MAX_LIFETIME_S = 300
LEEWAY_S = 10

RememberJti = Callable[[str, str, int], bool]
"""(client id, jti, exp) -> True when the jti was new (and is now remembered)."""


def _fail(description: str) -> InvalidClientError:
    return InvalidClientError(description=description)


class PrivateKeyJwt(JWTBearerClientAssertion):  # type: ignore[misc]
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(
        self, audiences: frozenset[str], fetcher: JwksFetcher, remember_jti: RememberJti
    ) -> None:
        super().__init__(validate_jti=True, leeway=LEEWAY_S)
        self._audiences = sorted(audiences)
        self._fetcher = fetcher
        self._remember_jti = remember_jti

    def get_audiences(self) -> list[str]:
        return self._audiences

    def __call__(self, query_client: Callable[[str], Client | None], request: Any) -> Any:
        data = request.form
        assertion = data.get("client_assertion")
        if data.get("client_assertion_type") != ASSERTION_TYPE or not assertion:
            return None
        headers, claims = self.extract_assertion(assertion)
        client_id = claims.get("sub")
        if not isinstance(client_id, str) or claims.get("iss") != client_id:
            raise _fail("The assertion's iss and sub must both be the client id.")
        client = query_client(client_id)
        if client is None:
            raise _fail("The client does not exist on this server.")
        if client.auth_method != self.CLIENT_AUTH_METHOD:
            raise _fail("The client does not authenticate with private_key_jwt.")
        alg = headers.get("alg")
        if alg not in ALGORITHMS:
            raise _fail("Client assertions must be signed with RS384 or ES384.")
        kid = headers.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _fail("The client assertion needs a kid header.")
        jku = headers.get("jku")
        if jku is not None and jku != client.jwks_uri:
            raise _fail("The jku header is not the client's registered JWKS URL.")
        key = self._key(client, kid)
        try:
            token = jwt.decode(assertion, key, algorithms=[alg])
        except JoseError as exc:
            raise _fail("The client assertion's signature is not valid.") from exc
        self.verify_claims(token.claims)
        request.client = client
        return client

    def _key(self, client: Client, kid: str) -> Any:
        try:
            if client.jwks is not None:
                return KeySet.import_key_set(client.jwks).get_by_kid(kid)  # type: ignore[arg-type]
            if client.jwks_uri is None:
                raise _fail("The client has no registered keys.")
            jwks = self._fetcher.get(client.jwks_uri)
            try:
                return KeySet.import_key_set(jwks).get_by_kid(kid)  # type: ignore[arg-type]
            except InvalidKeyIdError:  # the client may have rotated its keys: look again
                jwks = self._fetcher.get(client.jwks_uri, force=True)
                return KeySet.import_key_set(jwks).get_by_kid(kid)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise _fail("No registered key of the client has that kid.") from exc
        except JwksFetchError as exc:
            raise _fail("The client's JWKS could not be fetched.") from exc

    def verify_claims(self, claims: dict[str, Any]) -> None:
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp > time.time() + MAX_LIFETIME_S + LEEWAY_S:
            raise _fail("The assertion's exp must be at most five minutes ahead.")
        super().verify_claims(claims)

    def validate_jti(self, claims: dict[str, Any], jti: Any) -> bool:
        if not isinstance(jti, str) or not jti or len(jti) > 255:
            return False
        return self._remember_jti(str(claims["sub"]), jti, int(claims["exp"]))
