"""Modbus RTU frames in a raw byte stream, told apart without timing.

RTU marks the end of a frame with 3.5 character times of silence, which
neither a USB adapter nor a TCP gateway preserves: bytes arrive in lumps of
any size. So the stream is split by content instead: a frame's length
follows from its function code (and, for replies, its byte count), and a
frame is only taken when its CRC checks. A JK-PB bus also carries 300-byte
``55 AA EB 90`` frames (a slave's answer to its master's trigger, and the
master's own data), which have a fixed length and a checksum of their own.

Whatever arrives, splitting costs time linear in the bytes received: a
possible frame start is found by a regular expression (in C), each start is
examined once, and checking it costs at most a few checksums over the
longest frame. A stretch that cannot start a frame is dropped and counted
(:attr:`RtuSplitter.dropped`), never scanned again, and the buffer holds at
most the longest frame beyond the first start still undecided.

A request and its reply look alike to a splitter that starts mid-stream,
so it remembers the last request it saw: a reply is paired with it only
when it comes from the same unit with the same function and answers what
was asked (the register count, or the address and count of a write).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterator
from dataclasses import dataclass
import re
from typing import Final

READ_FUNCTIONS: Final = frozenset({0x01, 0x02, 0x03, 0x04})
SINGLE_WRITES: Final = frozenset({0x05, 0x06})
MULTIPLE_WRITES: Final = frozenset({0x0F, 0x10})
# No RTU frame is longer: unit, function, 252 bytes of data, CRC.
MAX_FRAME: Final = 256
# Every unit an RTU frame can name (0 being the broadcast address).
ALL_UNITS: Final = range(0, 248)
# Modbus exception codes run from 0x01 to 0x0B.
EXCEPTION_CODES: Final = range(0x01, 0x0C)
# The longest write request a listener looks for, in data bytes: masters
# it hears read, or trigger with a one-register write.
SHORT_WRITE: Final = 8
# JK-PB's frames: the header, a type, a counter, the payload, a one-byte sum.
JK_HEADER: Final = b"\x55\xaa\xeb\x90"
JK_FRAME: Final = 300


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


# The CRC of each byte value alone, so the CRC costs one lookup per byte.
CRC_TABLE: Final = _crc_table()


def crc16(data: bytes | bytearray | memoryview) -> int:
    """Return the Modbus CRC-16 (polynomial 0xA001 reflected, start 0xFFFF).

    It is sent low byte first; so the CRC of a whole frame, its own CRC
    included, is 0.
    """
    crc = 0xFFFF
    table = CRC_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def seal(body: bytes) -> bytes:
    """Return a frame body (unit, function, data) with its CRC appended."""
    return body + crc16(body).to_bytes(2, "little")


def read_request(unit: int, function: int, address: int, count: int) -> bytes:
    """Return the RTU frame of a read request (functions 0x01 to 0x04)."""
    return seal(bytes((unit, function)) + address.to_bytes(2, "big") + count.to_bytes(2, "big"))


@dataclass(frozen=True, slots=True)
class Frame:
    """One CRC-checked frame: unit, function and the data between them and the CRC."""

    unit: int
    function: int
    data: bytes
    is_request: bool

    @property
    def is_exception(self) -> bool:
        """Return whether this is an exception reply (function with the high bit set)."""
        return bool(self.function & 0x80)

    @property
    def start(self) -> int:
        """Return the first address a request names."""
        return int.from_bytes(self.data[0:2], "big")

    @property
    def count(self) -> int:
        """Return how many registers or coils a request names."""
        return int.from_bytes(self.data[2:4], "big")


@dataclass(frozen=True, slots=True)
class JkFrame:
    """One JK-PB ``55 AA EB 90`` frame of 300 bytes, its checksum checked.

    It names no unit: on the bus, the write reply that follows it says whose
    it is (see ``jk-pb`` in the listener).
    """

    raw: bytes
    is_request: bool = False

    @property
    def kind(self) -> int:
        """Return the frame type: 0x01 settings, 0x02 live data, 0x03 device info."""
        return self.raw[4]

    @property
    def payload(self) -> bytes:
        """Return the bytes after the header, type and counter, up to the checksum."""
        return self.raw[6:-1]


def jk_checksum(data: bytes | bytearray) -> int:
    """Return the JK-PB frame checksum: the sum of the bytes, modulo 256."""
    return sum(data) & 0xFF


# Functions a frame can carry, exceptions included, as the splitter looks for them.
_STARTS: Final = sorted(
    {*READ_FUNCTIONS, *SINGLE_WRITES, *MULTIPLE_WRITES}
    | {function | 0x80 for function in (*READ_FUNCTIONS, *SINGLE_WRITES, *MULTIPLE_WRITES)}
)


def _byte_class(values: Collection[int]) -> bytes:
    return b"[" + b"".join(b"\\x%02x" % value for value in sorted(set(values))) + b"]"


def _candidates(  # noqa: PLR0911
    buffer: bytearray, at: int, end: int, awaited: bytes | None
) -> list[tuple[int, bool]] | None:
    """Return the (length, is_request) a frame starting at ``at`` could have.

    None means the bytes that decide it have not all arrived. Lengths that
    the header already rules out (a count of zero, a byte count that does
    not fit the count, an unknown exception code) are left out. Given
    ``awaited`` (function and byte count of the one read reply wanted), a
    read reply is a candidate only if it has them: from any unit, so that a
    reply from the wrong one is still seen for what it is; and a write
    request only if it is short (a JK-PB trigger writes two bytes).
    """
    function = buffer[at + 1]
    if function & 0x80:
        if at + 3 > end:
            return None
        return [(5, False)] if buffer[at + 2] in EXCEPTION_CODES else []
    if function in SINGLE_WRITES:
        return [(8, True)]
    if function in READ_FUNCTIONS:
        if at + 6 > end:
            return None
        # A request asks for 1..2000 coils or 1..125 registers; a reply
        # holds whole registers, and at most 250 bytes of them.
        count = int.from_bytes(buffer[at + 4 : at + 6], "big")
        found = [(8, True)] if 0 < count <= (2000 if function <= 0x02 else 125) else []
        size = buffer[at + 2]
        if awaited is not None and buffer[at + 1 : at + 3] != awaited:
            return found
        if 0 < size <= 250 and (function <= 0x02 or not size & 1):
            found.append((5 + size, False))
        return found
    # Multiple writes: the 8-byte reply, or the request with its byte count.
    if at + 7 > end:
        return None
    found = [(8, False)]
    count = int.from_bytes(buffer[at + 4 : at + 6], "big")
    size = buffer[at + 6]
    if awaited is not None and size > SHORT_WRITE:
        return found
    if count and size == (2 * count if function == 0x10 else (count + 7) // 8):
        found.append((9 + size, True))
    return found


def _valid(buffer: bytearray, at: int, length: int, jk: bool) -> bool:
    if jk:
        return jk_checksum(buffer[at : at + length - 1]) == buffer[at + length - 1]
    body = bytes(buffer[at : at + length - 2])
    return crc16(body) == int.from_bytes(buffer[at + length - 2 : at + length], "little")


@dataclass(slots=True)
class _Start:
    """A place in the buffer where a frame may start, and what is left to check there."""

    at: int
    jk: bool
    tested: int = 0  # every candidate length up to this one has been checked
    length: int | None = None  # the length of the frame found here
    is_request: bool = False


def answers(request: Frame, reply: Frame) -> bool:
    """Return whether a reply answers a request: unit, function and what was asked."""
    if reply.unit != request.unit or reply.is_request:
        return False
    if reply.function == request.function | 0x80:
        return True
    if reply.function != request.function:
        return False
    if request.function in READ_FUNCTIONS:
        count = request.count
        size = 2 * count if request.function >= 0x03 else (count + 7) // 8
        return len(reply.data) >= 1 and reply.data[0] == size
    if request.function in MULTIPLE_WRITES:
        return reply.data[0:4] == request.data[0:4]
    return True


class RtuSplitter:
    """Cut a byte stream into requests, replies and JK-PB frames; pair replies with requests."""

    def __init__(self, units: Collection[int] = ALL_UNITS, *, unasked: bool = True) -> None:
        """Start with nothing heard; take RTU frames only from ``units``.

        A listener that knows where its family's packs sit passes their
        range: fewer bytes can then start a frame, and noise costs less.
        With ``unasked`` False, read replies are looked for only where they
        answer the read request just heard, and write requests only where
        they are short: those are the frames whose CRC runs over up to 255
        bytes, so noise built of their headers then costs no more than any
        other. A listener wants nothing else.
        """
        self._unasked = unasked
        self._buffer = bytearray()
        self._starts: deque[_Start] = deque()
        self._scan = 0  # the next offset not yet looked at
        self._kept = 0  # bytes before this offset are used or dropped
        self.pending: Frame | None = None  # the last request, until its reply
        self.dropped = 0  # bytes dropped as noise
        self._pattern = re.compile(
            re.escape(JK_HEADER) + b"|" + _byte_class(units) + b"(?=" + _byte_class(_STARTS) + b")"
        )

    def feed(self, data: bytes) -> Iterator[tuple[Frame | None, Frame | JkFrame]]:
        """Take bytes; yield (request, frame) for every frame they complete.

        A request comes as (None, request); a reply as (its request, reply),
        or (None, reply) when it answers no request heard; a JK-PB frame as
        (None, frame).
        """
        self._buffer += data
        while (taken := self._next()) is not None:
            at, length, is_request, jk = taken
            raw = bytes(self._buffer[at : at + length])
            self._drop_to(at)
            self._kept = at + length
            self._scan = max(self._scan, self._kept)
            while self._starts and self._starts[0].at < self._kept:
                self._starts.popleft()
            if jk:
                yield None, JkFrame(raw)
                continue
            frame = Frame(raw[0], raw[1], raw[2:-2], is_request)
            if is_request:
                self.pending = frame
                yield None, frame
            elif self.pending is not None and answers(self.pending, frame):
                request, self.pending = self.pending, None
                yield request, frame
            else:
                yield None, frame
        self._compact()

    @property
    def held(self) -> int:
        """Return how many bytes wait for the rest of a frame (never more than a few frames)."""
        return len(self._buffer) - self._kept

    def _drop_to(self, offset: int) -> None:
        if offset > self._kept:
            self.dropped += offset - self._kept
            self._kept = offset

    def _compact(self) -> None:
        """Forget what has been used or dropped, so the buffer stays bounded."""
        if not self._starts:
            # Nothing undecided: all before the scan point is noise, except a
            # tail that may still grow into the start of a frame.
            self._drop_to(self._scan)
        cut = self._kept
        if cut:
            del self._buffer[:cut]
            self._kept = 0
            self._scan -= cut
            for start in self._starts:
                start.at -= cut

    def _settle(self, start: _Start) -> bool | None:  # noqa: PLR0911
        """Check what can be checked at a start: True found, False nothing, None wait."""
        if start.length is not None:
            return True
        buffer, end = self._buffer, len(self._buffer)
        if start.jk:
            if start.at + JK_FRAME > end:
                return None
            if _valid(buffer, start.at, JK_FRAME, jk=True):
                start.length = JK_FRAME
                return True
            return False
        candidates = _candidates(buffer, start.at, end, self._awaited())
        if candidates is None:
            return None
        waiting = False
        for length, is_request in sorted(candidates):
            if length <= start.tested:
                continue
            if start.at + length > end:
                waiting = True
                break
            start.tested = length
            if _valid(buffer, start.at, length, jk=False):
                start.length, start.is_request = length, is_request
                return True
        return None if waiting else False

    def _awaited(self) -> bytes | None:
        """Return the header of the only read reply worth checking, or None for any.

        None unless the splitter was told to take replies only to requests
        it heard; then b"" (no read reply at all) while no read is pending.
        """
        if self._unasked:
            return None
        pending = self.pending
        if pending is None or pending.function not in READ_FUNCTIONS:
            return b""
        count = pending.count
        size = 2 * count if pending.function >= 0x03 else (count + 7) // 8
        return bytes((pending.function, size & 0xFF))

    def _strong(self, start: _Start) -> bool:
        """Return whether a start is worth waiting for: a JK header, or the awaited reply."""
        if start.jk:
            return True
        pending = self.pending
        if pending is None:
            return False
        buffer, at = self._buffer, start.at
        if buffer[at] != pending.unit or buffer[at + 1] != pending.function:
            return False
        if pending.function in READ_FUNCTIONS:
            count = pending.count
            size = 2 * count if pending.function >= 0x03 else (count + 7) // 8
            return at + 2 < len(buffer) and buffer[at + 2] == size
        return pending.function in MULTIPLE_WRITES

    def _next(self) -> tuple[int, int, bool, bool] | None:
        """Return (offset, length, is_request, is JK) of the next frame, or None to wait."""
        starts = self._starts
        while True:
            # The first start decides first, if it can.
            while starts:
                first = starts[0]
                state = self._settle(first)
                if state:
                    assert first.length is not None
                    return first.at, first.length, first.is_request, first.jk
                if state is None:
                    break
                starts.popleft()
            # What lies before the first start still undecided starts no
            # frame: it is noise, and is let go now.
            self._drop_to(starts[0].at if starts else self._scan)
            if starts and (later := self._found_beyond()) is not None:
                # Nothing worth waiting for lies before a whole frame: what
                # does is noise, or the rest of a broken frame.
                while starts[0] is not later:
                    starts.popleft()
                self._drop_to(later.at)
                continue
            found = self._look()
            if found is None:
                return None
            starts.append(found)
            self._settle(found)

    def _found_beyond(self) -> _Start | None:
        """Return the first later start holding a whole frame, unless one before it is awaited."""
        for index, start in enumerate(self._starts):
            if start.length is not None and index:
                return start
            if self._strong(start):
                return None
        return None

    def _look(self) -> _Start | None:
        """Find the next place a frame may start, past everything looked at."""
        buffer = self._buffer
        match = self._pattern.search(buffer, self._scan)
        if match is None:
            # The last three bytes may yet become a JK header.
            self._scan = max(self._scan, len(buffer) - len(JK_HEADER) + 1)
            return None
        at = match.start()
        self._scan = at + 1
        return _Start(at=at, jk=buffer[at] == JK_HEADER[0] and buffer[at : at + 4] == JK_HEADER)


def registers(reply: Frame) -> list[int]:
    """Return the registers of a read reply (functions 0x03, 0x04)."""
    size = reply.data[0]
    raw = reply.data[1 : 1 + size]
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw) - 1, 2)]


def bits(reply: Frame, count: int) -> list[bool]:
    """Return ``count`` bits of a read reply (functions 0x01, 0x02), lowest first."""
    raw = reply.data[1 : 1 + reply.data[0]]
    return [bool(raw[i // 8] >> (i % 8) & 1) for i in range(min(count, 8 * len(raw)))]
