"""Group commit on SQLite: one writer thread, one COMMIT (one fsync) for a batch of changes.

With ``synchronous=FULL`` every COMMIT waits for an fsync of the WAL (https://sqlite.org/wal.html),
which bounds one-change-per-transaction writes at the disk's fsync rate. The writer thread
therefore takes every single change that is queued when it becomes free (up to
:data:`MAX_BATCH`; it never waits for more) and runs them in one ``BEGIN IMMEDIATE`` transaction
(https://sqlite.org/lang_transaction.html), each inside its own ``SAVEPOINT``
(https://sqlite.org/lang_savepoint.html). A change that fails is rolled back to its savepoint and
its error goes to its own caller only; the others go on and later changes see earlier ones. After
the one COMMIT returns, every caller gets its result. When the COMMIT, or the transaction as a
whole, fails, every change of the batch fails with ``Unavailable`` and none is acknowledged:
acknowledged means durable, and all or nothing, as https://hl7.org/fhir/R4/http.html requires.
Nothing a change raises (an Exception or not) stops the thread, which serves every write of the
process: it goes to that change's caller.

A unit of work (a FHIR transaction, several statements with awaits in between) claims the thread
exclusively: it runs between batches, its statements one by one, until its last step.

Each call is one hop: the event loop puts a closure and a future on a queue; the thread resolves
the futures of a batch with one ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import apsw

from healthbridge.fhir.errors import Unavailable
from healthbridge.store.sql.dialects import SQLITE

T = TypeVar("T")
MAX_BATCH = 256
"""Most single changes in one transaction (bounds the latency a batch adds to its first change)."""

Call = Callable[[apsw.Connection], Any]
Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]
Kind = Literal["change", "step", "bare", "commit", "rollback"]
"""A single change (batched); a statement of a unit of work (inside its transaction); a call
outside any transaction; the two ways a unit of work ends."""


@dataclass(slots=True)
class _Op:
    call: Call
    future: asyncio.Future[Any]
    kind: Kind = "change"


@dataclass(slots=True)
class _Stop:
    future: asyncio.Future[None]


def _nothing(connection: apsw.Connection) -> None:
    return None


@dataclass(slots=True)
class Unit:
    """An exclusive claim on the writer: its steps run in order, with no batch in between.

    The thread starts the unit's transaction (``BEGIN IMMEDIATE``) with the first statement that
    runs, so a unit that writes nothing costs nothing. A statement whose caller was cancelled
    before its turn does not run.
    """

    steps: queue.SimpleQueue[_Op] = field(default_factory=queue.SimpleQueue)

    def run(self, call: Callable[[apsw.Connection], T]) -> asyncio.Future[T]:
        """``call(connection)`` inside the unit's transaction."""
        return self._put(call, "step")

    def run_bare(self, call: Callable[[apsw.Connection], T]) -> asyncio.Future[T]:
        """``call(connection)`` outside any transaction (before the unit's first statement)."""
        return self._put(call, "bare")

    def finish(self, *, commit: bool) -> asyncio.Future[None]:
        """End the unit: COMMIT (if it began) or ROLLBACK. Queued at once, so the unit ends even
        if its caller is cancelled while awaiting this; a COMMIT cancelled before its turn rolls
        back instead."""
        return self._put(_nothing, "commit" if commit else "rollback")

    def _put(self, call: Call, kind: Kind) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        self.steps.put(_Op(call, future, kind))
        return future


def rollback(connection: apsw.Connection) -> None:
    # Never raises: it runs while another error propagates; begin() checks again anyway.
    with suppress(apsw.Error):
        if connection.in_transaction:
            connection.execute("ROLLBACK")


def begin(connection: apsw.Connection) -> None:
    rollback(connection)  # whatever a failed batch or unit of work left open
    connection.execute("BEGIN IMMEDIATE")


def commit(connection: apsw.Connection) -> None:
    try:
        connection.execute("COMMIT")
    except BaseException:
        rollback(connection)
        raise


