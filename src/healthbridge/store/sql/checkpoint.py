"""WAL checkpoints off the writer thread (https://sqlite.org/wal.html#checkpointing).

By default SQLite checkpoints whenever a commit leaves the WAL over 1,000 pages, inside that
COMMIT, on the writer thread: with transaction Bundles writing tens of megabytes a second that is
at nearly every commit, and it cost as much writer time as the writes themselves (measured with
Synthea bundles: 8.4 s of commits with automatic checkpoints against 4.2 s without, for 7.8 s of
statements). The writer connection therefore turns automatic checkpoints off
(``wal_autocheckpoint=0``) and this thread, with a connection of its own, runs a ``PASSIVE``
checkpoint every :data:`INTERVAL_S`: pages written by many commits in between are copied once,
and neither writers nor readers wait for it. ``journal_size_limit`` truncates the WAL file after
it has been reset, so it does not keep its peak size.

Durability is unchanged: a commit is durable once its WAL frames are synced
(``synchronous=FULL``); checkpoints only move committed pages into the database file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import suppress

import apsw

INTERVAL_S = 1.0
WAL_LIMIT_BYTES = 64 * 1024 * 1024
WRITER_PRAGMAS = ("wal_autocheckpoint=0", f"journal_size_limit={WAL_LIMIT_BYTES}")


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
        try:
            while not self._stopping.wait(self._interval_s):
                self.checkpoint(connection)
            self.checkpoint(connection)
        finally:
            connection.close()

    @staticmethod
    def checkpoint(connection: apsw.Connection) -> None:
        # Busy or locked: the next round tries again; it never blocks writers or readers.
        with suppress(apsw.BusyError, apsw.LockedError):
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def stop(self) -> None:
        """Checkpoint once more and end the thread (waits for it)."""
        self._stopping.set()
        self._thread.join()
