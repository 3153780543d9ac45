"""An RS485 line of packs speaking the Pylon ASCII framing, and what can go wrong on it.

Pylontech, PACE and Seplos V2 packs share the framing and differ in what
they put in INFO and in who answers: a Pylontech master relays for its
slaves (and says 0x91 for one it cannot reach), while PACE and Seplos packs
each answer their own address and a pack that is off is simply silent. A
:class:`Dialect` says which, and which commands it answers with what; the
machinery here turns a request into a reply for any of them.

The line can be served two ways, as the real thing is reached: over raw TCP
(a transparent gateway) and on a pseudo-terminal pair (a USB RS485 adapter:
the driver opens the slave end's tty by name); either way at a baud rate,
with the packs' answer time, if asked (``simulator/paced.py``).

:class:`LineFaults` breaks replies the way a real line does, for the whole
line or for one pack: silence, a wrong checksum, noise instead of a reply,
noise before or after a sound reply, a frame with bytes lost from its
middle, and a reply that claims another address. A pack dropping off the
bus is the bank's own ``take_off_bus``. ``refuse_bank_reads`` stands for
a master whose firmware answers pack by pack only and refuses the group
read (command byte 0xFF) as an unknown command. A slave whose replies a
fault spoils is one the master cannot hear: its group read leaves it out. ``LineFaults.wire`` holds
the generic wire faults of :mod:`simulator.wire_faults`, which every simulated
wire plays alike (late replies, echoes, noise bursts, dripped replies, a
reply to another command, a connection reset, a gateway restart, ...). A
pseudo-terminal has no connection: there a reset or a restart is silence.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
import contextlib
from dataclasses import dataclass, field, replace
from enum import Enum
import os
import tty
from typing import Final, Protocol

from custom_components.rack_battery.protocol.errors import FrameError
from custom_components.rack_battery.protocol.pylon.frame import (
    CID1_BATTERY,
    RTN_CHKSUM_ERROR,
    RTN_CID2_INVALID,
    RTN_COMMUNICATION_ERROR,
    RTN_FORMAT_ERROR,
    RTN_INVALID_DATA,
    RTN_LCHKSUM_ERROR,
    RTN_OK,
    RTN_VER_ERROR,
    Frame,
    checksum,
    decode_frame,
    encode_frame,
)
from custom_components.rack_battery.protocol.pylon.profiles import VendorProfile

from .bank import SimBank, SimPack, takes_write
from .paced import PacedPort, answer_time
from .wire_faults import (
    NOTHING,
    SURVIVABLE,
    Delivery,
    WireFaults,
    guarded_write,
    reset_connection,
)

_HEX: Final = frozenset(b"0123456789ABCDEF")
WHOLE_BANK: Final = 0xFF
CID2_PROTOCOL_VERSION: Final = 0x4F

# Builds a reply's INFO for one pack.
Builder = Callable[[SimPack, VendorProfile], bytes]
# Carries out a command that changes a pack (the request's INFO given);
# returns the return code.
Writer = Callable[[SimBank, SimPack, bytes], int]
# Builds the master's reply's INFO for every pack it can reach.
BankBuilder = Callable[[Sequence[SimPack], VendorProfile], bytes]


class Fault(Enum):
    """One way a reply goes wrong on the line."""

    SILENCE = "silence"  # no reply at all
    BAD_CHECKSUM = "bad_checksum"  # one checksum character off
    GARBAGE = "garbage"  # noise that starts like a frame, instead of the reply
    GARBAGE_BEFORE = "garbage_before"  # noise, then the sound reply
    GARBAGE_AFTER = "garbage_after"  # the sound reply, then noise
    PARTIAL = "partial"  # bytes lost from the middle of the frame
    WRONG_ADDRESS = "wrong_address"  # a sound frame from the next address up


# Noise as RS485 makes it when the line turns around: no "~", no CR.
NOISE: Final = b"\x00\xff\x13\xfeNOISE\x80"


@dataclass
class LineFaults:
    """Faults in force, for the whole line or for single packs (by address)."""

    line: set[Fault] = field(default_factory=set)
    packs: dict[int, set[Fault]] = field(default_factory=dict)
    # The master refuses command byte 0xFF with "CID2 invalid".
    refuse_bank_reads: bool = False
    wire: WireFaults = field(default_factory=WireFaults)

    def inject(self, fault: Fault, address: int | None = None) -> None:
        """Turn a fault on, for one pack or (address None) for every reply."""
        (self.line if address is None else self.packs.setdefault(address, set())).add(fault)

    def mend(self, fault: Fault | None = None, address: int | None = None) -> None:
        """Turn one fault (or all, fault None) off for one pack or the line."""
        faults = self.line if address is None else self.packs.get(address, set())
        if fault is None:
            faults.clear()
        else:
            faults.discard(fault)

    def active(self, address: int) -> set[Fault]:
        """Return the faults that apply to a reply at ``address``."""
        return self.line | self.packs.get(address, set())

    def cuts_off(self, address: int) -> bool:
        """Return whether the master, relaying for the pack at ``address``, hears nothing usable.

        Every fault of the pack's own replies but noise around a sound
        frame, and every wire fault after which its sound reply does not
        arrive. A group read (command byte 0xFF) leaves such a slave out of
        its count, as a master does with a slave it cannot reach.
        """
        spoiled = self.packs.get(address, set()) - {Fault.GARBAGE_BEFORE, Fault.GARBAGE_AFTER}
        wire = self.wire.packs.get(address)
        return bool(spoiled) or (wire is not None and wire not in SURVIVABLE)

    def apply(self, address: int, reply: bytes) -> bytes | None:
        """Return ``reply`` as the faulty line delivers it (None: nothing arrives)."""
        faults = self.active(address)
        if Fault.SILENCE in faults:
            return None
        if Fault.GARBAGE in faults:
            return b"~" + NOISE + b"\r"
        if Fault.WRONG_ADDRESS in faults:
            frame = decode_frame(reply)
            reply = encode_frame(
                frame.ver, (frame.adr + 1) & 0xFF, frame.cid1, frame.cid2, frame.info
            )
        if Fault.BAD_CHECKSUM in faults:
            last = reply[-2]
            wrong = b"0" if last != ord("0") else b"1"
            reply = reply[:-2] + wrong + b"\r"
        if Fault.PARTIAL in faults:
            # The head and the tail arrive, a run of the middle is lost.
            middle = len(reply) // 2
            reply = reply[: middle - 4] + reply[middle + 4 :]
        if Fault.GARBAGE_BEFORE in faults:
            reply = NOISE + reply
        if Fault.GARBAGE_AFTER in faults:
            reply = reply + NOISE
        return reply


@dataclass(frozen=True, kw_only=True)
class Dialect:
    """How one vendor's packs answer on the line."""

    profile: VendorProfile
    # CID2 -> (INFO builder, whether the request's INFO is the command byte).
    answers: Mapping[int, tuple[Builder, bool]]
    # Pylontech: the lowest-addressed pack answers for every pack.
    relayed: bool = False
    # CID2 -> builder of the master's answer to command byte 0xFF.
    bank_answers: Mapping[int, BankBuilder] = field(default_factory=dict)
    # CID2 -> what a command that changes a pack does (answered with no INFO).
    writes: Mapping[int, Writer] = field(default_factory=dict)


