"""Background loops that must stop when asked, and one way to write them.

A loop that retries after any ``Exception`` (database trouble, a bad record) can swallow its own
cancellation: a step interrupted by ``Task.cancel()`` may surface as some other error (a driver
or a store mapping the interruption), and the loop would sleep and go on forever, so that
shutdown waits for it forever. :func:`forever` re-raises whenever the task is being cancelled
(:func:`stopping`, https://docs.python.org/3/library/asyncio-task.html#asyncio.Task.cancelling),
and :func:`wait_for_event` pauses without ``asyncio.wait_for``, which on Python 3.11 may lose a
cancellation (https://github.com/python/cpython/issues/86296).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


def stopping() -> bool:
    """Is the current task being cancelled?"""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def forever(
    step: Callable[[], Awaitable[float]],
    *,
    what: str,
    log: Any,
    transient: tuple[type[Exception], ...] = (),
    transient_pause: float = 1.0,
    error_pause: float = 5.0,
) -> None:
    """Run ``step`` again and again, sleeping the seconds it returns after each run. A
    ``transient`` error (the database is unavailable) is logged as ``<what> failed; retrying``
    and retried after ``transient_pause``; any other after ``error_pause``, logged with its
    traceback (``<what> failed unexpectedly; retrying``). Cancellation always ends it."""
    while True:
        try:
            pause = await step()
        except transient as exc:
            if stopping():
                raise
            log.warning(f"{what} failed; retrying", error=str(exc))
            pause = transient_pause
        except Exception:
            if stopping():
                raise
            log.exception(f"{what} failed unexpectedly; retrying")
            pause = error_pause
        if pause > 0:
            await asyncio.sleep(pause)


async def wait_for_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` pass (True: it was set). Unlike
    ``asyncio.wait_for`` on Python 3.11, a cancellation that arrives as the event is set is
    never lost: ``asyncio.timeout`` keeps it."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
