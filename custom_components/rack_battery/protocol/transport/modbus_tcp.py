"""Carry Modbus requests over TCP, to a Modbus TCP device or a TCP-to-RTU gateway.

Rack batteries speak Modbus RTU on RS485; Home Assistant usually reaches
them through a gateway that turns Modbus TCP into RTU. Such a gateway
answers for packs it cannot reach itself: exception 0x0B when the pack on
the line stayed silent, 0x0A when it has no path to that unit at all. Both
mean one pack is not responding while the bus is fine, and that is how they
are reported here. Cheaper gateways simply let the request time out, which
is reported the same way.

Errors keep the two kinds of silence apart: a request without an answer is
one pack not responding (PackNotResponding), while a connection that cannot
be opened or is lost is the bus being down (BusUnavailable). After a lost
connection the next request reconnects. Any other Modbus exception is the
pack refusing what was asked, a FrameError that names the code.

The client is the project's own (``protocol/modbus.py`` frames the
replies): it retries nothing and reconnects nothing in the background, as
the poll decides whether a silent pack is asked again, and it accepts only
the reply to the request in flight. Everything else that arrives is
counted in :attr:`ModbusTransport.stats`.

The same transaction logic serves every Modbus wire: :class:`ModbusTransport`
is parameterised by how it opens its byte stream and how replies are framed
in it; the RTU wires (a serial port, raw RTU frames over TCP) live in
``modbus_rtu.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import asyncio
from collections.abc import Sequence
from typing import Final, Protocol

from ..errors import BusUnavailable, FrameError, PackNotResponding
from ..linkstats import LinkStats
from ..modbus import (
    EXCEPTION_BIT,
    MAX_COILS,
    MAX_READ,
    MAX_WRITE,
    READ_COILS,
    READ_HOLDING,
    READ_INPUT,
    MbapReceiver,
    Request,
    coils_of,
    read_request,
    registers_of,
    write_multiple_request,
    write_single_request,
)
from ..timing import GATEWAY_HOP, RTU_OVERHEAD, FamilyTiming, ReplyTimer

__all__ = [
    "EXCEPTION_NAMES",
    "MAX_COILS",
    "MAX_READ",
    "MAX_WRITE",
    "ModbusExceptionError",
    "ModbusTcpTransport",
    "ModbusTransport",
]

# Modbus exception codes, as the Modbus application protocol names them.
EXCEPTION_NAMES: Final[dict[int, str]] = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "server device failure",
    0x05: "acknowledge",
    0x06: "server device busy",
    0x07: "negative acknowledge",
    0x08: "memory parity error",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target device failed to respond",
}
# What a gateway says when the unit behind it cannot be reached.
GATEWAY_PATH_UNAVAILABLE: Final = 0x0A
GATEWAY_TARGET_SILENT: Final = 0x0B


class ModbusExceptionError(FrameError):
    """A device answered with a Modbus exception other than the gateway's two.

    The code is kept so a driver can react to one in particular, such as
    0x02 (illegal data address) from firmware that predates a register.
    """

    def __init__(self, device_id: int, code: int) -> None:
        """Name the device and the code in the message."""
        self.device_id = device_id
        self.code = code
        name = EXCEPTION_NAMES.get(code, "unknown exception")
        super().__init__(f"device {device_id} answered Modbus exception 0x{code:02X} ({name})")


class Receiver(Protocol):
    """Frames replies out of a byte stream (``protocol/modbus.py``)."""

    def expect(self, request: Request) -> bytes:
        """Throw away what is waiting; return the frame to send."""

    def abandon(self) -> None:
        """End the transaction without a reply."""

    def feed(self, data: bytes) -> bytes | None:
        """Take bytes; return the reply PDU once the request is answered."""


class ModbusLink(asyncio.Protocol):
    """One open byte stream: hands data to the receiver, wakes the waiting request."""

    def __init__(self, receiver: Receiver, where: str) -> None:
        """Frame with ``receiver``; ``where`` names the bus in messages."""
        self.receiver = receiver
        self.where = where
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.waiter: asyncio.Future[bytes] | None = None
        self._gone = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport to write to (an opener may have handed it already)."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        """Frame what arrived; a reply to the request in flight ends its wait."""
        reply = self.receiver.feed(data)
        waiter = self.waiter
        if reply is not None and waiter is not None and not waiter.done():
            waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail the request in flight: the bus is gone until the next connect."""
        self.lost = True
        self._gone.set()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            reason = f": {exc}" if exc else ""
            waiter.set_exception(BusUnavailable(f"lost the connection to {self.where}{reason}"))

    def write(self, data: bytes) -> None:
        """Send bytes."""
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        """Start closing the stream; the receiver keeps nothing for another."""
        if self.transport is not None:
            self.transport.close()

    async def closed(self, timeout: float) -> None:  # noqa: ASYNC109 - a bound, not a deadline
        """Close the stream and wait until it is (a serial port's lock is let go then).

        A peer that never acknowledges the close is not waited for longer
        than ``timeout``: the stream is aborted.
        """
        transport = self.transport
        if transport is None:
            return
        transport.close()
        try:
            async with asyncio.timeout(timeout):
                await self._gone.wait()
        except TimeoutError:
            transport.abort()


