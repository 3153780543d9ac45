"""Broadcast a simulated bank as a Pylontech master does on its CAN port.

A Pylontech bank on CAN is not asked anything: the master pack sends the
bank's aggregate every second (0x351 limits, 0x355 SoC/SoH, 0x356
measurements, and 0x359/0x35C in protocol V1.2 or 0x35A/0x35F in V1.3, and
0x35E with the maker's name), little-endian, whether or not an inverter
listens. This personality does the same from a SimBank, in two ways:

- ``start_virtual`` sends through a python-can bus of any interface (the
  tests use python-can's in-process ``virtual`` bus);
- ``start_server`` is a minimal socketcand daemon on TCP, so that a client
  using python-can's ``socketcand`` interface talks to a real server over a
  real socket, as it would to a Raspberry Pi with a CAN hat. It serves the
  daemon's raw mode only: greeting, ``open``, ``rawmode``, then frames out
  and ``send`` commands in; what clients send is kept for the tests.

The daemon's ``wire`` plays the generic wire faults of
:mod:`simulator.wire_faults` on each cycle it sends, the bank being "pack" 0: a
cycle lost, late, dripped, cut in half, buried in noise or followed by
junk; another device's frames (the same values under IDs 0x100 up) for a
wrong address; the same IDs as 29-bit extended frames for a wrong function;
the client's own last frame echoed; a connection reset; a daemon restart.

The frames are packed here with ``struct``, written from the vendor's table
and independently of the driver's DBC file, so a test of the driver against
this simulator compares two readings of the document, not one with itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
import logging
import struct
import time
from typing import Any, Final

import can

from .bank import SimBank, SimPack
from .wire_faults import Delivery, WireFaults, guarded_write, reset_connection

_LOGGER = logging.getLogger(__name__)

V12: Final = "1.2"
V13: Final = "1.3"
# Every frame once a second, as the document says.
PERIOD: Final = 1.0
# What a Pylontech master asks of the inverter: 53.2 V charge, 45.0 V
# discharge cut-off; currents scale with the packs on the bus (about 0.5 C
# charge, 1 C discharge).
CHARGE_VOLTAGE: Final = 53.2
DISCHARGE_VOLTAGE: Final = 45.0
CHARGE_C_RATE: Final = 0.5
DISCHARGE_C_RATE: Final = 1.0
MANUFACTURER: Final = b"PYLON   "
# A pack this hot raises the cell-temperature alarm, this much hotter the
# protection (0x359 byte 2 bit 3, byte 0 bit 3).
ALARM_TEMPERATURE: Final = 50.0
PROTECTION_TEMPERATURE: Final = 60.0
# V1.3 0x35A: two bits per condition, 0b01 raised.
RAISED: Final = 0b01

type Frame = tuple[int, bytes]


def _clamp(value: float, low: int, high: int) -> int:
    return min(max(round(value), low), high)


def _u16(value: float) -> int:
    return _clamp(value, 0, 0xFFFF)


def _s16(value: float) -> int:
    return _clamp(value, -0x8000, 0x7FFF)


@dataclass(kw_only=True)
class Faults:
    """What a test or a developer can make the master send instead of the truth.

    ``protection_bits`` and ``alarm_bits`` are ORed into 0x359 bytes 0-1 and
    2-3 (V1.2); ``alarm_pairs`` into 0x35A as a 64-bit little-endian word
    (V1.3). ``replace`` swaps a frame's bytes for others, or drops it when
    the value is None. ``silent`` stops the broadcast altogether.
    """

    protection_bits: int = 0
    alarm_bits: int = 0
    alarm_pairs: int = 0
    replace: dict[int, bytes | None] = field(default_factory=dict)
    silent: bool = False


def encode_frames(
    bank: SimBank, *, version: str = V12, faults: Faults | None = None
) -> list[Frame]:
    """Return one cycle of frames for the bank as its master would send them.

    The packs that are off the communication bus are not counted, but their
    current still flows; a bank whose packs are all off the bus sends nothing.
    """
    faults = faults or Faults()
    if faults.silent:
        return []
    counted = [pack for pack in bank.packs if pack.online]
    if not counted:
        return []
    wired = [pack for pack in counted if pack.connected]
    frames = _limits(wired), _soc_soh(counted, version), _measurements(bank, counted)
    cycle: list[Frame] = list(frames)
    if version == V12:
        cycle.append(_protections(counted, faults))
        cycle.append(_requests(counted))
    else:
        cycle.append(_alarms(counted, faults))
    cycle.append((0x35E, MANUFACTURER))
    if version == V13:
        cycle.append(_info(counted))
    result: list[Frame] = []
    for arbitration_id, data in cycle:
        sent = faults.replace.get(arbitration_id, data)
        if sent is not None:
            result.append((arbitration_id, sent))
    return result


def _limits(wired: Sequence[SimPack]) -> Frame:
    capacity = sum(pack.design_capacity for pack in wired)
    # 0x351: u16 0.1 V, s16 0.1 A, s16 0.1 A (positive on CAN), u16 0.1 V.
    data = struct.pack(
        "<HhhH",
        _u16(CHARGE_VOLTAGE * 10),
        _s16(CHARGE_C_RATE * capacity * 10),
        _s16(DISCHARGE_C_RATE * capacity * 10),
        _u16(DISCHARGE_VOLTAGE * 10),
    )
    return 0x351, data


def _soc_soh(packs: Sequence[SimPack], version: str) -> Frame:
    remaining = sum(pack.remaining_capacity for pack in packs)
    full = sum(pack.full_capacity for pack in packs)
    soc = _clamp(100 * remaining / full if full > 0 else 0, 0, 100)
    soh = _clamp(sum(pack.soh for pack in packs) / len(packs), 0, 100)
    data = struct.pack("<HH", soc, soh)
    if version == V13:
        # Two more bytes that Pylontech leaves at zero.
        data += bytes(2)
    return 0x355, data


def _measurements(bank: SimBank, packs: Sequence[SimPack]) -> Frame:
    voltage = sum(pack.voltage for pack in packs) / len(packs)
    # The master reports the whole bank's current, off-bus packs included.
    current = sum(pack.current for pack in bank.packs)
    temperature = sum(_cell_temperature(pack) for pack in packs) / len(packs)
    data = struct.pack("<hhh", _s16(voltage * 100), _s16(current * 10), _s16(temperature * 10))
    return 0x356, data


def _cell_temperature(pack: SimPack) -> float:
    return sum(pack.cell_temperatures) / len(pack.cell_temperatures)


def _protections(packs: Sequence[SimPack], faults: Faults) -> Frame:
    hottest = max(_cell_temperature(pack) for pack in packs)
    protection = faults.protection_bits
    alarm = faults.alarm_bits
    if hottest >= PROTECTION_TEMPERATURE:
        protection |= 1 << 3  # byte 0 bit 3: cell over temperature
    if hottest >= ALARM_TEMPERATURE:
        alarm |= 1 << 3  # byte 2 bit 3: cell high temperature
    data = struct.pack("<HHB", protection & 0xFFFF, alarm & 0xFFFF, len(packs)) + b"PN"
    return 0x359, data


def _requests(packs: Sequence[SimPack]) -> Frame:
    remaining = sum(pack.remaining_capacity for pack in packs)
    full = sum(pack.full_capacity for pack in packs)
    soc = 100 * remaining / full if full > 0 else 0
    flags = 0
    if soc < 100:
        flags |= 1 << 7  # charge enable
    if soc > 5:
        flags |= 1 << 6  # discharge enable
    else:
        flags |= 1 << 4  # force charge II: charge before shutting down
    return 0x35C, bytes([flags, 0])


def _alarms(packs: Sequence[SimPack], faults: Faults) -> Frame:
    pairs = faults.alarm_pairs
    hottest = max(_cell_temperature(pack) for pack in packs)
    if hottest >= PROTECTION_TEMPERATURE:
        pairs |= RAISED << 6  # byte 0 bits 6-7: high temperature alarm
    if hottest >= ALARM_TEMPERATURE:
        pairs |= RAISED << (32 + 6)  # byte 4 bits 6-7: high temperature warning
    return 0x35A, struct.pack("<Q", pairs & 0xFFFF_FFFF_FFFF_FFFF)


def _info(packs: Sequence[SimPack]) -> Frame:
    capacity = sum(pack.full_capacity for pack in packs)
    # Chemistry "LI", hardware version 2.1, capacity in Ah, software 170.
    return 0x35F, b"LI" + bytes([2, 1]) + struct.pack("<HH", _u16(capacity), 170)


@dataclass(kw_only=True)
class RunningCan:
    """A master broadcasting through a python-can bus until stopped."""

    bank: SimBank
    version: str
    faults: Faults
    _bus: Any
    _task: asyncio.Task[None]

    async def stop(self) -> None:
        """Stop broadcasting and release the bus."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(None, self._bus.shutdown)


