"""The audit chain's HMAC key: never in the database.

The chain (:mod:`healthbridge.store.audit`) is an HMAC-SHA256 over every row, so whoever can
write the database but not read this key cannot forge it after changing a row. The key is the
``audit_key`` setting (``HEALTHBRIDGE_AUDIT_KEY``, at least 32 characters; give every server
process and ``healthbridge audit verify`` the same one), or else the file ``audit.key`` under
the data directory, created on first start with 32 random bytes (hex) and mode 0600.
Losing the key makes the stored log unverifiable; keep a copy apart from the database backups.
"""

from __future__ import annotations

from pathlib import Path

from healthbridge.infra.key_files import MIN_KEY_CHARS, KeyFileError, key_text

KEY_FILE = "audit.key"
__all__ = ["KEY_FILE", "MIN_KEY_CHARS", "AuditKeyError", "audit_key"]


class AuditKeyError(KeyFileError):
    """The key is missing, unreadable, too short, or its file is open to others."""


def audit_key(configured: str | None, data_dir: Path, *, create: bool = True) -> bytes:
    """The key: ``configured`` when given, else the key file under ``data_dir`` (made when
    absent and ``create``). Raises :class:`AuditKeyError` when there is none to use."""
    path = data_dir / KEY_FILE
    text = key_text(
        configured, path, "HEALTHBRIDGE_AUDIT_KEY", "audit key", AuditKeyError, create=create
    )
    return text.encode()
