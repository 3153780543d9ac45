"""Find delimited frames in a byte stream in one pass, with a bounded buffer.

The Pylon ASCII protocol (``~`` hex CR) and socketcand's text protocol
(``<`` text ``>``) both mark where a frame starts and ends, and both arrive
through pipes that cut the stream wherever they like and add whatever noise
the line picked up. :class:`DelimitedFramer` finds the frames for either:
it looks at every byte once (a compiled pattern whose run never
backtracks), counts what is not part of a frame as noise in the link's
statistics and forgets it, and holds at most one frame's worth of bytes
between reads. So a babbling line costs time in proportion to what it sends,
and memory not at all.
"""

from __future__ import annotations

import re

from ..linkstats import LinkStats


class DelimitedFramer:
    """Cut a stream into candidate frames: ``start``, body characters, ``end``.

    A candidate is at most ``longest`` bytes, markers included, and holds
    only bytes of the ``body`` character class between them. Whether it
    means anything is the codec's business. Every other byte is noise:
    counted in ``stats.noise_bytes`` and dropped.
    """

    def __init__(
        self, stats: LinkStats, *, start: bytes, body: bytes, end: bytes, longest: int
    ) -> None:
        """Frame with one-byte ``start`` and ``end`` markers and a ``body`` class (regex set)."""
        if len(start) != 1 or len(end) != 1 or longest < 2:
            raise ValueError("markers are one byte each and a frame holds both")
        self.stats = stats
        self._end = end
        self._longest = longest
        run = longest - 2
        # A whole frame, or the start of one cut off by the end of the chunk
        # (``\Z``). The possessive run never gives bytes back, and a run too
        # long for a frame fails the match at that start.
        self._frame = re.compile(
            re.escape(start) + b"[" + body + b"]{0,%d}+(?:" % run + re.escape(end) + rb"|\Z)"
        )
        self._run = re.compile(b"[" + body + b"]*+")
        # The start of a frame whose end has not arrived yet.
        self._partial = bytearray()

    @property
    def held(self) -> int:
        """Return how many bytes of a started frame are held for the next read."""
        return len(self._partial)

    def feed(self, data: bytes) -> list[bytes]:
        """Return the frames ``data`` completes, in order; keep a started one."""
        frames: list[bytes] = []
        position = self._continue(data, frames) if self._partial else 0
        size = len(data)
        while position < size:
            match = self._frame.search(data, position)
            if match is None:
                self.stats.noise_bytes += size - position
                break
            self.stats.noise_bytes += match.start() - position
            position = match.end()
            if data[position - 1 : position] == self._end:
                frames.append(match.group())
            else:
                # Cut off by the end of the chunk: the rest comes later.
                self._partial += match.group()
        return frames

    def reset(self) -> None:
        """Forget a started frame, counting it as noise."""
        self.stats.noise_bytes += len(self._partial)
        self._partial.clear()

    def _continue(self, data: bytes, frames: list[bytes]) -> int:
        """Carry on the frame a previous chunk started; return where framing resumes."""
        room = self._longest - 1 - len(self._partial)
        run = self._run.match(data, 0, room)
        stop = 0 if run is None else run.end()
        self._partial += data[:stop]
        if stop == len(data):
            return stop  # still inside the frame
        if data[stop : stop + 1] == self._end:
            frames.append(bytes(self._partial) + self._end)
            self._partial.clear()
            return stop + 1
        # A byte that cannot be in a frame, or more than a frame can hold.
        self.reset()
        return stop
