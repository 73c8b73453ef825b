"""A :class:`~healthbridge.store.signals.ChangeSignal` over PostgreSQL ``LISTEN``/``NOTIFY``.

https://www.postgresql.org/docs/current/sql-notify.html: a notification sent after a commit
reaches every session listening on the channel, in every server process, typically within a
millisecond. One dedicated connection per process listens (asyncpg ``add_listener``,
https://magicstack.github.io/asyncpg/current/api/index.html#asyncpg.connection.Connection.add_listener)
and counts notifications. While it is not listening (starting, connection lost, reconnecting),
:meth:`NotifySignal.current` answers None and readers ask the database, so a lost connection
costs speed, never correctness; each (re)connection counts as a change, so no verdict cached
before an outage survives it. A connection that dies without the socket noticing is caught by a
ping every :data:`PING_EVERY_S` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import structlog
from sqlalchemy import func, literal, select

from healthbridge.store.sql.compiled import compile_statement
from healthbridge.store.sql.engine import Engine

log = structlog.get_logger(__name__)

CHANNEL = "healthbridge_revocations"
PING_EVERY_S = 5.0
PING_TIMEOUT_S = 2.0
RETRY_MAX_S = 5.0


class NotifySignal:
    def __init__(self, engine: Engine, dsn: str, channel: str = CHANNEL) -> None:
        self._engine = engine
        self._notify = compile_statement(
            select(func.pg_notify(literal(channel), literal(""))), engine.dialect
        )
        self._dsn = dsn
        self._channel = channel
        self._count = 0
        self._listening = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin listening in the background (``current()`` is None until then)."""
        if self._task is None:
            self._task = asyncio.create_task(self._listen_forever(), name="notify-signal")

    def current(self) -> int | None:
        return self._count if self._listening else None

    async def changed(self) -> None:
        self._count += 1  # this process at once, whether or not the listener is up
        await self._engine.fetch_one(self._notify, self._notify.bind())

    def _notified(self, *_: Any) -> None:
        self._count += 1

    def _lost(self, *_: Any) -> None:
        self._listening = False

    async def _listen_once(self) -> None:
        connection = await asyncpg.connect(self._dsn, timeout=PING_TIMEOUT_S * 5)
        try:
            connection.add_termination_listener(self._lost)
            await connection.add_listener(self._channel, self._notified)
            self._count += 1  # anything may have changed while nobody listened
            self._listening = True
            while self._listening:
                await asyncio.sleep(PING_EVERY_S)
                await asyncio.wait_for(connection.fetchval("SELECT 1"), PING_TIMEOUT_S)
        finally:
            self._listening = False
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), PING_TIMEOUT_S)

    async def _listen_forever(self) -> None:
        delay = 0.1
        while True:
            try:
                await self._listen_once()
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any connection trouble: retry, readers ask the database
                log.warning("revocation listener lost; retrying", error=str(exc), retry_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def close(self) -> None:
        self._listening = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
