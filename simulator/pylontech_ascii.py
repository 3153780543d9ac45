"""A simulated bank that answers as Pylontech packs on RS485, over raw TCP.

This is what a driver sees through a transparent RS485-to-TCP gateway: the
bytes of the Pylon ASCII protocol and nothing else. The lowest-addressed
pack is the master; as on the real bus it answers for every pack, relaying
to the slaves. So a slave taken off the bus gets a 0x91 answer (the master
could not reach it), while a master taken off the bus leaves the whole line
silent. Requests for addresses where no pack sits, and garbage, get no
answer either: nothing on the line recognises them as its own.

Values are encoded from the bank's state at the moment each request
arrives, in the units of the Pylontech profile.

``python -m simulator --protocol pylontech-ascii`` serves such a bank to a
real Home Assistant.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
from dataclasses import dataclass, field
import re
from typing import Final

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
from custom_components.rack_battery.protocol.pylon.profiles import PYLONTECH, VendorProfile

from .bank import SimBank, SimPack

_HEX: Final = frozenset(b"0123456789ABCDEF")
_INFO_FLAG: Final = 0x11  # what the specification's own example sends
# Pylontech switches to 24-bit capacity fields for packs above this size.
_SMALL_PACK_AH: Final = 65.0


def _u16(value: float) -> bytes:
    # 0xFFFF means "not measured": a real value is clamped below it.
    return min(max(round(value), 0), 0xFFFE).to_bytes(2, "big")


def _s16(value: float) -> bytes:
    # 0x8000 means "not measured": a real value is clamped above it.
    return min(max(round(value), -0x7FFF), 0x7FFF).to_bytes(2, "big", signed=True)


def _u24(value: float) -> bytes:
    return min(max(round(value), 0), 0xFFFFFE).to_bytes(3, "big")


def _ascii(text: str, width: int) -> bytes:
    return text.encode("ascii", errors="replace")[:width].ljust(width, b" ")


def _version(firmware: str) -> bytes:
    """Return "V1.4" (or "1.4") as the two bytes major, minor."""
    numbers = [min(int(part), 0xFF) for part in re.findall(r"\d+", firmware)[:2]]
    numbers += [0] * (2 - len(numbers))
    return bytes(numbers)


def analog_info(pack: SimPack, profile: VendorProfile = PYLONTECH) -> bytes:
    """Return the INFO of a 0x42 reply describing ``pack`` right now."""
    info = bytearray((_INFO_FLAG, pack.address))
    cells = pack.cell_voltages
    info.append(len(cells))
    for volts in cells:
        info += _u16(volts / profile.cell_voltage_scale)
    # Board, the four cell groups, then the MOSFET, as packs sending six do.
    temperatures = (pack.temperature, *pack.cell_temperatures, pack.mosfet_temperature)
    info.append(len(temperatures))
    for celsius in temperatures:
        info += _u16(celsius * 10 + profile.temperature_offset)
    info += _s16(pack.current / profile.current_scale)
    info += _u16(pack.voltage / profile.voltage_scale)
    remaining = pack.remaining_capacity / profile.capacity_scale
    full = pack.full_capacity / profile.capacity_scale
    if pack.design_capacity <= _SMALL_PACK_AH:
        info += _u16(remaining)
        info.append(2)
        info += _u16(full) + _u16(pack.cycles)
    else:
        info += b"\xff\xff"
        info.append(4)
        info += b"\xff\xff" + _u16(pack.cycles) + _u24(remaining) + _u24(full)
    return bytes(info)


def manufacturer_info(pack: SimPack, _profile: VendorProfile = PYLONTECH) -> bytes:
    """Return the INFO of a 0x51 reply: device name, version, manufacturer."""
    return _ascii(pack.model, 10) + _version(pack.firmware) + _ascii(pack.manufacturer, 20)


def serial_info(pack: SimPack, _profile: VendorProfile = PYLONTECH) -> bytes:
    """Return the INFO of a 0x93 reply: the command byte and sixteen characters."""
    return bytes((pack.address,)) + _ascii(pack.serial, 16)


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
    """Return the return code a Pylontech master gives a request, and the request."""
    body = request[1:-1]
    if checksum(body[:-4]) != int(body[-4:], 16):
        return RTN_CHKSUM_ERROR, None
    try:
        frame = decode_frame(request)
    except FrameError:
        # With markers, hex and checksum sound, only LENGTH can be wrong.
        return RTN_LCHKSUM_ERROR, None
    if frame.cid2 == 0x4F:
        # "Get protocol version" is the one command answered whatever VER says.
        return RTN_OK, frame
    if frame.ver != profile.ver:
        return RTN_VER_ERROR, frame
    if frame.cid1 != CID1_BATTERY:
        return RTN_CID2_INVALID, frame
    return RTN_OK, frame


def _protocol_version(_pack: SimPack, _profile: VendorProfile) -> bytes:
    return b""


# What each command returns, and whether its INFO must be the command byte
# (the pack's own address) or empty.
_ANSWERS: Final[dict[int, tuple[Callable[[SimPack, VendorProfile], bytes], bool]]] = {
    0x42: (analog_info, True),
    0x4F: (_protocol_version, False),
    0x51: (manufacturer_info, False),
    0x93: (serial_info, True),
}


def _respond(pack: SimPack, frame: Frame, profile: VendorProfile) -> tuple[int, bytes]:
    """Return the return code and INFO answering a well-formed request to ``pack``."""
    if frame.cid2 not in _ANSWERS:
        return RTN_CID2_INVALID, b""
    build, addressed = _ANSWERS[frame.cid2]
    expected = bytes((pack.address,)) if addressed else b""
    if len(frame.info) != len(expected):
        return RTN_FORMAT_ERROR, b""
    if frame.info != expected:
        # The command byte must repeat the address the frame went to.
        return RTN_INVALID_DATA, b""
    return RTN_OK, build(pack, profile)


def answer(bank: SimBank, request: bytes, profile: VendorProfile = PYLONTECH) -> bytes | None:
    """Return the master's reply to one request, or None where the line stays silent.

    ``request`` runs from ``~`` to the carriage return.
    """
    if not _looks_like_a_frame(request):
        return None  # not a frame: nothing on the bus recognises it
    address = int(request[3:5], 16)
    by_address = {pack.address: pack for pack in bank.packs}
    if address not in by_address or not by_address[min(by_address)].online:
        return None
    code, frame = _refusal(request, profile)
    info = b""
    if code == RTN_OK and frame is not None:
        pack = by_address[address]
        if pack.online:
            code, info = _respond(pack, frame, profile)
        else:
            # The master relays to the slave, hears nothing, and says so.
            code = RTN_COMMUNICATION_ERROR
    return encode_frame(profile.ver, address, CID1_BATTERY, code, info)


@dataclass
class RunningServer:
    """A listening simulator; ``port`` is the port actually bound."""

    host: str
    port: int
    _server: asyncio.Server = field(repr=False)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set, repr=False)

    async def stop(self) -> None:
        """Stop listening and drop every connection, as a gateway losing power would."""
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()


async def start_server(bank: SimBank, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Serve ``bank`` as Pylontech RS485 on a TCP port (0 picks a free one)."""
    writers: set[asyncio.StreamWriter] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            while True:
                try:
                    chunk = await reader.readuntil(b"\r")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
                    return
                start = chunk.rfind(b"~")
                if start < 0:
                    continue
                reply = answer(bank, chunk[start:])
                if reply is not None:
                    writer.write(reply)
                    await writer.drain()
        except OSError:
            return
        finally:
            writers.discard(writer)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(serve, host, port)
    bound_port = server.sockets[0].getsockname()[1]
    return RunningServer(host=host, port=int(bound_port), _server=server, _writers=writers)