def _settle(outcomes: list[Outcome]) -> None:
    """On the event loop: hand each caller its result (unless it stopped waiting)."""
    for future, result, error in outcomes:
        if future.done():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class GroupCommitWriter:
    """The writer thread of one SQLite database file and the queue that feeds it."""

    def __init__(self, connection: apsw.Connection, where: str) -> None:
        self._connection = connection
        self._where = where
        self._queue: queue.SimpleQueue[_Op | Unit | _Stop] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._serve, name="healthbridge-sqlite-writer", daemon=True
        )
        self._thread.start()

    def submit(self, call: Callable[[apsw.Connection], T]) -> asyncio.Future[T]:
        """Run ``call(connection)`` as one change of the next batch; durable when resolved."""
        future = asyncio.get_running_loop().create_future()
        self._queue.put(_Op(call, future))
        return future

    def claim(self) -> Unit:
        """A unit of work; the thread serves it once the changes queued before it are done."""
        unit = Unit()
        self._queue.put(unit)
        return unit

    def stop(self) -> asyncio.Future[None]:
        """Close the connection after everything queued so far; resolved when closed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put(_Stop(future))
        return future

    # --- on the writer thread -------------------------------------------------------------

    def _serve(self) -> None:
        held: Unit | _Stop | None = None
        while True:
            item = held or self._queue.get()
            held = None
            if isinstance(item, _Stop):
                self._close(item)
                return
            if isinstance(item, Unit):
                self._serve_unit(item)
                continue
            batch = [item]
            while len(batch) < MAX_BATCH and held is None:
                try:
                    queued = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(queued, _Op):
                    batch.append(queued)
                else:
                    held = queued  # served right after this batch
            self._run_batch(batch)

    def _run_batch(self, batch: list[_Op]) -> None:
        ops = [op for op in batch if not op.future.cancelled()]
        if not ops:
            return
        try:
            begin(self._connection)
        except apsw.Error as exc:  # locked by another process past the busy timeout, I/O error
            self._resolve([(op.future, None, self._mapped(exc)) for op in ops])
            return
        try:
            outcomes = [self._in_savepoint(op) for op in ops]
            commit(self._connection)
        except BaseException as exc:  # (never out of the thread: it would stop every write)
            rollback(self._connection)
            outcomes = [(op.future, None, self._not_committed(exc)) for op in ops]
        self._resolve(outcomes)

    def _in_savepoint(self, op: _Op) -> Outcome:
        """Run one change; on failure undo just it. Raises when the transaction itself broke."""
        connection = self._connection
        connection.execute("SAVEPOINT change")
        try:
            result = op.call(connection)
        except BaseException as exc:
            if not connection.in_transaction:  # SQLite rolled it all back (I/O error, disk full)
                raise
            connection.execute("ROLLBACK TO change")
            connection.execute("RELEASE change")
            return op.future, None, self._mapped(exc)
        connection.execute("RELEASE change")
        return op.future, result, None

    def _serve_unit(self, unit: Unit) -> None:
        begun = False
        while (op := unit.steps.get()).kind not in ("commit", "rollback"):
            if op.future.cancelled():
                continue
            try:
                if op.kind == "step" and not begun:
                    begin(self._connection)
                    begun = True
                outcome: Outcome = (op.future, op.call(self._connection), None)
            except BaseException as exc:
                outcome = (op.future, None, self._mapped(exc))
            self._resolve([outcome])
        self._end_unit(op, commit_it=begun and op.kind == "commit")

    def _end_unit(self, op: _Op, *, commit_it: bool) -> None:
        outcome: Outcome = (op.future, None, None)
        if commit_it and not op.future.cancelled():
            try:
                commit(self._connection)
            except BaseException as exc:
                outcome = (op.future, None, self._not_committed(exc))
        rollback(self._connection)  # whatever is still open: the unit failed or was cancelled
        self._resolve([outcome])

    def _close(self, stop: _Stop) -> None:
        rollback(self._connection)
        outcome: Outcome = (stop.future, None, None)
        try:
            self._connection.close()
        except apsw.Error as exc:
            outcome = (stop.future, None, exc)
        self._resolve([outcome])

    def _resolve(self, outcomes: list[Outcome]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
        for loop, settled in by_loop.items():
            with suppress(RuntimeError):  # the loop closed: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, settled)

    def _mapped(self, exc: BaseException) -> BaseException:
        if not isinstance(exc, Exception):  # SystemExit and the like, raised by a change
            return self._not_committed(exc)
        mapped = SQLITE.map_error(exc, self._where) if isinstance(exc, apsw.Error) else None
        if mapped is None:
            return exc
        mapped.__cause__ = exc
        return mapped

    def _not_committed(self, exc: BaseException) -> Unavailable:
        error = Unavailable(
            f"The SQLite database {self._where} could not commit ({exc}); nothing was written"
        )
        error.__cause__ = exc
        return error
