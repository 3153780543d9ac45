"""Listen-only mode: read a bank from the traffic of the master pack that polls it.

In a JK-PB bank (a pack at DIP 0) or a Seplos V3 bank (the pack at unit 0)
the master pack polls the others on the RS485 line by itself. A second
master on that line talks over it and both get garbage. So instead of
asking, this listener only hears: it reads the raw RTU byte stream from a
serial port or a transparent TCP gateway, splits it into CRC-checked
frames, pairs each reply with the request before it, and lays the replies
into a per-pack picture that the family's own decoder turns into readings.
It never writes a byte: it has no code path that could.

A JK-PB master reads no registers: it triggers each slave with a
one-register write, and the slave answers with a 300-byte ``55 AA EB 90``
frame, then the write reply. The frame names no unit, so it is laid at the
door of the write reply that follows it, and only if that reply answers the
trigger just heard (a late or foreign frame is discarded and counted). The
master sends its own live and settings frames unasked, each followed by a
write reply from unit 0, so the master pack is heard too.

It has the driver's shape, so the coordinator polls it like any other: a
poll returns the latest reading heard from each pack, and lists as failed a
pack that the master asked and that did not answer, or that has not been
heard within the window. What it heard and threw away is counted in
``stats`` (a :class:`LinkStats`): the master's requests and the replies
taken per pack, requests left unanswered, frames discarded, stray frames
and noise bytes.

:func:`detect_master` tells the config flow that a bus already has a
master: any valid frame arriving while we say nothing was caused by
someone else.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
import contextlib
from dataclasses import dataclass
from typing import ClassVar, Final, Protocol

import serial

from ..bank.model import PackIdentity, PackReading
from .connection import ConnectionSpec, Wire
from .drivers import jk_pb, seplos_v3
from .drivers.base import BmsDriver
from .errors import BusUnavailable, FrameError, PackNotResponding, serial_open_error
from .linkstats import LinkStats
from .rtu import Frame, JkFrame, RtuSplitter, bits, registers

# How long a pack's last reading stands when the master stops asking for it.
DEFAULT_WINDOW: Final = 30.0
READ_BYTES: Final = 4096
# Where the packs of every family that can be listened to sit: units 0..15.
UNITS: Final = range(0, 16)
# The unit of a JK-PB master's write replies after its own frames.
JK_MASTER: Final = 0
WRITE_MULTIPLE: Final = 0x10

Heard = Mapping[tuple[int, int], Sequence[int] | Sequence[bool]]
Decoder = Callable[[int, Heard], PackReading | None]

# Which families can be listened to, and what decodes what their master hears.
DECODERS: Final[Mapping[str, tuple[Decoder, range]]] = {
    seplos_v3.FAMILY: (seplos_v3.decode_heard, seplos_v3.SeplosV3Driver.addresses),
    jk_pb.FAMILY: (jk_pb.decode_heard, jk_pb.JkPbDriver.addresses),
}


class ByteSource(Protocol):
    """Somewhere raw bus bytes come from; it is only ever read."""

    @property
    def where(self) -> str:
        """Return where the bus is, for messages."""

    async def open(self, on_data: Callable[[bytes], None], on_lost: Callable[[], None]) -> None:
        """Start delivering bytes; raise BusUnavailable if the bus cannot be reached."""

    async def close(self) -> None:
        """Stop."""


class TcpSource:
    """The byte stream of a transparent RS485-to-TCP gateway."""

    def __init__(self, host: str, port: int) -> None:
        """Remember the gateway."""
        self.host = host
        self.port = port
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def where(self) -> str:
        """Return host:port."""
        return f"{self.host}:{self.port}"

    async def open(self, on_data: Callable[[bytes], None], on_lost: Callable[[], None]) -> None:
        """Connect and read in a task."""
        try:
            reader, self._writer = await asyncio.open_connection(self.host, self.port)
        except OSError as err:
            raise BusUnavailable(f"cannot connect to {self.where}: {err}") from err

        async def pump() -> None:
            try:
                while data := await reader.read(READ_BYTES):
                    on_data(data)
            except OSError:
                pass
            on_lost()

        self._task = asyncio.create_task(pump())

    async def close(self) -> None:
        """Disconnect."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()


