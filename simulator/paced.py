"""A serial line at its real speed: bytes at baud/10 per second, and a BMS that takes its time.

A pseudo-terminal moves bytes as fast as the kernel copies them, whatever
baud rate the driver set; a real RS485 line carries one byte every ten bit
times (8N1), and a BMS starts to answer only some time after the request's
last byte. :class:`PacedPort` puts both back on a pty:

- a request that arrives is taken to occupy the line for its wire time
  (the driver wrote it at once, but on a real line its last byte would come
  that much later), and the BMS starts its reply after its answer time;
- what the simulator writes leaves in slices, each slice written when its
  last byte would have crossed the line, so a frame ends exactly when it
  would on the wire and a reader sees it arrive piecemeal, as from a USB
  adapter.

The line is half duplex: a reply never starts before the line is free. A
port made with ``baudrate=None`` is unpaced (bytes at once, no answer
time), for tests where timing is not the point.

The answer times (:data:`ANSWER_TIME`) are the simulated BMSs' own. No
vendor document gives how soon a pack answers, only how long a master
should wait at most (PACE Modbus: 200 ms; PACE ASCII and Seplos V2:
500 ms); the figures below are plausible values well inside those bounds,
not measurements of real packs, and are named as such.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Final

BITS_PER_BYTE: Final = 10
# A slice is written at most this often: a timer per byte would cost more
# than the line it plays at 115200 baud.
SLICE_SECONDS: Final = 0.004

# Seconds from a request's last byte to the first byte of the reply, per
# simulated family. Plausible figures inside the documented bounds (none is
# a measurement): PACE Modbus within its 200 ms timeout; PACE ASCII and
# Seplos V2 within their 500 ms; Pylontech, Seplos V3 and JK-PB name none.
ANSWER_TIME: Final[dict[str, float]] = {
    "pace_modbus": 0.040,  # PACE Modbus V1.3 allows 200 ms
    "pace_ascii": 0.050,  # PACE RS485 2018 allows 500 ms
    "seplos_v2": 0.050,  # Seplos V2.0 allows 500 ms
    "seplos_v3": 0.030,  # no figure in the XZH document
    "jk_pb": 0.020,  # no figure in the JK documents
    "pylontech_rs485": 0.030,  # no figure in the Pylontech documents
    "sunspec": 0.030,  # no figure
}
DEFAULT_ANSWER_TIME: Final = 0.030


def answer_time(family: str) -> float:
    """Return a simulated family's answer time in seconds."""
    return ANSWER_TIME.get(family, DEFAULT_ANSWER_TIME)


class PacedPort:
    """Writes to one end of a pty at a baud rate, after an answer time."""

    def __init__(
        self, raw_write: Callable[[bytes], None], *, baudrate: int | None, answer_time: float = 0.0
    ) -> None:
        """Pace ``raw_write`` at ``baudrate`` (None: unpaced) after ``answer_time`` seconds."""
        self._raw_write = raw_write
        self.baudrate = baudrate
        self.answer_time = answer_time if baudrate else 0.0
        self._byte = BITS_PER_BYTE / baudrate if baudrate else 0.0
        # Loop times: when the line is free, and when a reply may start.
        self._free_at = 0.0
        self._reply_from = 0.0
        # Bytes waiting to leave, each slice with the time its last byte is due.
        self._queue: deque[tuple[float, bytes]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        # What crossed the line, each way, for the bench's wire-time limit.
        self.heard_bytes = 0
        self.sent_bytes = 0

    @property
    def paced(self) -> bool:
        """Return whether bytes are paced."""
        return self.baudrate is not None

    def wire_time(self, size: int) -> float:
        """Return the seconds ``size`` bytes take on this line."""
        return size * self._byte

    def heard(self, size: int) -> None:
        """Note ``size`` request bytes arriving now; the reply waits for them and the BMS."""
        self.heard_bytes += size
        if not self.paced:
            return
        now = asyncio.get_running_loop().time()
        done = max(now, self._free_at) + self.wire_time(size)
        self._free_at = done
        self._reply_from = done + self.answer_time

    def write(self, data: bytes) -> None:
        """Send ``data`` at the line's pace, after the answer time of the last request."""
        self.sent_bytes += len(data)
        if not self.paced:
            self._raw_write(data)
            return
        loop = asyncio.get_running_loop()
        start = max(loop.time(), self._free_at, self._reply_from)
        step = max(1, int(SLICE_SECONDS / self._byte))
        for offset in range(0, len(data), step):
            piece = data[offset : offset + step]
            start += self.wire_time(len(piece))
            self._queue.append((start, piece))
        self._free_at = start
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None or not self._queue:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(self._queue[0][0], self._send)

    def _send(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        ready = bytearray()
        while self._queue and self._queue[0][0] <= now:
            ready += self._queue.popleft()[1]
        if ready:
            self._raw_write(bytes(ready))
        self._schedule()

    def cancel(self) -> None:
        """Drop what is still to be sent (the line is closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()