class ModbusTransport(ABC):
    """One Modbus connection, one transaction on it at a time.

    Behind a gateway all packs share one half-duplex RS485 line, and a
    gateway handles one request at a time however many arrive; so requests
    are strictly serialised with a lock, and callers wait on the lock rather
    than in a queue that could grow.
    """

    def __init__(
        self,
        *,
        timeout: float = 1.0,
        frame_gap: float | None = None,
        baudrate: int | None = None,
        wire_timed: bool = False,
    ) -> None:
        """Set the timing; nothing is opened until needed.

        ``frame_gap`` is the quiet time, in seconds, kept between the end of
        one transaction and the start of the next. A gateway forwards
        requests to the RS485 line as fast as they come, while BMS documents
        ask for a pause between frames (PACE: more than 100 ms) that a pack
        may need to be ready for the next request. Left unset, it is the
        family's own (:meth:`use_timing`) where the line's speed is known.

        ``baudrate`` is the speed of the RS485 line (behind a gateway, if
        known). ``wire_timed`` makes each request wait as long as the wire
        and the family need (``protocol/timing.py``), then as long as the
        pack has been seen to need; without it, or without a baud rate, a
        request waits ``timeout``.
        """
        self.timeout = timeout
        self.frame_gap = frame_gap if frame_gap is not None else 0.0
        self._gap_given = frame_gap is not None
        self.timer = ReplyTimer(baudrate=baudrate if wire_timed else None, default=timeout)
        self.stats = LinkStats()
        self._lock = asyncio.Lock()
        self._link: ModbusLink | None = None
        self._quiet_until = 0.0  # event-loop time

    def use_timing(self, timing: FamilyTiming) -> None:
        """Time requests by a family's documented figures (its driver says which).

        The latest driver's answer time counts (a scan tries one family after
        another on a shared transport), but a frame gap once asked for is
        kept while the transport lives: a bank that needs it may still be
        polled on this bus after a scan for another family.
        """
        self.timer.timing = timing
        if not self._gap_given and self.timer.baudrate:
            self.frame_gap = max(self.frame_gap, timing.gap)

    @property
    @abstractmethod
    def where(self) -> str:
        """Return where the bus is, for messages."""

    @abstractmethod
    def _new_receiver(self) -> Receiver:
        """Return a receiver that frames this wire's replies."""

    @abstractmethod
    async def _open_link(self, link: ModbusLink) -> None:
        """Open the stream with ``link`` as its protocol; raise BusUnavailable if it cannot."""

    @property
    def connected(self) -> bool:
        """Return whether a connection is open (as far as this side knows)."""
        return self._link is not None and not self._link.lost

    async def connect(self) -> None:
        """Open the connection; raise BusUnavailable if it cannot be opened."""
        async with self._lock:
            await self._open()

    async def close(self) -> None:
        """Close the connection, after any transaction in flight."""
        async with self._lock:
            await self._drop()

    async def read_holding_registers(self, device_id: int, address: int, count: int) -> list[int]:
        """Read holding registers (function 0x03) from one device."""
        request = read_request(device_id, READ_HOLDING, address, count)
        return registers_of(await self._transact(request))

    async def read_input_registers(self, device_id: int, address: int, count: int) -> list[int]:
        """Read input registers (function 0x04) from one device."""
        request = read_request(device_id, READ_INPUT, address, count)
        return registers_of(await self._transact(request))

    async def read_coils(self, device_id: int, address: int, count: int) -> list[bool]:
        """Read coils (function 0x01) from one device."""
        request = read_request(device_id, READ_COILS, address, count)
        return coils_of(await self._transact(request), count)

    async def write_registers(self, device_id: int, address: int, values: Sequence[int]) -> None:
        """Write registers (function 0x10) of one device."""
        await self._transact(write_multiple_request(device_id, address, tuple(values)))

    async def write_register(self, device_id: int, address: int, value: int) -> None:
        """Write one register (function 0x06) of one device."""
        await self._transact(write_single_request(device_id, address, value))

    async def _open(self) -> ModbusLink:
        if self._link is not None and not self._link.lost:
            return self._link
        await self._drop()
        link = ModbusLink(self._new_receiver(), self.where)
        try:
            await self._open_link(link)
        except BaseException:
            # Cancelled or failed while connecting: leave no stream behind.
            link.close()
            raise
        self._link = link
        return link

    async def _drop(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            await link.closed(self.timeout)

    async def _transact(self, request: Request) -> bytes:
        """Send one request; return the PDU of the reply that answers it."""
        request_bytes = len(request.pdu) + RTU_OVERHEAD
        reply_bytes = request.reply_length + RTU_OVERHEAD
        async with self._lock:
            link = await self._open()
            loop = asyncio.get_running_loop()
            if (wait := self._quiet_until - loop.time()) > 0:
                await asyncio.sleep(wait)
                if link.lost:
                    link = await self._open()
            stats = self.stats.pack(request.unit)
            waiter: asyncio.Future[bytes] = loop.create_future()
            link.waiter = waiter
            stats.requests += 1
            timeout = self.timer.timeout(
                request.unit, request_bytes=request_bytes, reply_bytes=reply_bytes
            )
            sent = received = loop.time()
            try:
                link.write(link.receiver.expect(request))
                async with asyncio.timeout(timeout):
                    pdu = await waiter
                received = loop.time()
            except TimeoutError as err:
                stats.timeouts += 1
                self.timer.waited += timeout
                self.timer.missed(
                    request.unit, timeout, request_bytes=request_bytes, reply_bytes=reply_bytes
                )
                raise PackNotResponding(
                    f"device {request.unit} did not answer within {timeout:.3g} s"
                ) from err
            except BusUnavailable:
                await self._drop()
                raise
            finally:
                link.waiter = None
                link.receiver.abandon()
                # The gap runs from the last frame on the line: the reply, or
                # after a silence our own request, long gone by now.
                self._quiet_until = received + self.frame_gap
        self.timer.answered(
            request.unit,
            received - sent,
            request_bytes=request_bytes,
            reply_bytes=len(pdu) + RTU_OVERHEAD,
        )
        stats.replies += 1
        if pdu[0] & EXCEPTION_BIT:
            code = pdu[1]
            if code in (GATEWAY_TARGET_SILENT, GATEWAY_PATH_UNAVAILABLE):
                raise PackNotResponding(
                    f"device {request.unit} did not answer the gateway "
                    f"(Modbus exception 0x{code:02X}, {EXCEPTION_NAMES[code]})"
                )
            raise ModbusExceptionError(request.unit, code)
        return pdu


class ModbusTcpTransport(ModbusTransport):
    """Modbus TCP to a device or to a gateway that turns it into RTU."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 1.0,
        frame_gap: float | None = None,
        baudrate: int | None = None,
        wire_timed: bool = False,
    ) -> None:
        """Remember where the gateway is; nothing is opened until needed.

        ``baudrate`` is the speed of the RS485 line behind the gateway, if
        known; timed by it, a request also allows for the gateway's own hop
        (``timing.GATEWAY_HOP``).
        """
        super().__init__(
            timeout=timeout, frame_gap=frame_gap, baudrate=baudrate, wire_timed=wire_timed
        )
        self.timer.hop = GATEWAY_HOP
        self.host = host
        self.port = port

    @property
    def where(self) -> str:
        """Return host:port, for messages."""
        return f"{self.host}:{self.port}"

    def _new_receiver(self) -> Receiver:
        return MbapReceiver(self.stats)

    async def _open_link(self, link: ModbusLink) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                link.transport, _ = await loop.create_connection(lambda: link, self.host, self.port)
        except TimeoutError as err:
            raise BusUnavailable(
                f"cannot connect to {self.where} within {self.timeout:g} s"
            ) from err
        except OSError as err:
            raise BusUnavailable(
                f"cannot connect to {self.where}: {err.strerror or err!r}"
            ) from err
