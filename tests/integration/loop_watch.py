"""How long each callback of the event loop keeps it, in CPU time.

asyncio's own slow-callback warning (debug mode, ``slow_callback_duration``)
measures wall time, which on a busy shared machine counts the time the
process waited for a core. What the rule "no callback blocks the loop for
more than 50 ms" is about is the work one callback does, so this wraps
``asyncio.Handle._run`` (which runs every callback, task step and I/O
handler of a pure-Python event loop) and measures the thread's CPU time
around it. The slowest callbacks are kept, so a failure names the culprit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
import contextlib
from dataclasses import dataclass, field
import gc
import time
from typing import Any

# The rule: no callback keeps the loop longer than this (seconds of CPU).
BLOCK_LIMIT = 0.05


@dataclass
class LoopWatch:
    """The callbacks that kept the loop longer than the limit, and the worst one."""

    limit: float = BLOCK_LIMIT
    worst: float = 0.0
    offenders: list[tuple[float, str]] = field(default_factory=list)
    callbacks: int = 0

    def assert_never_blocked(self) -> None:
        """Fail naming every callback that held the loop beyond the limit."""
        assert not self.offenders, (
            f"callbacks held the event loop beyond {self.limit * 1000:.0f} ms of CPU: "
            + "; ".join(f"{took * 1000:.0f} ms in {what}" for took, what in self.offenders[:5])
        )


@contextlib.contextmanager
def watch_the_loop(limit: float = BLOCK_LIMIT) -> Iterator[LoopWatch]:
    """Measure every callback the loop runs while the block lasts."""
    watch = LoopWatch(limit=limit)
    original = asyncio.events.Handle._run

    def timed(handle: Any) -> None:
        start = time.thread_time()
        try:
            original(handle)
        finally:
            took = time.thread_time() - start
            watch.callbacks += 1
            watch.worst = max(watch.worst, took)
            if took > limit:
                watch.offenders.append((took, repr(handle)[:300]))

    asyncio.events.Handle._run = timed  # type: ignore[method-assign, assignment]
    # A full garbage collection of a test's Home Assistant takes a good part
    # of the limit, and lands in whichever callback happens to allocate:
    # what exists now is set aside, so a collection only walks what is new.
    gc.collect()
    gc.freeze()
    try:
        yield watch
    finally:
        gc.unfreeze()
        asyncio.events.Handle._run = original  # type: ignore[method-assign]
