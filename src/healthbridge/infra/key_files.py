"""Keys kept apart from the database: a setting, or else a file under the data directory made
on first start (32 random bytes as hex, mode 0600 from the start, published whole with a hard
link so that of several server processes starting at once all use the first one's key).

Used for the audit chain's HMAC key (:mod:`healthbridge.audit.keys`) and the key that seals
secrets at rest (:mod:`healthbridge.infra.secret_keys`). A key shorter than
:data:`MIN_KEY_CHARS`, or a key file others may read, is refused with a message saying what to
do.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

MIN_KEY_CHARS = 32


class KeyFileError(RuntimeError):
    """The key is missing, unreadable, too short, or its file is open to others."""


def checked(text: str, where: str, what: str, error: type[KeyFileError]) -> str:
    """``text`` stripped; ``error`` when it is too short to be ``what`` (named by ``where``)."""
    text = text.strip()
    if len(text) < MIN_KEY_CHARS:
        raise error(f"The {what} in {where} is shorter than {MIN_KEY_CHARS} characters")
    return text


def key_text(
    configured: str | None,
    path: Path,
    setting: str,
    what: str,
    error: type[KeyFileError],
    *,
    create: bool = True,
) -> str:
    """The key: ``configured`` (the value of ``setting``) when given, else the file ``path``
    (made when absent and ``create``). Raises ``error`` when there is none to use."""
    if configured:
        return checked(configured, setting, what, error)
    if not path.exists():
        if not create:
            raise error(
                f"No {what}: set {setting} or give the data directory holding {path.name} "
                f"(looked for {path})"
            )
        _create(path)
    if path.stat().st_mode & 0o077:
        raise error(f"{path} must be readable by its owner only (chmod 600 {path})")
    return checked(path.read_text(encoding="ascii"), str(path), what, error)


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(secrets.token_hex(32) + "\n")
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)  # another process may have published first: its key wins
    finally:
        draft.unlink(missing_ok=True)