async def start_virtual(
    bank: SimBank,
    channel: str,
    *,
    interface: str = "virtual",
    version: str = V12,
    period: float = PERIOD,
    faults: Faults | None = None,
) -> RunningCan:
    """Broadcast ``bank`` on a python-can bus, a cycle every ``period`` seconds."""
    loop = asyncio.get_running_loop()
    bus = await loop.run_in_executor(None, lambda: can.Bus(interface=interface, channel=channel))
    chosen = faults or Faults()

    async def broadcast() -> None:
        while True:
            for arbitration_id, data in encode_frames(bank, version=version, faults=chosen):
                message = can.Message(
                    arbitration_id=arbitration_id, data=data, is_extended_id=False
                )
                await loop.run_in_executor(None, bus.send, message)
            await asyncio.sleep(period)

    task = asyncio.create_task(broadcast())
    return RunningCan(bank=bank, version=version, faults=chosen, _bus=bus, _task=task)


# --------------------------------------------------------------------------
# A minimal socketcand daemon

# python-can reads each handshake answer with one receive and compares it
# whole, so nothing may follow "< ok >" until it has surely been read.
_HANDSHAKE_GRACE: Final = 0.05
_LONGEST_COMMAND: Final = 256


@dataclass(kw_only=True)
class RunningServer:
    """A listening socketcand daemon; ``port`` is the port actually bound.

    ``received`` holds every frame a client sent (``< send ... >``), in order.
    """

    host: str
    port: int
    bank: SimBank
    version: str
    faults: Faults
    channel: str
    received: list[Frame] = field(default_factory=list)
    wire: WireFaults = field(default_factory=WireFaults)
    restarts: int = 0
    cycles: int = 0  # cycles broadcast (or spoiled by the wire) so far
    _cycled: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _reopening: set[asyncio.Task[None]] = field(default_factory=set)
    _down: bool = False
    _echo: bytes = b""
    _clients: set[asyncio.StreamWriter] = field(default_factory=set)
    _raw: set[asyncio.StreamWriter] = field(default_factory=set)
    _task: asyncio.Task[None] | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)
    _got_frame: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        """Bring a restarted daemon back when its fault is mended."""
        self.wire.watch(self._wire_changed)

    async def wait_cycles(self, count: int) -> None:
        """Wait until ``count`` more cycles have gone out."""
        target = self.cycles + count
        while self.cycles < target:
            self._cycled.clear()
            await self._cycled.wait()

    async def wait_for_received(self, count: int) -> list[Frame]:
        """Wait until clients have sent ``count`` frames; return them all."""
        while len(self.received) < count:
            self._got_frame.clear()
            await self._got_frame.wait()
        return list(self.received)

    async def stop(self) -> None:
        """Stop listening and drop every client, as a daemon that is killed."""
        self.wire.cancel()
        for task in list(self._reopening):
            task.cancel()
        await asyncio.gather(*self._reopening, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._server is not None:
            self._server.close()
        for writer in list(self._clients):
            writer.transport.abort()
        for handler in list(self._handlers):
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _cycle(self, *, offset: int = 0, width: int = 3) -> bytes:
        now = time.time()
        stamp = f"{int(now)}.{int(now % 1 * 1_000_000):06d}"
        frames = encode_frames(self.bank, version=self.version, faults=self.faults)
        return "".join(
            f"< frame {arbitration_id + offset:0{width}X} {stamp} {data.hex().upper()} >"
            for arbitration_id, data in frames
        ).encode("ascii")

    def _delivery(self) -> Delivery:
        """Return how this cycle reaches the clients, the wire's faults applied."""
        payload = self._cycle()
        return self.wire.deliver(
            0,
            self._echo,
            payload or None,
            # Another device on the cable: its frames under other IDs.
            foreign=lambda: self._cycle(offset=0x100),
            # The same IDs as 29-bit extended frames: not the bank's.
            misfunction=lambda: self._cycle(width=8),
        )

    async def _broadcast(self, period: float) -> None:
        while True:
            delivery = self._delivery()
            if delivery.restart:
                self._restart()
            elif delivery.reset:
                for writer in list(self._raw):
                    reset_connection(writer)
            else:
                for writer in list(self._raw):
                    self.wire.play(delivery, guarded_write(writer))
            self.cycles += 1
            self._cycled.set()
            await asyncio.sleep(period)

    def _restart(self) -> None:
        """Close the daemon's port and every client, as a daemon restarting does."""
        if self._down or self._server is None:
            return
        self._down = True
        self.restarts += 1
        self._server.close()
        for writer in list(self._clients):
            reset_connection(writer)

    def _wire_changed(self) -> None:
        if self._down and not self.wire.restarting:
            task = asyncio.get_running_loop().create_task(self._reopen())
            self._reopening.add(task)
            task.add_done_callback(self._reopening.discard)
            self.wire.comeback(task)

    async def _reopen(self) -> None:
        if not self._down:
            return
        self._down = False
        if self._server is not None:
            await self._server.wait_closed()
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=_LONGEST_COMMAND * 4
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self._clients.add(writer)
        try:
            writer.write(b"< hi >")
            await writer.drain()
            while True:
                command = await _read_command(reader)
                if command is None:
                    return
                await self._answer(command, writer)
        except (ConnectionError, OSError):
            return
        finally:
            self._clients.discard(writer)
            self._raw.discard(writer)
            writer.transport.abort()
            if task is not None:
                self._handlers.discard(task)

    async def _answer(self, command: str, writer: asyncio.StreamWriter) -> None:
        words = command.split()
        match words:
            case ["open", channel]:
                answer = "< ok >" if channel == self.channel else "< error could not open bus >"
                writer.write(answer.encode("ascii"))
            case ["rawmode"]:
                writer.write(b"< ok >")
                await writer.drain()
                await asyncio.sleep(_HANDSHAKE_GRACE)
                self._raw.add(writer)
            case ["send", identifier, length, *data]:
                try:
                    frame = (int(identifier, 16), bytes(int(byte, 16) for byte in data))
                except ValueError:
                    writer.write(b"< error bad frame >")
                else:
                    if int(length, 16) == len(frame[1]):
                        self.received.append(frame)
                        self._got_frame.set()
                        # What an echo plays back: the frame as a daemon sends one.
                        self._echo = (
                            f"< frame {frame[0]:03X} {time.time():.6f} {frame[1].hex().upper()} >"
                        ).encode("ascii")
            case _:
                writer.write(b"< error unknown command >")
        await writer.drain()


async def _read_command(reader: asyncio.StreamReader) -> str | None:
    """Return the text between the next ``<`` and ``>``, or None when the client left."""
    try:
        chunk = await reader.readuntil(b">")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    start = chunk.rfind(b"<")
    if start < 0:
        return ""
    return chunk[start + 1 : -1].decode("ascii", errors="replace").strip()


async def start_server(
    bank: SimBank,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    version: str = V12,
    period: float = PERIOD,
    channel: str = "can0",
    faults: Faults | None = None,
) -> RunningServer:
    """Serve ``bank`` as a socketcand daemon with one CAN interface, ``channel``."""
    running = RunningServer(
        host=host, port=port, bank=bank, version=version, faults=faults or Faults(), channel=channel
    )
    server = await asyncio.start_server(running._serve, host, port, limit=_LONGEST_COMMAND * 4)
    running._server = server
    running.port = int(server.sockets[0].getsockname()[1])
    running._task = asyncio.create_task(running._broadcast(period))
    _LOGGER.debug("socketcand simulator on %s:%s", host, running.port)
    return running


async def _serve_forever(port: int, version: str, period: float) -> None:
    """Serve a four-pack bank until killed, printing the port bound."""
    from .bank import make_bank  # noqa: PLC0415 - only the command line needs it

    running = await start_server(make_bank(4), port=port, version=version, period=period)
    print(running.port, flush=True)  # the parent process reads it
    try:
        await asyncio.Event().wait()
    finally:
        await running.stop()


if __name__ == "__main__":
    # python -m simulator.pylontech_can [port [version [period]]]: a
    # socketcand daemon in a process of its own, for tests that cross a
    # process boundary.
    import sys

    given = sys.argv[1:]
    defaults = ["0", V12, str(PERIOD)]
    port_text, version_text, period_text = (given + defaults[len(given) :])[:3]
    asyncio.run(_serve_forever(int(port_text), version_text, float(period_text)))