def _looks_like_a_frame(request: bytes) -> bool:
    body = request[1:-1]
    return (
        request.startswith(b"~")
        and request.endswith(b"\r")
        and len(body) >= 16
        and not len(body) % 2
        and all(char in _HEX for char in body)
    )


def _refusal(request: bytes, profile: VendorProfile) -> tuple[int, Frame | None]:
    """Return the return code a BMS gives a request, and the request."""
    body = request[1:-1]
    if checksum(body[:-4]) != int(body[-4:], 16):
        return RTN_CHKSUM_ERROR, None
    try:
        frame = decode_frame(request)
    except FrameError:
        # With markers, hex and checksum sound, only LENGTH can be wrong.
        return RTN_LCHKSUM_ERROR, None
    if frame.cid2 == CID2_PROTOCOL_VERSION:
        # "Get protocol version" is the one command answered whatever VER says.
        return RTN_OK, frame
    if frame.ver != profile.ver:
        return RTN_VER_ERROR, frame
    if frame.cid1 != CID1_BATTERY:
        return RTN_CID2_INVALID, frame
    return RTN_OK, frame


def _respond(pack: SimPack, frame: Frame, dialect: Dialect) -> tuple[int, bytes]:
    """Return the return code and INFO answering a well-formed request to ``pack``."""
    if frame.cid2 not in dialect.answers:
        return RTN_CID2_INVALID, b""
    build, addressed = dialect.answers[frame.cid2]
    expected = bytes((pack.address,)) if addressed else b""
    if len(frame.info) != len(expected):
        return RTN_FORMAT_ERROR, b""
    if frame.info != expected:
        # The command byte must repeat the address the frame went to.
        return RTN_INVALID_DATA, b""
    return RTN_OK, build(pack, dialect.profile)


