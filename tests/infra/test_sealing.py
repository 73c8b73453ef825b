"""Secrets sealed at rest (healthbridge.infra.sealing): AES-256-GCM (NIST SP 800-38D) with the
purpose as associated data (RFC 5116 section 2.1), a random 96-bit nonce per value, the key id
in a ``sealed:v1:`` header; legacy plaintext passes through."""

from __future__ import annotations

import base64

import pytest

from healthbridge.infra.sealing import (
    NONCE_BYTES,
    Sealer,
    SealingError,
    SealingKey,
    UnknownKeyError,
)

KEY_A = "key A: at least thirty-two characters long"
KEY_B = "key B: at least thirty-two characters long"


def _body(sealed: str) -> bytes:
    text = sealed.split(":", 3)[3]
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _with_body(sealed: str, body: bytes) -> str:
    head = sealed.rsplit(":", 1)[0]
    return f"{head}:{base64.urlsafe_b64encode(body).rstrip(b'=').decode()}"


def test_round_trip_of_text_and_bytes() -> None:
    sealer = Sealer.from_secrets(KEY_A)
    sealed = sealer.seal("JBSWY3DPEHPK3PXP", "totp/alice")
    assert sealed.startswith(f"sealed:v1:{sealer.key_id}:")
    assert sealed.isascii() and "JBSWY3DPEHPK3PXP" not in sealed
    assert sealer.open(sealed, "totp/alice") == "JBSWY3DPEHPK3PXP"
    raw = bytes(range(256))
    assert sealer.open_bytes(sealer.seal(raw, "blob/1"), "blob/1") == raw
    assert sealer.open(sealer.seal("", "empty"), "empty") == ""
    assert sealer.open(sealer.seal("naïve ✓", "unicode"), "unicode") == "naïve ✓"


def test_every_value_gets_its_own_nonce() -> None:
    sealer = Sealer.from_secrets(KEY_A)
    one, two = (sealer.seal("same secret", "p") for _ in range(2))
    assert one != two
    assert _body(one)[:NONCE_BYTES] != _body(two)[:NONCE_BYTES]
    # nonce (12) + ciphertext (as long as the plaintext) + tag (16)
    assert len(_body(one)) == NONCE_BYTES + len("same secret") + 16


def test_recognising_sealed_values() -> None:
    sealer = Sealer.from_secrets(KEY_A)
    sealed = sealer.seal("s", "p")
    assert Sealer.is_sealed(sealed) and sealer.is_current(sealed)
    assert Sealer.key_id_of(sealed) == sealer.key_id
    for plain in ("JBSWY3DPEHPK3PXP", "", None, {"kty": "RSA"}, 42):
        assert not Sealer.is_sealed(plain) and Sealer.key_id_of(plain) is None
        assert not sealer.is_current(plain)


def test_the_key_id_is_a_digest_not_the_key() -> None:
    a, b = SealingKey.derive(KEY_A), SealingKey.derive(KEY_B)
    assert a.id != b.id and len(a.id) == 16 and int(a.id, 16) >= 0
    assert SealingKey.derive(KEY_A).id == a.id  # the same secret, the same key (HKDF)
    assert a.id not in KEY_A and a.id not in KEY_A.encode().hex()
    assert repr(a) == f"SealingKey(id={a.id!r})"  # the key itself never shows


def test_a_value_sealed_for_one_purpose_does_not_open_for_another() -> None:
    """The purpose is the associated data: a value copied to another record does not open."""
    sealer = Sealer.from_secrets(KEY_A)
    sealed = sealer.seal("alice's secret", "totp/alice")
    with pytest.raises(SealingError, match="copied from another record"):
        sealer.open(sealed, "totp/mallory")
    with pytest.raises(SealingError):
        sealer.open(sealed, "signing-key/alice")


def test_tampered_values_do_not_open() -> None:
    sealer = Sealer.from_secrets(KEY_A)
    sealed = sealer.seal("secret", "p")
    body = bytearray(_body(sealed))
    for position in (0, NONCE_BYTES, len(body) - 1):  # nonce, ciphertext, tag
        changed = bytearray(body)
        changed[position] ^= 0x01
        with pytest.raises(SealingError, match="does not open"):
            sealer.open(_with_body(sealed, bytes(changed)), "p")
    with pytest.raises(SealingError, match="truncated or malformed"):
        sealer.open(_with_body(sealed, bytes(body[:20])), "p")
    with pytest.raises(SealingError, match="truncated or malformed"):
        sealer.open(sealed.rsplit(":", 1)[0] + ":***", "p")
    with pytest.raises(SealingError, match="unknown format"):
        sealer.open(sealed.replace("sealed:v1:", "sealed:v9:"), "p")


def test_an_unknown_key_id_names_what_to_do() -> None:
    sealed = Sealer.from_secrets(KEY_A).seal("secret", "totp/alice")
    other = Sealer.from_secrets(KEY_B)
    with pytest.raises(UnknownKeyError) as raised:
        other.open(sealed, "totp/alice")
    message = str(raised.value)
    assert SealingKey.derive(KEY_A).id in message and other.key_id in message
    assert "HEALTHBRIDGE_SECRET_KEYS_PREVIOUS" in message and "'totp/alice'" in message
    # A forged header naming a configured key does not help: the tag is checked with it.
    forged = sealed.replace(SealingKey.derive(KEY_A).id, other.key_id)
    with pytest.raises(SealingError, match="does not open"):
        other.open(forged, "totp/alice")


def test_previous_keys_open_and_the_current_key_seals() -> None:
    old = Sealer.from_secrets(KEY_A)
    sealed = old.seal("secret", "p")
    rotated = Sealer.from_secrets(KEY_B, previous=[KEY_A])
    assert rotated.open(sealed, "p") == "secret"
    assert not rotated.is_current(sealed)
    resealed = rotated.seal(rotated.open(sealed, "p"), "p")
    assert rotated.is_current(resealed) and Sealer.key_id_of(resealed) == rotated.key_id
    assert rotated.key_ids == {old.key_id, rotated.key_id}
    assert Sealer.from_secrets(KEY_B).open(resealed, "p") == "secret"  # B alone is enough now
    with pytest.raises(UnknownKeyError):
        old.open(resealed, "p")


def test_legacy_plaintext_passes_through() -> None:
    """Values stored before sealing (no prefix) are returned as they are."""
    sealer = Sealer.from_secrets(KEY_A)
    assert sealer.open("JBSWY3DPEHPK3PXP", "totp/alice") == "JBSWY3DPEHPK3PXP"
    assert sealer.open_bytes("plain", "p") == b"plain"
    assert sealer.open("", "p") == ""
