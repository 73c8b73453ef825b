"""The audit chain's HMAC key: never in the database.

The chain (:mod:`healthbridge.store.audit`) is an HMAC-SHA256 over every row, so whoever can
write the database but not read this key cannot forge it after changing a row. The key is the
``audit_key`` setting (``HEALTHBRIDGE_AUDIT_KEY``, at least 32 characters; give every server
process and ``healthbridge audit verify`` the same one), or else the file ``audit.key`` under
the data directory, created on first start with 32 random bytes (hex) and mode 0600.
Losing the key makes the stored log unverifiable; keep a copy apart from the database backups.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

KEY_FILE = "audit.key"
MIN_KEY_CHARS = 32


class AuditKeyError(RuntimeError):
    """The key is missing, unreadable, too short, or its file is open to others."""


def _checked(text: str, where: str) -> bytes:
    text = text.strip()
    if len(text) < MIN_KEY_CHARS:
        raise AuditKeyError(f"The audit key in {where} is shorter than {MIN_KEY_CHARS} characters")
    return text.encode()


def audit_key(configured: str | None, data_dir: Path, *, create: bool = True) -> bytes:
    """The key: ``configured`` when given, else the key file under ``data_dir`` (made when
    absent and ``create``). Raises :class:`AuditKeyError` when there is none to use."""
    if configured:
        return _checked(configured, "HEALTHBRIDGE_AUDIT_KEY")
    path = data_dir / KEY_FILE
    if not path.exists():
        if not create:
            raise AuditKeyError(
                f"No audit key: set HEALTHBRIDGE_AUDIT_KEY or give the data directory holding "
                f"{KEY_FILE} (looked for {path})"
            )
        _create(path)
    if path.stat().st_mode & 0o077:
        raise AuditKeyError(f"{path} must be readable by its owner only (chmod 600 {path})")
    return _checked(path.read_text(encoding="ascii"), str(path))


def _create(path: Path) -> None:
    """Write a new random key, mode 0600 from the start, and publish it whole with a hard link;
    when another server process publishes first, its key is the one used."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(secrets.token_hex(32) + "\n")
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
    finally:
        draft.unlink(missing_ok=True)