def _acknowledge_only(write: Writer, pack: SimPack, info: bytes) -> int:
    """Return the code a well-formed command would get, changing nothing.

    The command is carried out on a copy of the pack in a bank of its own,
    which is then thrown away: the BMS says "done" and does nothing.
    """
    ghost = replace(pack, protections=set(pack.protections), warnings=set(pack.warnings))
    return write(SimBank(packs=[ghost]), ghost, info)


def answer(
    bank: SimBank, request: bytes, dialect: Dialect, faults: LineFaults | None = None
) -> bytes | None:
    """Return the line's reply to one request, or None where the line stays silent.

    ``request`` runs from ``~`` to the carriage return.
    """
    if not _looks_like_a_frame(request):
        return None  # not a frame: nothing on the bus recognises it
    address = int(request[3:5], 16)
    by_address = {pack.address: pack for pack in bank.packs}
    if address not in by_address:
        return None
    master = by_address[min(by_address)]
    # Who hears the request: the master relaying for everyone, or the pack itself.
    listener = master if dialect.relayed else by_address[address]
    if not listener.online:
        return None
    code, frame = _refusal(request, dialect.profile)
    info = b""
    if code == RTN_OK and frame is not None:
        pack = by_address[address]
        if (
            frame.info == bytes((WHOLE_BANK,))
            and frame.cid2 in dialect.bank_answers
            and pack is master
        ):
            if faults is not None and faults.refuse_bank_reads:
                code = RTN_CID2_INVALID
            else:
                # The master answers for every pack it can reach, and only
                # for those: a block has no address and no "absent" mark,
                # so a slave it cannot reach is left out of the count and
                # the blocks after it move up a place.
                reachable = [
                    each
                    for each in bank.packs
                    if each.online
                    and (each is master or faults is None or not faults.cuts_off(each.address))
                ]
                info = dialect.bank_answers[frame.cid2](reachable, dialect.profile)
        elif pack.online and frame.cid2 in dialect.writes:
            taken = takes_write(pack)
            if taken is None:
                return None  # the BMS ignores the command: nothing comes back
            code = (
                dialect.writes[frame.cid2](bank, pack, frame.info)
                if taken
                else _acknowledge_only(dialect.writes[frame.cid2], pack, frame.info)
            )
        elif pack.online:
            code, info = _respond(pack, frame, dialect)
        else:
            # The master relays to the slave, hears nothing, and says so.
            code = RTN_COMMUNICATION_ERROR
    reply = encode_frame(dialect.profile.ver, address, CID1_BATTERY, code, info)
    return reply if faults is None else faults.apply(address, reply)


def _answer_chunk(
    bank: SimBank, chunk: bytes, dialect: Dialect, faults: LineFaults | None
) -> bytes | None:
    """Answer what arrived up to a carriage return; noise in front is skipped."""
    start = chunk.rfind(b"~")
    if start < 0:
        return None
    return answer(bank, chunk[start:], dialect, faults)


# Asked one command, a confused pack answers another: the reply of the
# first of these that differs from the command asked.
_OTHER_COMMANDS: Final = (0x44, 0x42, 0x47, 0x92, 0x4F)


def _delivery(bank: SimBank, chunk: bytes, dialect: Dialect, faults: LineFaults) -> Delivery:
    """Return how the reply to what arrived up to a carriage return reaches the line."""
    start = chunk.rfind(b"~")
    if start < 0:
        return NOTHING
    request = chunk[start:]
    faults.wire.request_arrived()
    reply = answer(bank, request, dialect, faults)
    if reply is None:
        return NOTHING
    address = int(request[3:5], 16)

    def asked() -> Frame | None:
        try:
            return decode_frame(request)
        except FrameError:
            return None

    def foreign() -> bytes | None:
        frame = asked()
        others = sorted(pack.address for pack in bank.packs if pack.address != address)
        if frame is None or not others:
            return None
        other = next((each for each in others if each > address), others[0])
        info = bytes((other,)) if frame.info == bytes((address,)) else frame.info
        return answer(bank, encode_frame(frame.ver, other, frame.cid1, frame.cid2, info), dialect)

    def misfunction() -> bytes | None:
        frame = asked()
        if frame is None:
            return None
        cid2 = next(
            (each for each in _OTHER_COMMANDS if each != frame.cid2 and each in dialect.answers),
            None,
        )
        if cid2 is None:
            return None
        info = bytes((address,)) if dialect.answers[cid2][1] else b""
        return answer(bank, encode_frame(frame.ver, address, frame.cid1, cid2, info), dialect)

    return faults.wire.deliver(address, request, reply, foreign=foreign, misfunction=misfunction)


