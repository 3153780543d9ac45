"""Pylontech low-voltage packs over RS485 (Pylon ASCII framing, VER 0x20).

In a parallel bank the first pack is the master at ADR 2 and the others are
slaves at 3, 4, ...; the master relays every request to the pack addressed.
Each pack is therefore asked on its own, at its own ADR, and the command
byte inside INFO repeats that address. When the master cannot reach a slave
it answers for it with return code 0x91: that pack is offline, the bus is
not. When the master itself is off, nothing answers at all.

Pylontech sends no state of charge and no design capacity over RS485; the
reading derives the state of charge from remaining and total capacity.
"""

from __future__ import annotations

from typing import ClassVar, Protocol, Self

from ...bank.model import PackIdentity, PackReading
from ..errors import FrameError
from ..pylon.analog import decode_analog
from ..pylon.frame import (
    CID1_BATTERY,
    RTN_CID2_INVALID,
    Frame,
    ReturnCodeError,
    check_return_code,
    decode_frame,
    encode_frame,
)
from ..pylon.identity import decode_manufacturer_info, decode_serial
from ..pylon.profiles import PYLONTECH, VendorProfile
from ..transport.ascii_tcp import AsciiTcpTransport
from .base import BmsDriver

CID2_ANALOG = 0x42
CID2_MANUFACTURER_INFO = 0x51
CID2_SERIAL = 0x93


class AsciiTransport(Protocol):
    """What the driver needs from a pipe: one request in, one frame out."""

    async def connect(self) -> None:
        """Open the pipe."""

    async def close(self) -> None:
        """Close the pipe."""

    async def transact(self, request: bytes) -> bytes:
        """Send a request and return the frame that answers it."""


class PylontechRs485Driver(BmsDriver):
    """Reads Pylontech packs (US2000, US3000, US5000 and kin) pack by pack."""

    family: ClassVar[str] = "pylontech_rs485"
    addresses: ClassVar[range] = range(2, 10)

    def __init__(self, transport: AsciiTransport, *, profile: VendorProfile = PYLONTECH) -> None:
        """Drive the packs behind ``transport`` (which this driver then owns)."""
        self.transport = transport
        self.profile = profile

    @classmethod
    def over_tcp(cls, host: str, port: int, *, timeout: float = 1.0) -> Self:
        """Return a driver for packs behind a transparent RS485-to-TCP gateway."""
        return cls(AsciiTcpTransport(host, port, timeout=timeout))

    async def connect(self) -> None:
        """Open the bus; raise BusUnavailable if it cannot be reached."""
        await self.transport.connect()

    async def close(self) -> None:
        """Release the bus."""
        await self.transport.close()

    async def read_pack(self, address: int) -> PackReading:
        """Read one pack's measurements with 0x42, INFO = its address."""
        reply = await self._ask(address, CID2_ANALOG, bytes([address]))
        return decode_analog(
            reply.info, address=address, profile=self.profile, expect_command=address
        )

    async def read_identity(self, address: int) -> PackIdentity:
        """Ask one pack who it is: 0x51 for names, 0x93 for the serial, 0x42 for cells.

        Firmware older than the serial-number command refuses 0x93 with
        "CID2 invalid"; such a pack is still identified, by its slot.
        """
        maker = decode_manufacturer_info((await self._ask(address, CID2_MANUFACTURER_INFO)).info)
        try:
            reply = await self._ask(address, CID2_SERIAL, bytes([address]))
        except ReturnCodeError as err:
            if err.code != RTN_CID2_INVALID:
                raise
            serial = None
        else:
            serial = decode_serial(reply.info, expect_command=address)
        reading = await self.read_pack(address)
        return PackIdentity(
            address=address,
            family=self.family,
            manufacturer=maker.manufacturer,
            model=maker.device_name,
            serial=serial,
            firmware=maker.software_version,
            cell_count=len(reading.cell_voltages) or None,
            # Pylontech's "module total capacity" is not documented as the
            # design figure (an aged pack may report less), so it stays a
            # measurement in the reading rather than an identity here.
            design_capacity=None,
        )

    async def _ask(self, address: int, cid2: int, info: bytes = b"") -> Frame:
        """Send one command to one pack and return its checked reply."""
        if not 1 <= address <= 0xFE:
            raise ValueError(f"ADR {address} is outside 1..254 (0 and 255 are reserved)")
        request = encode_frame(self.profile.ver, address, CID1_BATTERY, cid2, info)
        reply = decode_frame(await self.transport.transact(request))
        if reply.adr != address:
            # Two packs with the same DIP setting, or a late answer for
            # another pack: either way this is not the asked pack's data.
            raise FrameError(f"asked ADR {address}, the answer came from ADR {reply.adr}")
        if reply.cid1 != CID1_BATTERY:
            raise FrameError(f"answer carries CID1 0x{reply.cid1:02X}, not battery data (0x46)")
        check_return_code(reply)
        return reply
