"""Registered client applications (RFC 7591 client metadata,
https://www.rfc-editor.org/rfc/rfc7591#section-2, as SMART uses it:
https://hl7.org/fhir/smart-app-launch/client-authentication.html).

A client is public (``token_endpoint_auth_method`` ``none``, PKCE only), confidential with a
shared secret (``client_secret_basic`` / ``client_secret_post``; the secret is random and only
its SHA-256 is stored) or confidential with keys (``private_key_jwt``: a JWKS given by value or
by URL). Redirect URIs are matched exactly. The client's ``scope`` bounds what it may ask for:
:func:`permitted_scope` keeps the requested scopes one of its registered scopes covers.
:class:`Client` offers the methods Authlib's ``ClientMixin`` defines.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from healthbridge.auth import state
from healthbridge.infra import tokens
from healthbridge.security.scopes import InvalidScope, ResourceScope, parse_scopes
from healthbridge.store.records import Record, RecordStore

AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post", "private_key_jwt")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_REDIRECT_URIS = 20


class ClientError(ValueError):
    """Client metadata that cannot be accepted (RFC 7591 ``invalid_client_metadata``)."""


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    name: str
    auth_method: str = "none"
    redirect_uris: tuple[str, ...] = ()
    grant_types: frozenset[str] = frozenset({"authorization_code"})
    scope: str = ""
    secret_hash: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    roles: frozenset[str] = frozenset()
    disabled: bool = False
    version: int = 0

    # --- Authlib's ClientMixin -----------------------------------------------------------------

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None  # SMART requires redirect_uri in every authorization request

    def get_allowed_scope(self, scope: str | None) -> str | None:
        if not scope:
            return None
        try:
            return permitted_scope(scope, self.scope) or None
        except InvalidScope:
            return None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        if self.secret_hash is None:
            return False
        given = hashlib.sha256(client_secret.encode()).hexdigest()
        return hmac.compare_digest(given, self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types

    # -------------------------------------------------------------------------------------------

    @property
    def public(self) -> bool:
        return self.auth_method == "none"

    def value(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "auth_method": self.auth_method,
            "redirect_uris": list(self.redirect_uris),
            "grant_types": sorted(self.grant_types),
            "scope": self.scope,
            "secret_hash": self.secret_hash,
            "jwks": self.jwks,
            "jwks_uri": self.jwks_uri,
            "roles": sorted(self.roles),
            "disabled": self.disabled,
        }

    def metadata(self) -> dict[str, Any]:
        """The client's registration as RFC 7591 metadata (no secret)."""
        shown: dict[str, Any] = {
            "client_id": self.client_id,
            "client_name": self.name,
            "token_endpoint_auth_method": self.auth_method,
            "redirect_uris": list(self.redirect_uris),
            "grant_types": sorted(self.grant_types),
            "scope": self.scope,
        }
        if self.jwks is not None:
            shown["jwks"] = self.jwks
        if self.jwks_uri is not None:
            shown["jwks_uri"] = self.jwks_uri
        if self.roles:
            shown["roles"] = sorted(self.roles)
        if self.disabled:
            shown["disabled"] = True
        return shown


def _client(record: Record) -> Client:
    v = record.value
    return Client(
        client_id=record.key,
        name=v.get("name") or record.key,
        auth_method=v.get("auth_method") or "none",
        redirect_uris=tuple(v.get("redirect_uris") or ()),
        grant_types=frozenset(v.get("grant_types") or ()),
        scope=v.get("scope") or "",
        secret_hash=v.get("secret_hash"),
        jwks=v.get("jwks"),
        jwks_uri=v.get("jwks_uri"),
        roles=frozenset(v.get("roles") or ()),
        disabled=bool(v.get("disabled")),
        version=record.version,
    )


def _covers(allowed: ResourceScope, requested: ResourceScope) -> bool:
    return (
        allowed.context == requested.context
        and allowed.resource_type in ("*", requested.resource_type)
        and requested.permissions <= allowed.permissions
        and (not allowed.filters or allowed.filters == requested.filters)
    )


def permitted_scope(requested: str, allowed: str) -> str:
    """The requested scopes (in their order) that the client's registered ``allowed`` scopes
    cover; a resource scope is covered by one of the same context whose type is the same or
    ``*``, whose permissions include its permissions and which has no filters or the same.
    InvalidScope when ``requested`` is malformed."""
    wanted = parse_scopes(requested)
    bounds = parse_scopes(allowed)
    words = set(allowed.split())
    kept: list[str] = []
    for word in dict.fromkeys(requested.split()):
        resource = next((s for s in wanted.resources if s.text == word), None)
        if resource is not None:
            if any(_covers(a, resource) for a in bounds.resources):
                kept.append(word)
        elif word in words and word not in wanted.unknown:
            kept.append(word)
    return " ".join(kept)


def _check_redirect_uri(uri: str) -> None:
    parts = urlsplit(uri)
    if not parts.scheme or parts.fragment or len(uri) > 2000:
        raise ClientError(f"redirect URI {uri!r} must be absolute, without a fragment")
    host = (parts.hostname or "").lower()
    loopback = host in ("localhost", "127.0.0.1", "::1")
    if parts.scheme == "https" or (parts.scheme == "http" and loopback):
        if not host:
            raise ClientError(f"redirect URI {uri!r} has no host")
        return
    if (
        parts.scheme in ("http", "javascript", "data", "file", "vbscript")
        or "." not in parts.scheme
    ):
        raise ClientError(
            f"redirect URI {uri!r} must use https (http only on a loopback host) or a "
            "private-use scheme such as com.example.app (RFC 8252)"
        )


