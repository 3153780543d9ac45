"""An RS485 line of Modbus RTU packs, served over a pseudo-terminal, raw TCP or Modbus TCP.

The Modbus TCP server (``modbus_server.py``) plays well-behaved devices
behind a gateway (see ``pace_modbus.py``), but a real RS485 line does more than that: unit 0 is a
real pack on a Seplos bank, replies arrive with a broken CRC, with garbage in
front, cut short or from the wrong address, and a master pack may already be
polling the others. None of that can be played through a gateway's
framing; so the line is played here at the byte level, with the frames
built independently of the drivers' client.

A personality only says what a pack holds: ``read(unit, function, address,
count)`` returns registers, coils, a Modbus exception code or None (no pack
there: silence). The line does the framing, the faults and the master.
Optionally (JK-PB) a personality takes one-register writes (function 0x10:
``read`` returns ``[]`` to accept), sends bytes of its own before a reply
(``preamble(unit, function, address)``) and names a ``master_unit`` that
speaks unasked in master mode.

Three ways to reach the line, as a user's hardware would:

- :meth:`ModbusLine.open_pty`: a pseudo-terminal pair; the driver opens the
  slave end's name as its serial port (a USB RS485 adapter). Given a baud
  rate, the line runs at that speed and the packs take their answer time
  (``simulator/paced.py``); without one, bytes move at once.
- :meth:`ModbusLine.serve_rtu_tcp`: raw RTU frames over TCP (a transparent
  gateway such as an Elfin EW11). Given a baud rate, the line behind the
  gateway runs at that speed as a paced pty's does.
- :meth:`ModbusLine.serve_modbus_tcp`: Modbus TCP (a protocol-converting
  gateway), where a silent unit gets exception 0x0B as such gateways send.

In master mode (:meth:`ModbusLine.start_master`) a master pack polls the
others by itself and every byte of that traffic goes to whoever listens;
the line counts every byte it receives, so a test can prove a listener
sent nothing.

Besides the per-pack :class:`Fault` of a reply's content, ``wire`` holds the
generic wire faults of :mod:`simulator.wire_faults` (noise bursts, late replies,
echoes, foreign and wrong-function frames, dripped replies, a connection
reset, a gateway restart, one missed reply); they apply on every way in and
to the master's traffic. A pseudo-terminal has no connection to reset or
port to restart: there those two faults are silence.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
import contextlib
from dataclasses import dataclass, field
from enum import StrEnum
import os
import tty
from typing import Final, Protocol

from custom_components.rack_battery.protocol.rtu import Frame, RtuSplitter, read_request, seal

from .paced import PacedPort
from .wire_faults import Delivery, WireFaults, guarded_write, reset_connection

GATEWAY_TARGET_SILENT: Final = 0x0B
WRITE_MULTIPLE: Final = 0x10
ILLEGAL_FUNCTION: Final = 0x01
ILLEGAL_VALUE: Final = 0x03
WRITE_SINGLE: Final = 0x06
GARBAGE: Final = b"\x00\xff\x5a\xa5"


def master_request(unit: int, function: int, address: int, count: int) -> bytes:
    """Return a master's request: a read, or a write of ``count`` zero registers (0x10)."""
    if function != WRITE_MULTIPLE:
        return read_request(unit, function, address, count)
    head = bytes((unit, function)) + address.to_bytes(2, "big") + count.to_bytes(2, "big")
    return seal(head + bytes((2 * count,)) + bytes(2 * count))


class Fault(StrEnum):
    """What can go wrong with one pack's replies."""

    SILENT = "silent"  # no reply at all: the client waits out its timeout
    CRC = "crc"  # the reply's CRC is wrong
    GARBAGE = "garbage"  # noise on the line before the reply
    PARTIAL = "partial"  # the reply is cut off half way
    WRONG_ADDRESS = "wrong_address"  # the reply names the next unit


type _Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _mbap(header: bytes, unit: int, pdu: bytes) -> bytes:
    """Return a Modbus TCP reply: the request's transaction and protocol ids, unit, PDU."""
    return header[0:4] + (len(pdu) + 1).to_bytes(2, "big") + bytes((unit,)) + pdu


class Personality(Protocol):
    """What the packs on the line hold."""

    def read(
        self, unit: int, function: int, address: int, count: int
    ) -> list[int] | list[bool] | int | None:
        """Return registers, coils, an exception code, or None for a unit with no pack.

        A personality that takes writes also has ``write(unit, address,
        values)``, returning True (done), an exception code, or None
        (silence).
        """


