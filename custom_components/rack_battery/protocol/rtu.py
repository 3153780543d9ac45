"""Modbus RTU frames in a raw byte stream, told apart without timing.

RTU marks the end of a frame with 3.5 character times of silence, which
neither a USB adapter nor a TCP gateway preserves: bytes arrive in lumps of
any size. So the stream is split by content instead: a frame's length
follows from its function code (and, for replies, its byte count), and a
frame is only taken when its CRC checks. A byte that cannot start a valid
frame is dropped, which is how the splitter finds its way back after
garbage or a partial frame.

A request and its reply look alike to a splitter that starts mid-stream,
so it remembers the last request it saw: a reply is a frame from the same
unit with the same function whose length fits what was asked.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

READ_FUNCTIONS: Final = frozenset({0x01, 0x02, 0x03, 0x04})
SINGLE_WRITES: Final = frozenset({0x05, 0x06})
MULTIPLE_WRITES: Final = frozenset({0x0F, 0x10})
# No RTU frame is longer: unit, function, 252 bytes of data, CRC.
MAX_FRAME: Final = 256


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


# The CRC of each byte value alone, so the CRC costs one lookup per byte.
_CRC_TABLE: Final = _crc_table()


def crc16(data: bytes | bytearray | memoryview) -> int:
    """Return the Modbus CRC-16 (polynomial 0xA001 reflected, start 0xFFFF).

    It is sent low byte first; so the CRC of a whole frame, its own CRC
    included, is 0.
    """
    crc = 0xFFFF
    table = _CRC_TABLE
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


def _checks(buffer: bytes | bytearray, length: int) -> bool:
    body = bytes(buffer[: length - 2])
    return crc16(body) == int.from_bytes(buffer[length - 2 : length], "little")


class RtuSplitter:
    """Cut a byte stream into requests and replies; pair each reply with its request."""

    def __init__(self) -> None:
        """Start with nothing heard."""
        self._buffer = bytearray()
        self.pending: Frame | None = None  # the last request, until its reply
        self.dropped = 0  # bytes skipped as garbage

    def feed(self, data: bytes) -> Iterator[tuple[Frame | None, Frame]]:
        """Take bytes; yield (request, frame) for every frame they complete.

        A request comes as (None, request); a reply as (its request, reply),
        or (None, reply) when its request was not heard.
        """
        self._buffer += data
        while len(self._buffer) >= 4:
            taken = self._take()
            if taken is None:
                return
            length, frame = taken
            del self._buffer[:length]
            if frame is None:
                self.dropped += length
                continue
            if frame.is_request:
                self.pending = frame
                yield None, frame
            else:
                request, self.pending = self.pending, None
                yield request, frame

    def _candidates(self, buffer: bytes | bytearray) -> list[tuple[bool, int | None, bool]]:
        """Return (is_request, length, expected) readings of a buffer's start.

        A length of None is not known yet; ``expected`` marks the reply the
        last request is waiting for.
        """
        unit, function = buffer[0], buffer[1]
        pending = self.pending
        found: list[tuple[bool, int | None, bool]] = []
        replying = pending is not None and pending.unit == unit
        if replying and pending is not None and function == pending.function | 0x80:
            found.append((False, 5, True))
        if function in READ_FUNCTIONS:
            if replying and pending is not None and function == pending.function:
                found.append((False, 5 + buffer[2] if len(buffer) > 2 else None, True))
            found.append((True, 8, False))
            if pending is None:
                found.append((False, 5 + buffer[2] if len(buffer) > 2 else None, False))
        elif function in SINGLE_WRITES:
            found.append((True, 8, False))
        elif function in MULTIPLE_WRITES:
            found.append((False, 8, replying))
            found.append((True, 9 + buffer[6] if len(buffer) > 6 else None, False))
        elif function & 0x80 and (function & 0x7F) in READ_FUNCTIONS | MULTIPLE_WRITES:
            found.append((False, 5, False))
        return found

    def _complete(self, buffer: bytes | bytearray) -> tuple[int | None, bool, bool]:
        """Return (length of a valid frame at the start or None, is_request, waiting)."""
        waiting = expected = False
        for is_request, length, likely in self._candidates(buffer):
            if length is None or length > len(buffer):
                waiting = True
                expected = expected or likely
                continue
            if _checks(buffer, length):
                return length, is_request, False
        return None, False, expected if waiting else False

    def _take(self) -> tuple[int, Frame | None] | None:
        """Return (bytes used, frame or None for dropped bytes), or None to wait."""
        buffer = self._buffer
        length, is_request, waiting = self._complete(buffer)
        if length is not None:
            frame = Frame(buffer[0], buffer[1], bytes(buffer[2 : length - 2]), is_request)
            return length, frame
        if not any(self._candidates(buffer)):
            return 1, None
        if waiting and len(buffer) < 2 * MAX_FRAME:
            # The reply the last request waits for is still arriving.
            return None
        # Nothing valid starts here yet. If a whole valid frame starts further
        # on, what lies before it is garbage or the rest of a broken frame.
        for skip in range(1, len(buffer) - 3):
            if self._complete(buffer[skip:])[0] is not None:
                return skip, None
        if len(buffer) < 2 * MAX_FRAME:
            return None
        return 1, None


def registers(reply: Frame) -> list[int]:
    """Return the registers of a read reply (functions 0x03, 0x04)."""
    size = reply.data[0]
    raw = reply.data[1 : 1 + size]
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw) - 1, 2)]


def bits(reply: Frame, count: int) -> list[bool]:
    """Return ``count`` bits of a read reply (functions 0x01, 0x02), lowest first."""
    raw = reply.data[1 : 1 + reply.data[0]]
    return [bool(raw[i // 8] >> (i % 8) & 1) for i in range(min(count, 8 * len(raw)))]