def _check_jwks(jwks: dict[str, Any]) -> None:
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys:
        raise ClientError("jwks must be a JSON Web Key Set with at least one key")
    for key in keys:
        if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC") or not key.get("kid"):
            raise ClientError("each key of jwks must be an RSA or EC public key with a kid")
        if any(p in key for p in ("d", "p", "q", "dp", "dq", "qi")):
            raise ClientError("jwks must hold public keys only (a private key was given)")
    try:
        KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError) as exc:
        raise ClientError(f"jwks is not a usable key set ({exc})") from None


def new_client_id() -> str:
    """A generated client id: random hex, so it always meets :data:`CLIENT_ID` (a URL-safe
    token starts with ``-`` or ``_`` one time in 32, which the id rules refuse)."""
    return state.new_id()


def check_client(client: Client) -> None:
    """ClientError when the metadata is inconsistent or unsafe."""
    if not CLIENT_ID.fullmatch(client.client_id):
        raise ClientError("a client id is 1-64 letters, digits and . _ -")
    if not client.name.strip() or len(client.name) > 200:
        raise ClientError("a client needs a name of at most 200 characters")
    if client.auth_method not in AUTH_METHODS:
        raise ClientError(f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}")
    unknown = client.grant_types - set(GRANT_TYPES)
    if unknown or not client.grant_types:
        raise ClientError(f"grant_types must be some of {', '.join(GRANT_TYPES)}")
    if "client_credentials" in client.grant_types and client.public:
        raise ClientError("client_credentials needs a confidential client (a secret or keys)")
    if "authorization_code" in client.grant_types and not client.redirect_uris:
        raise ClientError("authorization_code needs at least one redirect URI")
    if len(client.redirect_uris) > MAX_REDIRECT_URIS:
        raise ClientError(f"at most {MAX_REDIRECT_URIS} redirect URIs")
    for uri in client.redirect_uris:
        _check_redirect_uri(uri)
    if client.auth_method == "private_key_jwt" and (client.jwks is None) == (
        client.jwks_uri is None
    ):
        raise ClientError("private_key_jwt needs exactly one of jwks and jwks_uri")
    if client.jwks is not None:
        _check_jwks(client.jwks)
    if client.jwks_uri is not None and urlsplit(client.jwks_uri).scheme not in ("http", "https"):
        raise ClientError("jwks_uri must be an http(s) URL")
    try:
        parse_scopes(client.scope)
    except InvalidScope as exc:
        raise ClientError(str(exc)) from None


class ClientStore:
    def __init__(self, records: RecordStore) -> None:
        self._records = records

    async def get(self, client_id: str) -> Client | None:
        """The client, disabled or not; None when unknown."""
        if not CLIENT_ID.fullmatch(client_id):
            return None
        record = await self._records.get_record(state.CLIENT, client_id)
        return None if record is None else _client(record)

    async def active(self, client_id: str) -> Client | None:
        client = await self.get(client_id)
        return None if client is None or client.disabled else client

    async def all(self) -> list[Client]:
        found: list[Client] = []
        after: str | None = None
        while True:
            page = await self._records.records(state.CLIENT, after_key=after, limit=500)
            found += [_client(r) for r in page]
            if len(page) < 500:
                return found
            after = page[-1].key

    async def register(self, client: Client) -> tuple[Client, str | None]:
        """Store a new client; a generated id when ``client_id`` is empty. Returns the client
        and its secret (shown once; only its digest is kept) for secret-based methods."""
        if not client.client_id:
            client = replace(client, client_id=new_client_id())
        secret = None
        if client.auth_method in ("client_secret_basic", "client_secret_post"):
            secret = tokens.new_secret(32)
            client = replace(client, secret_hash=hashlib.sha256(secret.encode()).hexdigest())
        check_client(client)
        if not await self._records.add_record(state.CLIENT, client.client_id, client.value()):
            raise ClientError(f"the client id {client.client_id!r} is taken")
        stored = await self.get(client.client_id)
        assert stored is not None
        return stored, secret

    async def update(self, client_id: str, **changes: Any) -> Client:
        for _ in range(10):
            current = await self.get(client_id)
            if current is None:
                raise ClientError(f"there is no client {client_id!r}")
            changed = replace(current, **changes)
            check_client(changed)
            written = await self._records.put_record(
                state.CLIENT, client_id, changed.value(), if_version=current.version
            )
            if written is not None:
                if changed.disabled != current.disabled:
                    await state.mark_disabled(
                        self._records, state.DISABLED_CLIENT, client_id, changed.disabled
                    )
                return _client(written)
        raise ClientError(f"the client {client_id!r} keeps changing; try again")

    async def rotate_secret(self, client_id: str) -> str:
        """A new secret for a secret-based client (the old one stops working at once)."""
        current = await self.get(client_id)
        if current is None or current.secret_hash is None:
            raise ClientError(f"{client_id!r} is not a client with a secret")
        secret = tokens.new_secret(32)
        await self.update(client_id, secret_hash=hashlib.sha256(secret.encode()).hexdigest())
        return secret