@dataclass
class ModbusLine:
    """One RS485 line: the packs, their faults, and what has been heard on it."""

    packs: Personality
    faults: dict[int, Fault] = field(default_factory=dict)
    wire: WireFaults = field(default_factory=WireFaults)
    received: int = 0  # bytes that arrived from outside, over every way in
    rounds: int = 0  # master polling rounds completed
    restarts: int = 0  # times the gateway closed its port
    # The last requests heard as RTU frames, whole (address to CRC), oldest first.
    heard: deque[bytes] = field(default_factory=lambda: deque(maxlen=256))
    # The pseudo-terminals opened, paced or not, and the connections of a
    # paced gateway, with what crossed each.
    ports: list[PacedPort] = field(default_factory=list, repr=False)
    _outputs: set[Callable[[bytes], None]] = field(default_factory=set, repr=False)
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _servers: list[asyncio.Server] = field(default_factory=list, repr=False)
    _master: asyncio.Task[None] | None = field(default=None, repr=False)
    _round_done: asyncio.Condition | None = field(default=None, repr=False)
    # Ways in over TCP: (host, bound port, connection handler), to reopen after a restart.
    _listening: list[tuple[str, int, _Handler]] = field(default_factory=list, repr=False)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, repr=False)
    _down: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        """Bring a restarted gateway back when its fault is mended."""
        self.wire.watch(self._wire_changed)

    def _wire_changed(self) -> None:
        if self._down and not self.wire.restarting:
            task = asyncio.get_running_loop().create_task(self._reopen())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            self.wire.comeback(task)

    def _restart(self) -> None:
        """Close the gateway's port and every connection, as a gateway rebooting does."""
        if self._down:
            return
        self._down = True
        self.restarts += 1
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            reset_connection(writer)

    async def _reopen(self) -> None:
        if not self._down:
            return
        self._down = False
        for server in self._servers:
            server.close_clients()
            await server.wait_closed()
        self._servers.clear()
        for host, port, serve in self._listening:
            self._servers.append(await asyncio.start_server(serve, host, port))

    def _foreign_pdu(self, unit: int, function: int, data: bytes) -> tuple[int, bytes] | None:
        """Return the next unit up that answers, and its reply PDU to the same question."""
        for step in range(1, 16):
            other = (unit + step) & 0xFF
            if (pdu := self.pdu(other, function, data)) is not None and not pdu[0] & 0x80:
                return other, pdu
        return None

    def _misfunction_pdu(self, unit: int, function: int, data: bytes) -> bytes | None:
        """Return the pack's sound reply PDU with another read function's code."""
        pdu = self.pdu(unit, function, data)
        if pdu is None:
            return None
        return bytes((0x04 if function == 0x03 else 0x03,)) + pdu[1:]

    def _delivery_rtu(self, unit: int, function: int, data: bytes) -> Delivery:
        """Return how the reply to one RTU request reaches the line, every fault applied."""
        reply = self.rtu_reply(unit, function, data)

        def foreign() -> bytes | None:
            found = self._foreign_pdu(unit, function, data)
            if found is None:
                return None
            other, pdu = found
            return self._preamble(other, function, data) + seal(bytes((other,)) + pdu)

        def misfunction() -> bytes | None:
            pdu = self._misfunction_pdu(unit, function, data)
            return None if pdu is None else seal(bytes((unit,)) + pdu)

        return self.wire.deliver(
            unit,
            seal(bytes((unit, function)) + data),
            reply or None,
            foreign=foreign,
            misfunction=misfunction,
        )

    def _carry_out(
        self,
        delivery: Delivery,
        outputs: Sequence[Callable[[bytes], None]],
        writer: asyncio.StreamWriter | None,
    ) -> None:
        if delivery.restart:
            self._restart()
            return
        if delivery.reset:
            for each in [writer] if writer is not None else list(self._writers):
                reset_connection(each)
            return
        for output in outputs:
            self.wire.play(delivery, output)

    def pdu(self, unit: int, function: int, data: bytes) -> bytes | None:  # noqa: PLR0911
        """Return the reply PDU (function and data) to a request, or None for silence."""
        if function == WRITE_SINGLE or (
            function == WRITE_MULTIPLE and getattr(self.packs, "write", None) is not None
        ):
            return self._write_pdu(unit, function, data)
        if function not in (0x01, 0x02, 0x03, 0x04, WRITE_MULTIPLE) or len(data) < 4:
            return bytes((function | 0x80, ILLEGAL_FUNCTION))
        address = int.from_bytes(data[0:2], "big")
        count = int.from_bytes(data[2:4], "big")
        result = self.packs.read(unit, function, address, count)
        if result is None:
            return None
        if isinstance(result, int):
            return bytes((function | 0x80, result))
        if function == WRITE_MULTIPLE:
            return bytes((function,)) + data[0:4]  # the write taken: address and count echoed
        if function in (0x01, 0x02):
            packed = bytearray((len(result) + 7) // 8)
            for index, bit in enumerate(result):
                if bit:
                    packed[index // 8] |= 1 << (index % 8)
            return bytes((function, len(packed))) + bytes(packed)
        raw = b"".join(int(value).to_bytes(2, "big") for value in result)
        return bytes((function, len(raw))) + raw

    def _write_pdu(self, unit: int, function: int, data: bytes) -> bytes | None:
        """Answer a write (0x06, 0x10) through the personality's ``write``, if it has one."""
        write = getattr(self.packs, "write", None)
        if write is None or len(data) < 4:
            return bytes((function | 0x80, ILLEGAL_FUNCTION))
        address = int.from_bytes(data[0:2], "big")
        if function == WRITE_SINGLE:
            values = [int.from_bytes(data[2:4], "big")]
            echo = data[0:4]
        else:
            count = int.from_bytes(data[2:4], "big")
            raw = data[5:]
            if len(data) < 5 or data[4] != 2 * count or len(raw) != 2 * count:
                return bytes((function | 0x80, ILLEGAL_VALUE))
            values = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
            echo = data[0:4]
        result = write(unit, address, values)
        if result is None:
            return None
        if isinstance(result, int) and not isinstance(result, bool):
            return bytes((function | 0x80, result))
        return bytes((function,)) + echo

    def rtu_reply(self, unit: int, function: int, data: bytes) -> bytes:  # noqa: PLR0911
        """Return the bytes that go on the line in reply to a request, faults applied."""
        fault = self.faults.get(unit)
        if fault is Fault.SILENT:
            return b""
        pdu = self.pdu(unit, function, data)
        if pdu is None:
            return b""
        lead = self._preamble(unit, function, data)
        frame = lead + seal(bytes((unit,)) + pdu)
        if fault is Fault.CRC:
            return frame[:-1] + bytes((frame[-1] ^ 0xFF,))
        if fault is Fault.GARBAGE:
            return GARBAGE + frame
        if fault is Fault.PARTIAL:
            return frame[: len(frame) // 2]
        if fault is Fault.WRONG_ADDRESS:
            return lead + seal(bytes(((unit + 1) & 0xFF,)) + pdu)
        return frame

    def _preamble(self, unit: int, function: int, data: bytes) -> bytes:
        """Return what a personality sends before its reply (JK-PB's 55AA frame), if anything."""
        preamble = getattr(self.packs, "preamble", None)
        if preamble is None or len(data) < 2:
            return b""
        lead: bytes = preamble(unit, function, int.from_bytes(data[0:2], "big"))
        return lead

    def _serve_rtu(
        self,
        data: bytes,
        splitter: RtuSplitter,
        write: Callable[[bytes], None],
        writer: asyncio.StreamWriter | None = None,
    ) -> None:
        self.received += len(data)
        if self._master is not None:
            # A second master on the line: the packs hear garbage, answer nothing.
            return
        for _, frame in splitter.feed(data):
            if isinstance(frame, Frame) and frame.is_request:
                # The splitter took it for a request only with its CRC sound,
                # so sealing it again gives back the bytes that came.
                self.heard.append(seal(bytes((frame.unit, frame.function)) + frame.data))
                self.wire.request_arrived()
                delivery = self._delivery_rtu(frame.unit, frame.function, frame.data)
                if writer is None and (delivery.reset or delivery.restart):
                    continue  # a serial line has no connection to drop
                self._carry_out(delivery, [write], writer)

    def open_pty(self, *, baudrate: int | None = None, answer_time: float = 0.0) -> str:
        """Open a pseudo-terminal pair and return the name of the end a driver opens.

        With ``baudrate`` the line is paced: requests take their wire time,
        replies leave at baud/10 bytes per second, ``answer_time`` seconds
        after the request's last byte.
        """
        controller, device = os.openpty()
        # Raw, so that nothing is echoed or translated before a driver opens it.
        tty.setraw(device)
        name = os.ttyname(device)
        loop = asyncio.get_running_loop()
        splitter = RtuSplitter()

        def raw_write(data: bytes) -> None:
            with contextlib.suppress(OSError):
                os.write(controller, data)

        port = PacedPort(raw_write, baudrate=baudrate, answer_time=answer_time)
        self.ports.append(port)
        write = port.write

        def readable() -> None:
            try:
                data = os.read(controller, 4096)
            except OSError:
                return
            port.heard(len(data))
            self._serve_rtu(data, splitter, write)

        loop.add_reader(controller, readable)
        self._outputs.add(write)

        def close() -> None:
            port.cancel()
            loop.remove_reader(controller)
            self._outputs.discard(write)
            os.close(controller)
            os.close(device)

        self._closers.append(close)
        return name

    async def _serve_tcp(self, host: str, port: int, handle: _Handler) -> tuple[str, int]:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.add(writer)
            try:
                await handle(reader, writer)
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                self._writers.discard(writer)
                writer.close()

        server = await asyncio.start_server(serve, host, port)
        self._servers.append(server)
        bound = int(server.sockets[0].getsockname()[1])
        self._listening.append((host, bound, serve))
        return host, bound

    async def serve_rtu_tcp(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        baudrate: int | None = None,
        answer_time: float = 0.0,
    ) -> tuple[str, int]:
        """Serve the line as raw RTU over TCP; return (host, bound port).

        With ``baudrate`` the RS485 line behind the gateway is paced, as
        :meth:`open_pty` paces a pty: each connection's requests take their
        wire time and its replies leave at baud/10 bytes per second,
        ``answer_time`` after the request's last byte.
        """

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            splitter = RtuSplitter()
            paced = PacedPort(guarded_write(writer), baudrate=baudrate, answer_time=answer_time)
            if paced.paced:
                self.ports.append(paced)
            write = paced.write
            self._outputs.add(write)
            try:
                while data := await reader.read(4096):
                    paced.heard(len(data))
                    self._serve_rtu(data, splitter, write, writer)
            finally:
                paced.cancel()
                self._outputs.discard(write)

        return await self._serve_tcp(host, port, handle)

    async def serve_modbus_tcp(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Serve the line as Modbus TCP, as a gateway does; return (host, bound port)."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                header = await reader.readexactly(7)
                self.received += 7
                length = int.from_bytes(header[4:6], "big")
                body = await reader.readexactly(length - 1)
                self.received += len(body)
                unit = header[6]
                fault = self.faults.get(unit)
                if fault is Fault.SILENT:
                    continue
                function, data = body[0], body[1:]
                self.wire.request_arrived()
                pdu = self.pdu(unit, function, data)
                if pdu is None:
                    pdu = bytes((function | 0x80, GATEWAY_TARGET_SILENT))
                if fault is Fault.WRONG_ADDRESS:
                    unit = (unit + 1) & 0xFF
                reply = _mbap(header, unit, pdu)
                if fault is Fault.GARBAGE:
                    reply = GARBAGE + reply
                elif fault in (Fault.PARTIAL, Fault.CRC):
                    reply = reply[: len(reply) // 2]

                def foreign(
                    header: bytes = header,
                    unit: int = unit,
                    function: int = function,
                    data: bytes = data,
                ) -> bytes | None:
                    found = self._foreign_pdu(unit, function, data)
                    return None if found is None else _mbap(header, *found)

                def misfunction(
                    header: bytes = header,
                    unit: int = unit,
                    function: int = function,
                    data: bytes = data,
                ) -> bytes | None:
                    pdu = self._misfunction_pdu(unit, function, data)
                    return None if pdu is None else _mbap(header, unit, pdu)

                delivery = self.wire.deliver(
                    unit, header + body, reply, foreign=foreign, misfunction=misfunction
                )
                self._carry_out(delivery, [guarded_write(writer)], writer)
                await writer.drain()

        return await self._serve_tcp(host, port, handle)

    def start_master(
        self, polls: Sequence[tuple[int, int, int, int]], *, period: float = 0.002
    ) -> None:
        """Let a master pack poll the line: (unit, function, address, count) in turn, forever.

        Each request and the reply it gets (or silence) go to every way out,
        as they would appear on a shared RS485 line.
        """
        self._round_done = asyncio.Condition()
        # A master that speaks for itself sends no request to its own unit.
        own = getattr(self.packs, "master_unit", None)

        async def poll() -> None:
            assert self._round_done is not None
            while True:
                for unit, function, address, count in polls:
                    request = master_request(unit, function, address, count)
                    delivery = self._delivery_rtu(unit, function, request[2:-2])
                    outputs = list(self._outputs)
                    if unit != own:
                        for output in outputs:
                            output(request)
                    self.wire.request_arrived()
                    self._carry_out(delivery, outputs, None)
                    if not delivery.late:
                        # A master waits for a reply that is still coming in;
                        # a late one it gives up on, and asks the next pack.
                        await self.wire.settled()
                    await asyncio.sleep(period)
                async with self._round_done:
                    self.rounds += 1
                    self._round_done.notify_all()

        self._master = asyncio.create_task(poll())

    async def wait_rounds(self, count: int) -> None:
        """Wait until the master has polled the line ``count`` more times."""
        assert self._round_done is not None
        async with self._round_done:
            target = self.rounds + count
            await self._round_done.wait_for(lambda: self.rounds >= target)

    async def stop(self) -> None:
        """Stop the master and close every way in."""
        self.wire.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._master is not None:
            self._master.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._master
            self._master = None
        for server in self._servers:
            server.close()
            server.close_clients()
            await server.wait_closed()
        self._servers.clear()
        for close in self._closers:
            close()
        self._closers.clear()
