"""The secret key that seals secrets at rest (:mod:`.sealing`): never in the database.

It is the ``secret_key`` setting (``HEALTHBRIDGE_SECRET_KEY``, at least 32 characters), or else
the file ``secret.key`` under the data directory, created on first start with 32 random bytes
(hex) and mode 0600. Older keys, still accepted for opening while values are re-sealed
(``healthbridge secrets rotate``), are the ``secret_keys_previous`` setting
(``HEALTHBRIDGE_SECRET_KEYS_PREVIOUS``, comma-separated).

Every server process and the ``healthbridge users`` / ``secrets`` commands must use the same
key. With PostgreSQL and servers on several hosts, set ``HEALTHBRIDGE_SECRET_KEY`` on every
host: each would otherwise make a ``secret.key`` of its own and fail to open what the others
sealed. Keep a copy of the key apart from the database backups: without it the sealed secrets
cannot be opened.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from healthbridge.infra.sealing import Sealer

KEY_FILE = "secret.key"
MIN_KEY_CHARS = 32


class SecretKeyError(RuntimeError):
    """The key is missing, unreadable, too short, or its file is open to others."""


def _checked(text: str, where: str) -> str:
    text = text.strip()
    if len(text) < MIN_KEY_CHARS:
        raise SecretKeyError(
            f"The secret key in {where} is shorter than {MIN_KEY_CHARS} characters"
        )
    return text


def secret_key(configured: str | None, data_dir: Path, *, create: bool = True) -> str:
    """The key: ``configured`` when given, else the key file under ``data_dir`` (made when
    absent and ``create``). Raises :class:`SecretKeyError` when there is none to use."""
    if configured:
        return _checked(configured, "HEALTHBRIDGE_SECRET_KEY")
    path = data_dir / KEY_FILE
    if not path.exists():
        if not create:
            raise SecretKeyError(
                f"No secret key: set HEALTHBRIDGE_SECRET_KEY or give the data directory holding "
                f"{KEY_FILE} (looked for {path})"
            )
        _create(path)
    if path.stat().st_mode & 0o077:
        raise SecretKeyError(f"{path} must be readable by its owner only (chmod 600 {path})")
    return _checked(path.read_text(encoding="ascii"), str(path))


def load_sealer(
    configured: str | None,
    previous: Iterable[str],
    data_dir: Path,
    *,
    create: bool = True,
) -> Sealer:
    """The sealer of the configured keys: seals with :func:`secret_key`, also opens with the
    ``previous`` keys. Raises :class:`SecretKeyError` for a missing or short key."""
    current = secret_key(configured, data_dir, create=create)
    older = [_checked(key, "HEALTHBRIDGE_SECRET_KEYS_PREVIOUS") for key in previous if key.strip()]
    return Sealer.from_secrets(current, [key for key in older if key != current])


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