class SerialSource:
    """The byte stream of a serial port (a USB RS485 adapter), opened read-only in spirit."""

    def __init__(self, port: str, *, baudrate: int) -> None:
        """Remember the port and its speed."""
        self.port = port
        self.baudrate = baudrate
        self._serial: serial.Serial | None = None

    @property
    def where(self) -> str:
        """Return the port's path."""
        return self.port

    async def open(self, on_data: Callable[[bytes], None], on_lost: Callable[[], None]) -> None:
        """Open the port in a worker thread, then read it from the event loop."""

        def opened() -> serial.Serial:
            return serial.Serial(self.port, self.baudrate, exclusive=True, timeout=0)

        try:
            port = await asyncio.to_thread(opened)
        except (OSError, ValueError) as err:
            raise serial_open_error(self.port, err) from err
        self._serial = port
        loop = asyncio.get_running_loop()

        def readable() -> None:
            try:
                data = port.read(READ_BYTES)
            except serial.SerialException:
                loop.remove_reader(port.fileno())
                on_lost()
                return
            if data:
                on_data(bytes(data))

        loop.add_reader(port.fileno(), readable)

    async def close(self) -> None:
        """Close the port."""
        port, self._serial = self._serial, None
        if port is not None:
            asyncio.get_running_loop().remove_reader(port.fileno())
            port.close()


# The speed each family's port runs at out of the box.
BAUDRATES: Final[Mapping[str, int]] = {
    seplos_v3.FAMILY: seplos_v3.BAUDRATE,
    jk_pb.FAMILY: jk_pb.BAUDRATE,
}


def source_for(spec: ConnectionSpec, *, baudrate: int | None = None) -> ByteSource:
    """Return the byte source a connection spec names (RTU wires only)."""
    if spec.wire is Wire.MODBUS_RTU_TCP and spec.host and spec.port:
        return TcpSource(spec.host, spec.port)
    if spec.wire is Wire.MODBUS_RTU_SERIAL and spec.serial_port:
        return SerialSource(spec.serial_port, baudrate=spec.baudrate or baudrate or 9600)
    raise ValueError(f"cannot listen on {spec.wire}: only raw RTU wires carry the master's frames")


def open_listener(
    spec: ConnectionSpec, family: str, *, window: float = DEFAULT_WINDOW
) -> BusListener:
    """Return a listener for a family's bank on the raw RTU bus a spec names."""
    return BusListener(source_for(spec, baudrate=BAUDRATES[family]), family, window=window)


def _owner(
    block: JkFrame, request: Frame | None, reply: Frame, settings: jk_pb.FrameSettings | None
) -> int | None:
    """Return the unit a JK-PB frame belongs to, by the write reply after it; None if none.

    A slave's frame counts only when the reply answers the trigger just
    heard, for that frame's type (and a settings frame names that pack's own
    DIP address); the master's own frames come with a reply from unit 0
    that nobody asked for.
    """
    if reply.function != WRITE_MULTIPLE or reply.is_request:
        return None
    trigger = jk_pb.TRIGGERS.get(block.kind)
    if trigger is None or reply.start != trigger or reply.count != 1:
        return None
    if request is None and reply.unit != JK_MASTER:
        return None
    if settings is not None and settings.address not in (None, reply.unit):
        return None
    return reply.unit


@dataclass
class _Pack:
    heard: dict[tuple[int, int], list[int] | list[bool]]
    settings: jk_pb.FrameSettings | None = None  # from a JK-PB settings frame
    reading: PackReading | None = None
    heard_at: float | None = None  # event-loop time of the last reading
    unanswered: bool = False  # the master's last request to it went unanswered


