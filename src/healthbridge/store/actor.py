"""Who is writing: the actor of the current request, recorded with every outbox row.

IHE BALP (https://profiles.ihe.net/ITI/BALP/) wants each AuditEvent of a change to name who
made it; the change's AuditEvent is built later, from the outbox row the change committed
(:mod:`healthbridge.audit.relay`), so the outbox row itself carries the actor. The REST router
sets :data:`ACTOR` once per request (a small JSON text, see
:meth:`healthbridge.audit.records.Who.actor`); the repositories read it in the request's own task
when a write is submitted (before it may run on another thread or task, such as SQLite's
group-commit writer) and store it in the ``outbox.actor`` column. The store never looks inside.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

ACTOR: ContextVar[str | None] = ContextVar("healthbridge_actor", default=None)
"""The actor of the writes the current task submits; None for the server's own work."""


def set_actor(actor: str | None) -> Token[str | None]:
    """Make ``actor`` the actor of the current task's writes; :func:`reset_actor` undoes it."""
    return ACTOR.set(actor)


def reset_actor(token: Token[str | None]) -> None:
    ACTOR.reset(token)


def current_actor() -> str | None:
    return ACTOR.get()


@contextmanager
def acting_as(actor: str | None) -> Iterator[None]:
    """``with acting_as(actor): ...``: writes inside the block are recorded as ``actor``'s."""
    token = ACTOR.set(actor)
    try:
        yield
    finally:
        ACTOR.reset(token)
