"""Secrets sealed at rest: envelope encryption of the secrets the server keeps in its database
(token signing keys, TOTP secrets, subscription signing secrets), so that a copy of the database
alone does not give them away.

Each value is encrypted with AES-256-GCM (NIST SP 800-38D
https://csrc.nist.gov/pubs/sp/800/38/d/final; the AEAD interface of RFC 5116
https://www.rfc-editor.org/rfc/rfc5116) under a fresh random 96-bit nonce. The *purpose* of the
value (``"signing-key/<kid>"``, ``"totp/<username>"``...) is the associated data: a sealed value
copied into another record, or opened for another purpose, does not open. The result is one
ASCII string::

    sealed:v1:<key id>:<base64url(nonce | ciphertext | tag)>

``v1`` names the format; the key id (16 hex digits, a SHA-256 digest of the AES key, never the
key itself) tells which key sealed it. The AES key is derived from the configured secret key
(``HEALTHBRIDGE_SECRET_KEY``, or ``secret.key`` under the data directory:
:mod:`.secret_keys`) with HKDF-SHA256 (RFC 5869) and a fixed label.

Use::

    sealer = Sealer.from_secrets(current_key_text, previous=[older_key_text])
    stored = sealer.seal("JBSWY3DPEHPK3PXP", "totp/alice")      # 'sealed:v1:3f0c...:...'
    sealer.open(stored, "totp/alice")                             # 'JBSWY3DPEHPK3PXP'
    sealer.open("JBSWY3DPEHPK3PXP", "totp/alice")                 # legacy plaintext: as is
    sealer.is_current(stored)                                     # sealed with the current key?

A sealer seals with its current key and opens with the current or any previous key (key
rotation: the operator moves the old key to ``HEALTHBRIDGE_SECRET_KEYS_PREVIOUS``, and
``healthbridge secrets rotate`` re-seals everything under the new one). Values without the
``sealed:`` prefix are legacy plaintext from before sealing: :meth:`Sealer.open` returns them
unchanged, so existing databases keep working until their values are re-sealed. Failures raise
:class:`SealingError` with what to do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "sealed:"
VERSION = "v1"
NONCE_BYTES = 12  # 96 bits: the nonce length GCM is defined for (SP 800-38D 5.2.1.1)
KEY_ID_HEX = 16
HKDF_INFO = b"healthbridge secrets at rest v1: AES-256-GCM key"
_KEY_ID_LABEL = b"healthbridge secrets at rest v1: key id\x00"


class SealingError(Exception):
    """A sealed value that cannot be opened (unknown key, tampered, malformed)."""


class UnknownKeyError(SealingError):
    """The value was sealed with a key this sealer does not hold."""


@dataclass(frozen=True, slots=True)
class SealingKey:
    """One AES-256-GCM key and its public id."""

    id: str
    aead: AESGCM = field(repr=False)

    @classmethod
    def derive(cls, secret: str | bytes) -> SealingKey:
        """The key derived from a configured secret key (HKDF-SHA256, fixed label)."""
        material = secret.encode() if isinstance(secret, str) else secret
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(material)
        key_id = hashlib.sha256(_KEY_ID_LABEL + key).hexdigest()[:KEY_ID_HEX]
        return cls(key_id, AESGCM(key))


def _associated_data(key_id: str, purpose: str) -> bytes:
    # The header is authenticated too; the key id is hex, so ":" separates unambiguously.
    return f"{PREFIX}{VERSION}:{key_id}:{purpose}".encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sealer:
    """Seals with the current key; opens with the current or a previous one."""

    def __init__(self, current: SealingKey, previous: Iterable[SealingKey] = ()) -> None:
        self._current = current
        self._keys = {key.id: key for key in previous}
        self._keys[current.id] = current

    @classmethod
    def from_secrets(cls, current: str | bytes, previous: Iterable[str | bytes] = ()) -> Sealer:
        """A sealer over configured secret keys (each at least 32 characters; checked by the
        caller, see :func:`.secret_keys.load_sealer`)."""
        return cls(SealingKey.derive(current), [SealingKey.derive(p) for p in previous])

    @property
    def key_id(self) -> str:
        """The id of the key new values are sealed with."""
        return self._current.id

    @property
    def key_ids(self) -> frozenset[str]:
        """The ids of every key this sealer opens with (current and previous)."""
        return frozenset(self._keys)

    @staticmethod
    def is_sealed(value: object) -> bool:
        """Whether ``value`` is a sealed string (of any version), not legacy plaintext."""
        return isinstance(value, str) and value.startswith(PREFIX)

    @staticmethod
    def key_id_of(value: object) -> str | None:
        """The id of the key that sealed ``value``; None for plaintext (or a malformed value)."""
        if not Sealer.is_sealed(value):
            return None
        assert isinstance(value, str)
        parts = value.split(":", 3)
        return parts[2] if len(parts) == 4 and parts[1] == VERSION else None

    def is_current(self, value: object) -> bool:
        """Whether ``value`` is sealed with the current key (nothing to re-seal)."""
        return self.key_id_of(value) == self._current.id

    def seal(self, plaintext: str | bytes, purpose: str) -> str:
        """``plaintext`` (text is UTF-8 encoded) sealed for ``purpose`` with the current key."""
        data = plaintext.encode() if isinstance(plaintext, str) else plaintext
        nonce = os.urandom(NONCE_BYTES)
        key = self._current
        sealed = key.aead.encrypt(nonce, data, _associated_data(key.id, purpose))
        return f"{PREFIX}{VERSION}:{key.id}:{_b64(nonce + sealed)}"

    def open(self, value: str, purpose: str) -> str:
        """The text sealed in ``value`` for ``purpose``; legacy plaintext is returned as is."""
        if not self.is_sealed(value):
            return value
        try:
            return self.open_bytes(value, purpose).decode()
        except UnicodeDecodeError:
            raise SealingError(f"the sealed value for {purpose!r} is not text") from None

    def open_bytes(self, value: str, purpose: str) -> bytes:
        """The bytes sealed in ``value`` for ``purpose`` (legacy plaintext: its UTF-8 bytes)."""
        if not self.is_sealed(value):
            return value.encode()
        parts = value.split(":", 3)
        if len(parts) != 4 or parts[1] != VERSION:
            raise SealingError(
                f"the sealed value for {purpose!r} has an unknown format "
                f"({':'.join(parts[:2])}); it was written by a newer HealthBridge"
            )
        key_id, body = parts[2], parts[3]
        key = self._keys.get(key_id)
        if key is None:
            known = ", ".join(sorted(set(self._keys) - {self._current.id})) or "none"
            raise UnknownKeyError(
                f"the value for {purpose!r} was sealed with key {key_id}, which is not "
                f"configured (current key {self._current.id}, previous: {known}). Set "
                "HEALTHBRIDGE_SECRET_KEY to the key it was sealed with, or add that key to "
                "HEALTHBRIDGE_SECRET_KEYS_PREVIOUS"
            )
        try:
            raw = _unb64(body)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) < NONCE_BYTES + 16:
            raise SealingError(f"the sealed value for {purpose!r} is truncated or malformed")
        try:
            return key.aead.decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], _associated_data(key_id, purpose)
            )
        except InvalidTag:
            raise SealingError(
                f"the sealed value for {purpose!r} does not open with key {key_id}: it was "
                "changed, or copied from another record (it is bound to its purpose)"
            ) from None
