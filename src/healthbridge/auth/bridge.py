"""Running Authlib, which is synchronous, without blocking the event loop.

Authlib's server framework (https://docs.authlib.org/en/latest/oauth2/) calls its storage hooks
(find the client, save the code, take the refresh token...) synchronously, while our storage
(:class:`~healthbridge.store.records.RecordStore`) is async. Two designs were possible: load
everything a request could need before calling Authlib, or run Authlib in a worker thread whose
storage hooks hand coroutines back to the event loop. Which records a request needs is only known
once Authlib has parsed it (which client authentication method, which code, whether a ``jti`` is
new, whether the JWKS must be fetched), so preloading would re-implement half of Authlib's
request handling. We do the second: :func:`in_thread` runs an Authlib call in a worker thread
and :func:`run` (called from that thread) awaits a coroutine on the loop with
``asyncio.run_coroutine_threadsafe``. The loop stays free while Authlib signs tokens, hashes
and waits for the database; storage still runs on the loop's own connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")
TIMEOUT_S = 30.0
_LOOP: ContextVar[asyncio.AbstractEventLoop] = ContextVar("healthbridge_auth_loop")


async def in_thread(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a worker thread that may call :func:`run`."""
    _LOOP.set(asyncio.get_running_loop())
    return await asyncio.to_thread(function, *args)


def run(work: Coroutine[Any, Any, T]) -> T:
    """Await ``work`` on the event loop from a worker thread started by :func:`in_thread`."""
    try:
        loop = _LOOP.get()
    except LookupError:
        work.close()
        raise RuntimeError("storage called outside bridge.in_thread") from None
    return asyncio.run_coroutine_threadsafe(work, loop).result(TIMEOUT_S)