class BusListener(BmsDriver):
    """Readings of a bank, built only from what its master pack and the others say."""

    family: ClassVar[str] = "listen"
    addresses: ClassVar[range] = range(0, 16)

    def __init__(self, source: ByteSource, family: str, *, window: float = DEFAULT_WINDOW) -> None:
        """Listen on ``source`` for a bank of ``family``."""
        self.source = source
        self.listened_family = family
        self._decode, self.family_addresses = DECODERS[family]
        self.window = window
        # A reply nobody asked for is thrown away anyway: it is not looked for.
        self._splitter = RtuSplitter(UNITS, unasked=False)
        self._packs: dict[int, _Pack] = {}
        self._waiting: Frame | None = None
        self._block: JkFrame | None = None  # a JK-PB frame, until its write reply
        self._open = False
        self.stats = LinkStats()
        self.frames = 0  # valid frames heard
        self.readings_heard: Counter[int] = Counter()  # readings decoded, per pack
        # Set whenever bytes arrive; whoever waits for the bus clears it first.
        self.activity = asyncio.Event()

    async def connect(self) -> None:
        """Start listening."""
        if self._open:
            return
        await self.source.open(self._on_data, self._on_lost)
        self._open = True

    async def close(self) -> None:
        """Stop listening."""
        self._open = False
        await self.source.close()

    def _on_lost(self) -> None:
        self._open = False
        # Nothing heard before the line went is combined with what comes
        # after it: once listening again, each pack is read from frames
        # heard anew (a block heard before a gap is as stale as the gap).
        self._packs.clear()
        self._waiting = None
        self._block = None
        self.readings_heard.clear()
        self.activity.set()  # wake whoever waits to hear something: nothing will come

    def _pack(self, unit: int) -> _Pack:
        return self._packs.setdefault(unit, _Pack(heard={}))

    def _on_data(self, data: bytes) -> None:
        self.activity.set()
        splitter = self._splitter
        dropped = splitter.dropped
        for request, frame in splitter.feed(data):
            self.frames += 1
            if isinstance(frame, JkFrame):
                if self._block is not None:
                    self._discard()  # two frames in a row: the first had no reply
                self._block = frame
                continue
            block, self._block = self._block, None
            if frame.is_request:
                if block is not None:
                    self._discard()
                if self._waiting is not None:
                    # The master moved on without a reply: that pack is silent.
                    self._pack(self._waiting.unit).unanswered = True
                    self.stats.pack(self._waiting.unit).timeouts += 1
                self._waiting = frame
                self.stats.pack(frame.unit).requests += 1
                continue
            if block is not None:
                if self._claim(block, request, frame):
                    continue
                self._discard()
            if request is None:
                self._discard()  # answers nothing asked: late, foreign or broken
                continue
            self._waiting = None
            self.stats.pack(request.unit).replies += 1
            if not frame.is_exception:
                self._absorb(request, frame)
        self.stats.noise_bytes += splitter.dropped - dropped

    def _discard(self) -> None:
        """Count a frame thrown away: against the pack asked, or as stray."""
        if self._waiting is not None:
            self.stats.pack(self._waiting.unit).discarded += 1
        else:
            self.stats.stray_frames += 1

    def _claim(self, block: JkFrame, request: Frame | None, reply: Frame) -> bool:
        """Lay a JK-PB frame at the door of the write reply after it; False if it is not its own."""
        settings: jk_pb.FrameSettings | None = None
        if block.kind == jk_pb.FRAME_SETTINGS:
            with contextlib.suppress(FrameError):
                settings = jk_pb.decode_settings_frame(block.raw)
        unit = _owner(block, request, reply, settings)
        if unit is None:
            return False
        if request is not None:
            self._waiting = None
            self.stats.pack(unit).replies += 1
        pack = self._pack(unit)
        pack.unanswered = False
        if block.kind == jk_pb.FRAME_SETTINGS:
            pack.settings = settings or pack.settings
            return True
        try:
            reading = jk_pb.decode_live_frame(unit, block.raw)
        except FrameError:
            return True  # a frame of another type (device information): nothing to read
        self._heard(unit, pack, reading)
        return True

    def _heard(self, unit: int, pack: _Pack, reading: PackReading) -> None:
        pack.reading = reading
        pack.heard_at = asyncio.get_running_loop().time()
        self.readings_heard[unit] += 1

    def _absorb(self, request: Frame, reply: Frame) -> None:
        pack = self._pack(request.unit)
        pack.unanswered = False
        if request.function not in (0x01, 0x02, 0x03, 0x04):
            return
        try:
            if request.function in (0x01, 0x02):
                values: list[int] | list[bool] = bits(reply, request.count)
            else:
                values = registers(reply)
            if len(values) != request.count:
                return
            pack.heard[request.function, request.start] = values
            reading = self._decode(request.unit, pack.heard)
        except (FrameError, IndexError):
            return
        if reading is not None:
            self._heard(request.unit, pack, reading)

    async def read_pack(self, address: int) -> PackReading:
        """Return the latest reading heard from a pack, if it is recent and not since silent."""
        if not self._open:
            raise BusUnavailable(f"not listening on {self.source.where}")
        pack = self._packs.get(address)
        if pack is None or pack.reading is None or pack.heard_at is None:
            raise PackNotResponding(f"pack {address} not heard on the bus")
        if pack.unanswered:
            raise PackNotResponding(f"pack {address} did not answer the master")
        age = asyncio.get_running_loop().time() - pack.heard_at
        if age > self.window:
            raise PackNotResponding(f"pack {address} not heard for {age:.0f} s")
        return pack.reading

    async def read_identity(self, address: int) -> PackIdentity:
        """Return what listening can tell about a pack: its slot, cell count and capacity."""
        reading = await self.read_pack(address)
        settings = self._packs[address].settings
        cells = len(reading.cell_voltages) or None
        capacity = reading.design_capacity
        if settings is not None:
            cells = settings.cell_count or cells
            capacity = settings.design_capacity or capacity
        return PackIdentity(
            address=address,
            family=self.listened_family,
            cell_count=cells,
            design_capacity=capacity,
        )

    def is_silent(self, address: int) -> bool:
        """Return whether the master's last request to a pack went unanswered."""
        pack = self._packs.get(address)
        return pack is not None and pack.unanswered

    def packs_heard(self) -> list[int]:
        """Return the addresses of the packs with a reading, in order."""
        return sorted(unit for unit, pack in self._packs.items() if pack.reading is not None)

    async def hear(
        self, *, within: float, rounds: int = 3, addresses: Collection[int] | None = None
    ) -> list[int]:
        """Listen until the master has gone round its packs, or time is up; return who was heard.

        Nobody announces how many packs the master polls, so a round is
        over once some pack has been read ``rounds`` times: every pack the
        master asks had its turn in between. Given ``addresses``, listening
        also ends as soon as each of them has been heard once.
        """
        start = Counter(self.readings_heard)

        def enough() -> bool:
            if addresses is not None and all(self.readings_heard[a] > 0 for a in addresses):
                return True
            return any(heard - start[unit] >= rounds for unit, heard in self.readings_heard.items())

        try:
            async with asyncio.timeout(within):
                while self._open and not enough():
                    self.activity.clear()
                    await self.activity.wait()
        except TimeoutError:
            pass
        return self.packs_heard()


async def detect_master(source: ByteSource, *, window: float = 2.0) -> bool:
    """Return whether another master is polling the bus, without sending a byte.

    Any valid RTU frame that arrives while we stay silent was caused by
    someone else's request: the bus has a master already.
    """
    # A master's requests (and a JK-PB master's frames) give it away; replies
    # need not be looked for.
    splitter = RtuSplitter(unasked=False)
    frames = 0
    done = asyncio.Event()

    def on_data(data: bytes) -> None:
        nonlocal frames
        for _ in splitter.feed(data):
            frames += 1
            done.set()

    await source.open(on_data, done.set)
    try:
        async with asyncio.timeout(window):
            await done.wait()
    except TimeoutError:
        pass
    finally:
        await source.close()
    return frames > 0
