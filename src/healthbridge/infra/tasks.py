"""Background loops that must stop when asked.

A loop that retries after any ``Exception`` (database trouble, a bad record) can swallow its own
cancellation: a step interrupted by ``Task.cancel()`` may surface as some other error (a driver
or a store mapping the interruption), and the loop would sleep and go on forever, so that
shutdown waits for it forever. Every such handler first asks :func:`stopping` and re-raises
(https://docs.python.org/3/library/asyncio-task.html#asyncio.Task.cancelling).
"""

from __future__ import annotations

import asyncio


def stopping() -> bool:
    """Is the current task being cancelled?"""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def wait_for_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` pass (True: it was set). Unlike
    ``asyncio.wait_for`` on Python 3.11, a cancellation that arrives as the event is set is
    never lost (https://github.com/python/cpython/issues/86296): ``asyncio.timeout`` keeps it."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
