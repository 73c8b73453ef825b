"""Change signals: a cheap, cross-process "something changed" counter for caches of verdicts.

The token verifier must refuse a revoked token on the next request in every server process
(RFC 7009 https://www.rfc-editor.org/rfc/rfc7009 section 2: "the revocation of the token takes
effect immediately"; ../shared/SECURITY.md). Asking the database on every request is correct
but costs a query per request. Instead, writers of verdict-changing records (revocations) bump a
signal after they commit, and readers keep "checked, not revoked" verdicts only while the signal
stays where it was when they checked:

* :class:`LocalSignal` - one process (the memory backend);
* :class:`FileSignal` - processes on one machine sharing a SQLite file: the signal is the
  identity and size of a small file next to the database, which a bump appends one byte to
  (``O_APPEND`` writes are atomic; every bump changes the size, so no two bumps look alike the way
  two touches within one coarse mtime tick would). Reading it is one ``stat`` (about 1 us);
* :class:`~healthbridge.store.sql.notify_signal.NotifySignal` - PostgreSQL ``LISTEN/NOTIFY``.

``current()`` returning None means "cannot tell" (e.g. the PostgreSQL listener is reconnecting):
the reader must then ask the database. A reader takes ``current()`` *before* it queries, so a
bump that races with its query makes the next request query again.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Protocol

MAX_SIGNAL_FILE = 64 * 1024
"""A signal file this size is replaced by an empty one (a new inode: a change all the same)."""


class ChangeSignal(Protocol):
    def current(self) -> int | None:
        """The signal now; None when it cannot be trusted (ask the database)."""
        ...

    async def changed(self) -> None:
        """Tell every process; call after the change has committed."""
        ...

    async def close(self) -> None: ...


class LocalSignal:
    """A counter in this process."""

    def __init__(self) -> None:
        self._count = 0

    def current(self) -> int | None:
        return self._count

    async def changed(self) -> None:
        self._count += 1

    async def close(self) -> None:
        return None


class FileSignal:
    """The signal as the (inode, size) of ``path``, shared by processes on one machine."""

    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)

    def current(self) -> int | None:
        try:
            found = os.stat(self._path)
        except OSError:
            return None
        return hash((found.st_ino, found.st_size, found.st_mtime_ns))

    async def changed(self) -> None:
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, b".")
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if size >= MAX_SIGNAL_FILE:
            fresh = self._path.with_name(f"{self._path.name}.{os.getpid()}.tmp")
            fresh.write_bytes(b"")
            with contextlib.suppress(OSError):
                os.replace(fresh, self._path)

    async def close(self) -> None:
        return None
