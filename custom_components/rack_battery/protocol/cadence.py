"""How often a driver asks for what changes slowly: the one place that says so.

Most of what a pack reports moves from one poll to the next (current,
voltage, cells, temperatures, alarms). Some of it does not: its identity,
design capacity, firmware and serial, and on some families the limits it
asks of the inverter, which move in steps with the temperature and the
state of charge over minutes to hours. Where such values come in a request
of their own, asking for them every poll only adds requests to a line that
is already the bottleneck of a poll. A driver keeps them in a
:class:`SlowReads` and asks again only when it says the read is due:

- on the first poll, so that a pack's entities have them from the start;
- when :data:`SLOW_READ_INTERVAL` has passed since the last read;
- after the pack has been silent and answers again (it may have been
  swapped, reset or reconfigured meanwhile);
- when the driver itself has changed what they report (a write).

Between reads the last values stay in every reading, so their entities do
not turn unknown between two slow reads. A slow read that fails leaves
the last values in place and is tried again at the next poll.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import time
from typing import Final

# Seconds between two reads of a pack's slowly changing values.
SLOW_READ_INTERVAL: Final = 600.0


def _monotonic() -> float:
    # Looked up at each call, so that a clock moved in tests moves this too.
    return time.monotonic()


@dataclass(slots=True)
class _Kept[T]:
    value: T
    read_at: float
    stale: bool = False


class SlowReads[T]:
    """One kind of slowly changing value, per pack address, and when it is next due."""

    def __init__(
        self,
        interval: float = SLOW_READ_INTERVAL,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """Keep values read every ``interval`` seconds by ``clock`` (the monotonic one)."""
        self.interval = interval
        self._clock = clock or _monotonic
        self._kept: dict[int, _Kept[T]] = {}

    def due(self, address: int) -> bool:
        """Return whether the pack's values should be read in this poll."""
        kept = self._kept.get(address)
        return kept is None or kept.stale or self._clock() - kept.read_at >= self.interval

    def get(self, address: int) -> T | None:
        """Return the values last read from the pack, or None if never read."""
        kept = self._kept.get(address)
        return None if kept is None else kept.value

    def store(self, address: int, value: T) -> None:
        """Keep what was just read from the pack; the next read is due an interval on."""
        self._kept[address] = _Kept(value, self._clock())

    def expire(self, address: int) -> None:
        """Make the next read due at once, keeping the values until it succeeds.

        Called for a pack that fell silent (read afresh when it returns)
        and after a write that changes what these values report.
        """
        if (kept := self._kept.get(address)) is not None:
            kept.stale = True

    def forget(self, address: int | None = None) -> None:
        """Drop what is kept for one pack (every pack, address None)."""
        if address is None:
            self._kept.clear()
        else:
            self._kept.pop(address, None)
