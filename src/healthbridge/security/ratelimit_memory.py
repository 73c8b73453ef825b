"""In-process sliding-window counters: the ``limits`` library's MemoryStorage with a faster
sliding window, for the per-request hot path.

The algorithm is the one of ``limits``' sliding-window-counter strategy
(https://limits.readthedocs.io/en/stable/strategies.html#sliding-window-counter): windows aligned
to the epoch, two counters per key (the previous and the current window), and the previous
window weighted by the share of it still inside the sliding window. The stock MemoryStorage
takes an asyncio lock and several awaits per hit (about 15 us); an event loop runs one coroutine
at a time, so a hit with no ``await`` between reading and writing its counters is already
atomic, and costs about 1 us. Keys whose windows have both passed are swept every
``sweep_seconds``, so a flood from many addresses does not grow memory without bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from limits.aio.storage import MemoryStorage

WindowInfo = tuple[int, float, int, float]
"""(previous count, seconds the previous window still weighs, current count, seconds until the
current window ends plus one window): the shape of ``limits``' ``get_sliding_window``."""


class LocalWindows(MemoryStorage):
    """Sliding-window counters in this process. Implements ``limits``' SlidingWindowCounterSupport
    (async) and a synchronous :meth:`consume` for callers on the event loop."""

    def __init__(self, sweep_seconds: float = 10.0, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        # key -> [window index, previous count, current count, window seconds]
        self.windows: dict[str, list[int]] = {}
        self.clock = clock
        self._sweep_seconds = sweep_seconds
        self._next_sweep = clock() + sweep_seconds

    def _window(self, key: str, expiry: int, now: float) -> list[int]:
        index = int(now // expiry)
        window = self.windows.get(key)
        if window is None or window[0] < index - 1:
            window = self.windows[key] = [index, 0, 0, expiry]
        elif window[0] != index:
            window[0], window[1], window[2] = index, window[2], 0
        return window

    def consume(self, key: str, limit: int, expiry: int, amount: int) -> tuple[bool, WindowInfo]:
        """Take ``amount`` units when they fit under ``limit`` per ``expiry`` seconds; returns
        whether they were taken and the window afterwards."""
        now = self.clock()
        if now >= self._next_sweep:
            self.sweep(now)
        window = self._window(key, expiry, now)
        left = expiry - now % expiry
        weighted = window[1] * left / expiry + window[2]
        allowed = amount <= limit and int(weighted) + amount <= limit
        if allowed:
            window[2] += amount
        return allowed, (window[1], left if window[1] else 0.0, window[2], left + expiry)

    def peek(self, key: str, expiry: int) -> WindowInfo:
        now = self.clock()
        window = self.windows.get(key)
        if window is None:
            return 0, 0.0, 0, 0.0
        window = self._window(key, expiry, now)
        left = expiry - now % expiry
        return window[1], left if window[1] else 0.0, window[2], left + expiry

    def sweep(self, now: float) -> None:
        """Forget keys whose previous and current windows have both passed."""
        self._next_sweep = now + self._sweep_seconds
        stale = [key for key, w in self.windows.items() if w[0] < int(now // w[3]) - 1]
        for key in stale:
            del self.windows[key]

    # -- limits' SlidingWindowCounterSupport ----------------------------------------------
    async def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        return self.consume(key, limit, expiry, amount)[0]

    async def get_sliding_window(self, key: str, expiry: int) -> WindowInfo:
        return self.peek(key, expiry)

    async def clear_sliding_window(self, key: str, expiry: int) -> None:
        self.windows.pop(key, None)

    async def reset(self) -> int | None:
        count = len(self.windows)
        self.windows.clear()
        await super().reset()
        return count