type _Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class RunningServer:
    """A listening simulator; ``port`` is the port actually bound."""

    host: str
    port: int
    faults: LineFaults
    _server: asyncio.Server = field(repr=False)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set, repr=False)
    _serve: _Handler | None = field(default=None, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, repr=False)
    _down: bool = field(default=False, repr=False)
    restarts: int = 0
    # The connections of a paced gateway, with what crossed each.
    ports: list[PacedPort] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        """Bring a restarted gateway back when its fault is mended."""
        self.faults.wire.watch(self._wire_changed)

    def _wire_changed(self) -> None:
        if self._down and not self.faults.wire.restarting:
            task = asyncio.get_running_loop().create_task(self._reopen())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            self.faults.wire.comeback(task)

    def restart(self) -> None:
        """Close the port and every connection, as a gateway rebooting does."""
        if self._down:
            return
        self._down = True
        self.restarts += 1
        self._server.close()
        for writer in list(self._writers):
            reset_connection(writer)

    async def _reopen(self) -> None:
        if not self._down or self._serve is None:
            return
        self._down = False
        await self._server.wait_closed()
        self._server = await asyncio.start_server(self._serve, self.host, self.port)

    def carry_out(
        self,
        delivery: Delivery,
        writer: asyncio.StreamWriter,
        write: Callable[[bytes], None] | None = None,
    ) -> None:
        """Put a delivery on one connection (or reset it, or restart the gateway).

        ``write`` (a paced line's) replaces writing to the connection at once.
        """
        if delivery.restart:
            self.restart()
        elif delivery.reset:
            reset_connection(writer)
        else:
            self.faults.wire.play(delivery, write or guarded_write(writer))

    async def stop(self) -> None:
        """Stop listening and drop every connection, as a gateway losing power would."""
        self.faults.wire.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()


async def serve_tcp(
    bank: SimBank,
    dialect: Dialect,
    host: str = "127.0.0.1",
    port: int = 0,
    faults: LineFaults | None = None,
    *,
    baudrate: int | None = None,
    answer_time: float = 0.0,
) -> RunningServer:
    """Serve the line on a TCP port (0 picks a free one), as a transparent gateway.

    With ``baudrate`` the RS485 line behind the gateway is paced as a paced
    pty is: requests take their wire time, replies leave at baud/10 bytes
    per second, ``answer_time`` after the request's last byte.
    """
    writers: set[asyncio.StreamWriter] = set()
    line_faults = faults if faults is not None else LineFaults()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        paced = PacedPort(guarded_write(writer), baudrate=baudrate, answer_time=answer_time)
        if paced.paced:
            running.ports.append(paced)
        try:
            while True:
                try:
                    chunk = await reader.readuntil(b"\r")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
                    return
                paced.heard(len(chunk))
                delivery = _delivery(bank, chunk, dialect, line_faults)
                running.carry_out(delivery, writer, paced.write if paced.paced else None)
                await writer.drain()
        except OSError:
            return
        finally:
            paced.cancel()
            writers.discard(writer)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(serve, host, port)
    bound_port = server.sockets[0].getsockname()[1]
    running = RunningServer(
        host=host,
        port=int(bound_port),
        faults=line_faults,
        _server=server,
        _writers=writers,
        _serve=serve,
    )
    return running


@dataclass
class RunningPty:
    """A line on a pseudo-terminal; a driver opens ``path`` as its serial port."""

    path: str
    faults: LineFaults
    _master: int = field(repr=False)
    _slave: int = field(repr=False)
    _port: PacedPort | None = field(default=None, repr=False)

    @property
    def port(self) -> PacedPort | None:
        """Return the paced port, with what crossed it."""
        return self._port

    async def stop(self) -> None:
        """Stop answering and close both ends, as an adapter pulled out would."""
        self.faults.wire.cancel()
        if self._port is not None:
            self._port.cancel()
        asyncio.get_running_loop().remove_reader(self._master)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


