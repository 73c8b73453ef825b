"""WAL checkpoints off the writer thread (https://sqlite.org/wal.html#checkpointing).

By default SQLite checkpoints whenever a commit leaves the WAL over 1,000 pages, inside that
COMMIT, on the writer thread: with transaction Bundles writing tens of megabytes a second that is
at nearly every commit, and it cost as much writer time as the writes themselves (measured with
Synthea bundles: 8.4 s of commits with automatic checkpoints against 4.2 s without, for 7.8 s of
statements). The writer connection therefore turns automatic checkpoints off
(``wal_autocheckpoint=0``) and this thread, with a connection of its own, runs a ``PASSIVE``
checkpoint every :data:`INTERVAL_S`: pages written by many commits in between are copied once,
and neither writers nor readers wait for it; a large WAL is then reset by a ``RESTART``
checkpoint (see :meth:`Checkpointer.checkpoint`). ``journal_size_limit`` truncates the WAL file
after a reset, so it does not keep its peak size.

Durability is unchanged: a commit is durable once its WAL frames are synced
(``synchronous=FULL``); checkpoints only move committed pages into the database file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import suppress

import apsw

INTERVAL_S = 1.0
RESTART_FRAMES = 16_384
"""WAL pages (64 MB) past which a checkpoint also resets the WAL."""
RESTART_WAIT_MS = 5_000
WAL_LIMIT_BYTES = 64 * 1024 * 1024
WRITER_CACHE_KIB = 64 * 1024
WRITER_PRAGMAS = (
    "wal_autocheckpoint=0",
    f"journal_size_limit={WAL_LIMIT_BYTES}",
    # A transaction Bundle dirties thousands of pages; with SQLite's default 2 MB cache they
    # spill to the WAL (and are written again) before the commit. Measured: 15% less time in
    # the statements of Synthea bundles with 64-128 MB.
    f"cache_size=-{WRITER_CACHE_KIB}",
)


class Checkpointer:
    """A daemon thread checkpointing one database file until :meth:`stop`."""

    def __init__(self, open_connection: Callable[[], apsw.Connection], interval_s: float) -> None:
        self._open = open_connection
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="healthbridge-sqlite-checkpoint", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        connection = self._open()
        connection.set_busy_timeout(RESTART_WAIT_MS)
        try:
            while not self._stopping.wait(self._interval_s):
                self.checkpoint(connection)
            self.checkpoint(connection)
        finally:
            connection.close()

    @staticmethod
    def checkpoint(connection: apsw.Connection) -> None:
        """Copy what the WAL holds without blocking anyone; when it has grown past
        :data:`RESTART_FRAMES`, finish with a ``RESTART`` checkpoint, which waits (up to
        :data:`RESTART_WAIT_MS`) for the current writer and makes the next one start the WAL
        afresh. (With writers always busy, a passive checkpoint never catches up with the end of
        the WAL, and the WAL was never reset: it grew past a gigabyte during a Synthea load.)
        Busy or locked: the next round tries again."""
        with suppress(apsw.BusyError, apsw.LockedError):
            _, frames, _ = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
            if int(frames or 0) > RESTART_FRAMES:
                connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()

    def stop(self) -> None:
        """Checkpoint once more and end the thread (waits for it)."""
        self._stopping.set()
        self._thread.join()
