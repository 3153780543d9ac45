"""Modbus requests and the framing of their replies, for TCP (MBAP) and RTU.

This is the client side of the Modbus wires, without any I/O: a
:class:`Request` knows its PDU and which reply answers it, and a receiver
(:class:`MbapReceiver` for Modbus TCP, :class:`RtuReceiver` for RTU on a
serial port or through a transparent gateway) frames the bytes of a stream
and hands back only the reply to the request just sent.

What a real line sends is treated with suspicion. A reply is accepted only
when it answers the request in flight: same unit, the function asked (or
its exception), the byte count that the count asked for, the echoed address
and count of a write, and on Modbus TCP the transaction id and protocol id
0. Anything else is discarded and counted: a late reply to an earlier
request, an echo of our own request (many RS485 adapters hear themselves),
a frame for another unit, a wrong function or count. What arrives between
transactions is thrown away before the next request goes out.

Framing costs linear time whatever arrives. The buffers are bounded; noise
is dropped and counted, never scanned again. On RTU only a position holding
the unit and the function expected (or its exception) is CRC-checked, each
once, so random noise costs little more than a ``bytes.find``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
import heapq
import struct
from typing import Final

from .linkstats import LinkStats
from .rtu import CRC_TABLE, crc16

READ_COILS: Final = 0x01
READ_HOLDING: Final = 0x03
READ_INPUT: Final = 0x04
WRITE_SINGLE: Final = 0x06
WRITE_MULTIPLE: Final = 0x10
EXCEPTION_BIT: Final = 0x80

# A Modbus frame holds at most 125 registers in a read and 123 in a write.
MAX_READ: Final = 125
MAX_WRITE: Final = 123
MAX_COILS: Final = 2000

# The longest RTU frame: unit, function, 252 bytes of data, CRC.
RTU_MAX_FRAME: Final = 256
# What RTU keeps of a stream at most: a frame being waited for and as much
# again of what came before it.
RTU_BUFFER: Final = 2 * RTU_MAX_FRAME
# The most of one lump of bytes that RTU looks through for the reply.
RTU_LUMP: Final = 16 * 1024
# MBAP: transaction id, protocol id, length, unit; the length counts the
# unit and the PDU, and a PDU is at most 253 bytes.
MBAP_HEADER: Final = 7
MBAP_MAX_LENGTH: Final = 254

# Functions whose frames the RTU receiver can measure, for counting what it
# throws away as whole frames rather than as noise.
_READS: Final = frozenset({0x01, 0x02, 0x03, 0x04})
_SINGLE_WRITES: Final = frozenset({0x05, 0x06})
_MULTIPLE_WRITES: Final = frozenset({0x0F, 0x10})


@dataclass(frozen=True, slots=True)
class Request:
    """One Modbus request: unit, function and PDU, and the reply that answers it."""

    unit: int
    pdu: bytes  # function code and data
    # The byte count a read reply must carry; 0 for a write.
    byte_count: int = 0

    @property
    def function(self) -> int:
        """Return the function code."""
        return self.pdu[0]

    @property
    def reply_length(self) -> int:
        """Return the length of the reply PDU that answers this request."""
        if self.function in (WRITE_SINGLE, WRITE_MULTIPLE):
            return 5
        return 2 + self.byte_count

    def answered_by(self, pdu: bytes | bytearray) -> bool:
        """Return whether a reply PDU answers this request (an exception does too)."""
        function = self.function
        if pdu[0] == function | EXCEPTION_BIT:
            return len(pdu) == 2
        if pdu[0] != function or len(pdu) != self.reply_length:
            return False
        if function == WRITE_SINGLE:
            return pdu == self.pdu  # the address and value echoed
        if function == WRITE_MULTIPLE:
            return pdu == self.pdu[:5]  # the address and count echoed
        return pdu[1] == self.byte_count


def read_request(unit: int, function: int, address: int, count: int) -> Request:
    """Return a read of ``count`` coils (0x01) or registers (0x03, 0x04)."""
    most = MAX_COILS if function == READ_COILS else MAX_READ
    _check_count(count, most)
    _check_unit(unit)
    size = (count + 7) // 8 if function == READ_COILS else 2 * count
    pdu = bytes((function,)) + address.to_bytes(2, "big") + count.to_bytes(2, "big")
    return Request(unit, pdu, size)


def write_single_request(unit: int, address: int, value: int) -> Request:
    """Return a write of one register (0x06)."""
    _check_unit(unit)
    _check_values((value,))
    return Request(
        unit, bytes((WRITE_SINGLE,)) + address.to_bytes(2, "big") + value.to_bytes(2, "big")
    )


def write_multiple_request(unit: int, address: int, values: tuple[int, ...]) -> Request:
    """Return a write of several registers (0x10)."""
    _check_unit(unit)
    _check_count(len(values), MAX_WRITE)
    _check_values(values)
    data = b"".join(value.to_bytes(2, "big") for value in values)
    pdu = (
        bytes((WRITE_MULTIPLE,))
        + address.to_bytes(2, "big")
        + len(values).to_bytes(2, "big")
        + bytes((len(data),))
        + data
    )
    return Request(unit, pdu)


def _check_count(count: int, most: int) -> None:
    if not 1 <= count <= most:
        raise ValueError(f"a Modbus request carries 1 to {most} registers, not {count}")


def _check_unit(unit: int) -> None:
    if not 0 <= unit <= 0xFF:
        raise ValueError(f"a Modbus unit is 0 to 255, not {unit}")


def _check_values(values: tuple[int, ...]) -> None:
    if any(not 0 <= value <= 0xFFFF for value in values):
        raise ValueError("register values are 16-bit: 0..65535")


def registers_of(pdu: bytes) -> list[int]:
    """Return the registers of an accepted read reply (0x03, 0x04)."""
    count = (len(pdu) - 2) // 2
    return list(struct.unpack_from(f">{count}H", pdu, 2)) if count > 0 else []


def coils_of(pdu: bytes, count: int) -> list[bool]:
    """Return ``count`` coils of an accepted 0x01 reply, lowest first (padding dropped)."""
    return [bool(pdu[2 + i // 8] >> (i % 8) & 1) for i in range(count)]


@dataclass(slots=True)
class MbapReceiver:
    """Frame Modbus TCP replies (MBAP header and PDU) out of a TCP stream.

    An MBAP frame says its own length, so a stream in step is cut without
    looking at content. A header whose protocol id is not 0 or whose length
    cannot be is out of step: one byte is dropped as noise and the next
    position tried, found with ``bytes.find`` on the protocol id's two
    zero bytes, so a stretch of noise costs linear time.
    """

    stats: LinkStats
    _buffer: bytearray = field(default_factory=bytearray)
    _request: Request | None = None
    _transaction: int = 0

    @property
    def buffered(self) -> int:
        """Return how many bytes are held, waiting for the rest of a frame."""
        return len(self._buffer)

    def expect(self, request: Request) -> bytes:
        """Throw away what is waiting; return the frame to send for ``request``."""
        self._settle_stray()
        self._transaction = (self._transaction + 1) & 0xFFFF
        self._request = request
        return (
            self._transaction.to_bytes(2, "big")
            + b"\x00\x00"
            + (len(request.pdu) + 1).to_bytes(2, "big")
            + bytes((request.unit,))
            + request.pdu
        )

    def abandon(self) -> None:
        """End the transaction without a reply: what has arrived was not one."""
        self._request = None

    def feed(self, data: bytes) -> bytes | None:
        """Take bytes; return the reply PDU once the request in flight is answered."""
        buffer = self._buffer
        buffer += data
        stats = self.stats
        start = 0
        answer: bytes | None = None
        while len(buffer) - start >= MBAP_HEADER:
            length = int.from_bytes(buffer[start + 4 : start + 6], "big")
            if buffer[start + 2] or buffer[start + 3] or not 2 <= length <= MBAP_MAX_LENGTH:
                # Out of step: skip to the next place a protocol id of 0 could be.
                found = buffer.find(b"\x00\x00", start + 3)
                skip = (len(buffer) - 3 if found < 0 else found - 2) - start
                skip = max(skip, 1)
                stats.noise_bytes += skip
                start += skip
                continue
            end = start + 6 + length
            if end > len(buffer):
                break
            pdu = bytes(buffer[start + 7 : end])
            request = self._request
            if request is None:
                stats.stray_frames += 1
            elif (
                int.from_bytes(buffer[start : start + 2], "big") == self._transaction
                and buffer[start + 6] == request.unit
                and request.answered_by(pdu)
            ):
                self._request = None
                answer = pdu
            else:
                stats.pack(request.unit).discarded += 1
            start = end
        del buffer[:start]
        return answer

    def _settle_stray(self) -> None:
        if self._buffer:
            self.stats.noise_bytes += len(self._buffer)
            self._buffer.clear()


@dataclass(slots=True)
class RtuReceiver:
    """Frame Modbus RTU replies (unit, PDU, CRC) out of a byte stream.

    RTU has no transaction id and no length field, and the stream carries
    no timing that survives a USB adapter or a gateway, so a reply is found
    by content: only a position holding the unit asked and the function
    asked (or its exception) can start it, and its length follows from the
    request. Each such position is CRC-checked once, when its bytes are in;
    one that fails is passed over for good. A CRC-valid frame there that does
    not answer (an echo of the request, a wrong count) is discarded whole.

    Bytes that precede the accepted reply are laid out, from their start, as
    whole CRC-valid frames (discarded, counted for the unit asked) and the
    rest as noise. The buffer keeps at most :data:`RTU_BUFFER` bytes, and one
    call looks through at most :data:`RTU_LUMP` bytes.

    A late reply of exactly the shape of the request in flight (same unit,
    function and count) cannot be told from its answer on RTU; one that
    arrives before the request is sent is thrown away with the rest.
    """

    stats: LinkStats
    _buffer: bytearray = field(default_factory=bytearray)
    _request: Request | None = None
    _sent: bytes = b""
    _base: int = 0  # stream offset of the buffer's first byte
    _settled: int = 0  # stream offset up to which bytes are accounted for
    _scan: int = 0  # stream offset of the next position to look at
    # Candidates whose bytes are not all in yet: (stream offset they need, start).
    _waiting: list[tuple[int, int]] = field(default_factory=list)
    # The running CRC register: its state before each byte from _chain_start.
    _chain: list[int] = field(default_factory=list)
    _chain_start: int = 0

    @property
    def buffered(self) -> int:
        """Return how many bytes are held, waiting for the rest of a frame."""
        return len(self._buffer)

    def expect(self, request: Request) -> bytes:
        """Throw away what is waiting; return the frame to send for ``request``."""
        self._settle(self._base + len(self._buffer), None)
        self._drop_settled()
        self._request = request
        self._sent = _seal(bytes((request.unit,)) + request.pdu)
        self._scan = self._settled
        self._waiting = []
        return self._sent

    def abandon(self) -> None:
        """End the transaction without a reply: account for what arrived in it."""
        if self._request is not None:
            self._settle(self._base + len(self._buffer), self._request.unit)
            self._drop_settled()
            self._request = None
            self._waiting = []

    def feed(self, data: bytes) -> bytes | None:
        """Take bytes; return the reply PDU once the request in flight is answered.

        A lump longer than :data:`RTU_LUMP` is a babbling line (a reply
        never arrives with that much behind it): its front is settled
        without looking for the reply in it, which bounds one call's work.
        """
        if len(data) > RTU_LUMP:
            self._buffer += data[:-RTU_LUMP]
            data = data[-RTU_LUMP:]
            unit = None if self._request is None else self._request.unit
            self._settle(self._base + len(self._buffer), unit)
            self._drop_settled()
            self._scan = max(self._scan, self._settled)
        self._buffer += data
        answer = None
        if self._request is not None:
            answer = self._look()
        self._bound()
        return answer

    def _look(self) -> bytes | None:
        request = self._request
        assert request is not None
        buffer = self._buffer
        base = self._base
        end = base + len(buffer)
        waiting = self._waiting
        # Earlier positions first: those that were waiting for their bytes.
        while waiting and waiting[0][0] <= end:
            _, start = heapq.heappop(waiting)
            if start >= self._settled and (answer := self._try(start)) is not None:
                return answer
        unit = request.unit
        function = request.function
        scan = self._scan
        while True:
            found = buffer.find(unit, scan - base)
            if found < 0 or found + 1 >= len(buffer):
                # Look at a lone unit byte again when its function is in.
                self._scan = end if found < 0 else base + found
                return None
            start = base + found
            scan = start + 1
            if buffer[found + 1] in (function, function | EXCEPTION_BIT) and start >= self._settled:
                self._scan = scan
                if (answer := self._try(start)) is not None:
                    return answer
                # A discarded frame moved on what is settled; look after it.
                scan = max(scan, self._settled)
                buffer = self._buffer
                base = self._base
                end = base + len(buffer)

    def _try(self, start: int) -> bytes | None:
        """Decide the candidate at ``start``: the reply, a frame to discard, or nothing."""
        request = self._request
        assert request is not None
        buffer = self._buffer
        at = start - self._base
        have = len(buffer) - at
        sent = self._sent
        function = request.function
        need = 0
        # An echo of our own request is not its answer (a 0x06 reply is one).
        if function != WRITE_SINGLE:
            if have >= len(sent):
                if buffer[at : at + len(sent)] == sent:
                    self._discard(start, len(sent))
                    return None
            elif buffer[at:] == sent[:have]:
                need = start + len(sent)
        if buffer[at + 1] & EXCEPTION_BIT:
            length = 5
        elif function in (WRITE_SINGLE, WRITE_MULTIPLE):
            length = 8
        elif have < 3:
            length = 3  # the byte count is not in yet
        else:
            length = 5 + buffer[at + 2]
        if have < length:
            heapq.heappush(
                self._waiting, (start + length if not need else min(need, start + length), start)
            )
            return None
        if length > 3 and self._sealed(start, length):
            pdu = bytes(buffer[at + 1 : at + length - 2])
            if request.answered_by(pdu):
                self._settle(start, request.unit)
                self._settled = start + length
                self._drop_settled()
                self._request = None
                self._waiting = []
                return pdu
            self._discard(start, length)
            return None
        if need:
            heapq.heappush(self._waiting, (need, start))
        return None

    def _sealed(self, start: int, length: int) -> bool:
        """Return whether the bytes from ``start`` form a frame whose CRC checks.

        Candidates may overlap (noise such as ``01 03 FA`` repeated starts one
        every three bytes), so the CRC of each window is not run over its
        bytes again: one running CRC register is kept over the stream, and a
        window's CRC follows from the register at its two ends, as the CRC is
        linear. Each byte enters the running register once.
        """
        chain = self._chain
        first = self._chain_start
        if not chain or not first <= start < first + len(chain):
            chain.clear()
            chain.append(0xFFFF)
            first = self._chain_start = start
        buffer = self._buffer
        need = start + length - first  # index of the state after the window
        if need >= len(chain):
            state = chain[-1]
            step = _STEP
            for byte in buffer[first + len(chain) - 1 - self._base : start + length - self._base]:
                state = (state >> 8) ^ step[(state ^ byte) & 0xFF]
                chain.append(state)
        low, high = _advance(length)
        begin = chain[start - first] ^ 0xFFFF
        return chain[need] ^ low[begin & 0xFF] ^ high[begin >> 8] == 0

    def _discard(self, start: int, length: int) -> None:
        request = self._request
        assert request is not None
        self._settle(start, request.unit)
        self.stats.pack(request.unit).discarded += 1
        self._settled = start + length

    def _settle(self, upto: int, unit: int | None) -> None:
        """Account for the bytes from what is settled up to ``upto``.

        They are walked from their start as whole frames while frames fit
        (discarded for ``unit``, or stray without a request), and the rest is
        noise. Each byte is CRC-checked a bounded number of times.
        """
        buffer = self._buffer
        at = self._settled - self._base
        stop = upto - self._base
        stats = self.stats
        while stop - at >= 4:
            length = _frame_length(buffer, at, stop)
            if length is None:
                break
            if unit is None:
                stats.stray_frames += 1
            else:
                stats.pack(unit).discarded += 1
            at += length
        stats.noise_bytes += max(stop - at, 0)
        self._settled = max(self._settled, upto)

    def _drop_settled(self) -> None:
        cut = self._settled - self._base
        if cut > 0:
            del self._buffer[:cut]
            self._base = self._settled
            if (stale := self._base - self._chain_start) > 0:
                del self._chain[:stale]
                self._chain_start = self._base

    def _bound(self) -> None:
        """Keep the buffer bounded: what is older than any frame could be is settled."""
        excess = len(self._buffer) - RTU_BUFFER
        if excess <= 0:
            return
        # No candidate needs more than a frame's length of bytes, so every
        # position before the last frame's length is decided already.
        upto = self._base + len(self._buffer) - RTU_MAX_FRAME
        if upto > self._settled:
            unit = None if self._request is None else self._request.unit
            self._settle(upto, unit)
        self._drop_settled()
        self._scan = max(self._scan, self._settled)


# The CRC register's change for each byte value (the table of rtu.crc16).
_STEP: Final = CRC_TABLE


@cache
def _advance(length: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Return how a difference in the CRC register carries over ``length`` bytes.

    The map is linear, so it is kept as two tables, for the low and the high
    byte of the difference, built from the 16 single bits.
    """
    bits = []
    for bit in range(16):
        value = 1 << bit
        for _ in range(length):
            value = (value >> 8) ^ _STEP[value & 0xFF]
        bits.append(value)
    tables = []
    for shift in (0, 8):
        table = [0] * 256
        for index in range(1, 256):
            low = index & -index
            table[index] = table[index ^ low] ^ bits[low.bit_length() - 1 + shift]
        tables.append(tuple(table))
    return tables[0], tables[1]


def _seal(body: bytes) -> bytes:
    return body + crc16(body).to_bytes(2, "little")


def _frame_length(buffer: bytearray, at: int, stop: int) -> int | None:
    """Return the length of a CRC-valid frame starting at ``at`` (ending by ``stop``)."""
    function = buffer[at + 1]
    lengths: tuple[int, ...]
    if function & EXCEPTION_BIT:
        lengths = (5,) if function & 0x7F in _READS | _SINGLE_WRITES | _MULTIPLE_WRITES else ()
    elif function in _READS:
        lengths = (5 + buffer[at + 2], 8)
    elif function in _SINGLE_WRITES:
        lengths = (8,)
    elif function in _MULTIPLE_WRITES:
        lengths = (8, 9 + buffer[at + 6]) if stop - at > 6 else (8,)
    else:
        lengths = ()
    for length in lengths:
        if at + length <= stop and crc16(buffer[at : at + length]) == 0:
            return length
    return None