async def serve_pty(
    bank: SimBank,
    dialect: Dialect,
    faults: LineFaults | None = None,
    *,
    baudrate: int | None = None,
    answer_time: float = 0.0,
) -> RunningPty:
    """Serve the line on a new pseudo-terminal pair and return the tty to open.

    The slave end is put in raw mode and kept open here, so the line
    discipline neither turns the frames' carriage returns into newlines nor
    hangs up when the driver closes and reopens the port. With ``baudrate``
    the line is paced: requests take their wire time, replies leave at
    baud/10 bytes per second, ``answer_time`` after the request's last byte.
    """
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    line_faults = faults if faults is not None else LineFaults()
    pending = bytearray()

    def raw_write(data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(master, data)

    port = PacedPort(raw_write, baudrate=baudrate, answer_time=answer_time)
    write = port.write
    line = RunningPty(
        path=os.ttyname(slave), faults=line_faults, _master=master, _slave=slave, _port=port
    )

    def readable() -> None:
        try:
            data = os.read(master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        port.heard(len(data))
        pending.extend(data)
        while (end := pending.find(b"\r")) >= 0:
            chunk = bytes(pending[: end + 1])
            del pending[: end + 1]
            delivery = _delivery(bank, chunk, dialect, line_faults)
            if not (delivery.reset or delivery.restart):
                # A serial line has no connection to drop.
                line_faults.wire.play(delivery, write)

    asyncio.get_running_loop().add_reader(master, readable)
    return line


# ---------------------------------------------------------------------------
# Numbers on the wire, shared by every dialect's builders


def u16(value: float) -> bytes:
    """Return a value as u16, kept below the 0xFFFF "not measured" sentinel."""
    return min(max(round(value), 0), 0xFFFE).to_bytes(2, "big")


def s16(value: float) -> bytes:
    """Return a value as s16, kept above the 0x8000 "not measured" sentinel."""
    return min(max(round(value), -0x7FFF), 0x7FFF).to_bytes(2, "big", signed=True)


def u24(value: float) -> bytes:
    """Return a value as u24, kept below its all-ones sentinel."""
    return min(max(round(value), 0), 0xFFFFFE).to_bytes(3, "big")


def ascii_bytes(text: str, width: int) -> bytes:
    """Return text as a fixed-width, space-padded ASCII field."""
    return text.encode("ascii", errors="replace")[:width].ljust(width, b" ")


def kelvin(celsius: float, profile: VendorProfile) -> bytes:
    """Return a temperature in 0.1 K counts from the vendor's offset."""
    return u16(celsius * 10 + profile.temperature_offset)


def cells_info(pack: SimPack, profile: VendorProfile) -> bytes:
    """Return the cell count and the cell voltages."""
    info = bytearray((len(pack.cell_voltages),))
    for volts in pack.cell_voltages:
        info += u16(volts / profile.cell_voltage_scale)
    return bytes(info)


def temperatures_info(temperatures: Sequence[float], profile: VendorProfile) -> bytes:
    """Return the temperature count and the temperatures."""
    info = bytearray((len(temperatures),))
    for celsius in temperatures:
        info += kelvin(celsius, profile)
    return bytes(info)


def measurements_info(
    pack: SimPack, temperatures: Sequence[float], profile: VendorProfile
) -> bytes:
    """Return what every vendor's 0x42 INFO opens with after the flag and address.

    Cells, temperatures, current and pack voltage, in the vendor's units;
    the capacities and counts that follow differ from vendor to vendor.
    """
    return (
        cells_info(pack, profile)
        + temperatures_info(temperatures, profile)
        + s16(pack.current / profile.current_scale)
        + u16(pack.voltage / profile.voltage_scale)
    )


class StartPty(Protocol):
    """Starts one dialect's line on a pseudo-terminal."""

    def __call__(
        self, bank: SimBank, faults: LineFaults | None = None, *, baudrate: int | None = None
    ) -> Awaitable[RunningPty]:
        """Serve ``bank``; open the returned ``.path``."""


def pty_starter(dialect: Dialect, family: str) -> StartPty:
    """Return how a family's packs are served on a pseudo-terminal.

    With ``baudrate`` the line runs at that speed and the packs take their
    family's answer time (``simulator/paced.py``); without, bytes move at once.
    """

    async def start_pty(
        bank: SimBank, faults: LineFaults | None = None, *, baudrate: int | None = None
    ) -> RunningPty:
        return await serve_pty(
            bank, dialect, faults, baudrate=baudrate, answer_time=answer_time(family)
        )

    return start_pty
