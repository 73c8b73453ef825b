"""The authorization server's durable state: which record kinds it keeps, and how secrets are
turned into keys (RFC 6819 https://www.rfc-editor.org/rfc/rfc6819#section-5.1.4.1.3: store
hashes of tokens and codes, not the values).

Every record lives in the repository's :class:`~healthbridge.store.records.RecordStore`; codes,
refresh tokens, sessions and client secrets are stored under (or as) SHA-256 digests, so a copy
of the database does not hold a usable credential. Passwords get Argon2id (:mod:`.passwords`).
"""

from __future__ import annotations

import secrets

from healthbridge.store.records import RecordStore

CLIENT = "client"  # key: client_id
USER = "user"  # key: username
SIGNING_KEY = "signing-key"  # key: rotation period number, zero-padded
CODE = "code"  # key: digest of the authorization code; one-time
CODE_USED = "code-used"  # key: digest of a redeemed code -> its grant (reuse revokes it)
REFRESH = "refresh"  # key: digest of the refresh token; one-time (rotation)
REFRESH_USED = "refresh-used"  # key: digest of a rotated refresh token -> its grant
REVOKED_TOKEN = "revoked-token"  # noqa: S105 - key: access token jti
REVOKED_GRANT = "revoked-grant"  # key: grant id
DISABLED_CLIENT = "disabled-client"  # key: client_id, while the client is disabled
DISABLED_USER = "disabled-user"  # key: username, while the account is disabled
ASSERTION_JTI = "assertion-jti"  # key: client_id + " " + jti of a client assertion
SESSION = "session"  # key: digest of the browser session id
PENDING_LOGIN = "pending-login"  # key: digest of the id of a sign-in awaiting its TOTP code
TOTP_USED = "totp-used"  # key: username + " " + time step: a TOTP code is accepted once
LAUNCH = "launch"  # key: the EHR launch id (opaque, random)


def new_id() -> str:
    """A random identifier that is not a secret (grant ids, jti)."""
    return secrets.token_hex(16)


def revocation_keys(grant: str | None, client_id: str, subject: str) -> tuple[tuple[str, str], ...]:
    """The records any one of which revokes what was authorized under ``grant`` for
    ``client_id`` and ``subject`` (a username, or the client itself for backend services): the
    grant revoked, the client disabled, the user disabled. Looked up in one ``any_record``."""
    keys = [(DISABLED_CLIENT, client_id)]
    if grant is not None:
        keys.append((REVOKED_GRANT, grant))
    if subject != client_id:
        keys.append((DISABLED_USER, subject))
    return tuple(keys)


async def mark_disabled(records: RecordStore, kind: str, key: str, disabled: bool) -> None:
    """Keep the ``kind`` record (:data:`DISABLED_CLIENT`, :data:`DISABLED_USER`) in step with an
    account's ``disabled`` flag and tell every process (tokens of a disabled account stop at
    once, and so do the subscriptions made with them)."""
    if disabled:
        await records.put_record(kind, key, {})
    else:
        await records.delete_record(kind, key)
    await records.signal.changed()
