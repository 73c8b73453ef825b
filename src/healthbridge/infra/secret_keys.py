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

from collections.abc import Iterable
from pathlib import Path

from healthbridge.infra.key_files import MIN_KEY_CHARS, KeyFileError, checked, key_text
from healthbridge.infra.sealing import Sealer

KEY_FILE = "secret.key"
__all__ = ["KEY_FILE", "MIN_KEY_CHARS", "SecretKeyError", "load_sealer", "secret_key"]
WHAT = "secret key"


class SecretKeyError(KeyFileError):
    """The key is missing, unreadable, too short, or its file is open to others."""


def secret_key(configured: str | None, data_dir: Path, *, create: bool = True) -> str:
    """The key: ``configured`` when given, else the key file under ``data_dir`` (made when
    absent and ``create``). Raises :class:`SecretKeyError` when there is none to use."""
    path = data_dir / KEY_FILE
    return key_text(
        configured, path, "HEALTHBRIDGE_SECRET_KEY", WHAT, SecretKeyError, create=create
    )


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
    setting = "HEALTHBRIDGE_SECRET_KEYS_PREVIOUS"
    older = [checked(key, setting, WHAT, SecretKeyError) for key in previous if key.strip()]
    return Sealer.from_secrets(current, [key for key in older if key != current])
