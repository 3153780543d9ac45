"""What every BMS on the Pylon ASCII framing shares: asking one pack, reading its reply.

Pylontech, PACE and Seplos V2 send the same frames and differ in units,
addresses and the layout of their alarm answer. A driver for one of them is
this class plus a vendor profile and an alarm decoder; the shared part
builds each request, checks that the answer is from the pack asked, and
reads a pack as its analog values (0x42) with its alarm state (0x44) laid
over them.

A command that a pack's firmware does not know is refused with "CID2
invalid". Such a command is remembered per address and not sent again, so
an older pack costs one refusal, not one per poll.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import replace
from typing import ClassVar, Protocol, Self

from ...bank.model import PackReading
from ..errors import FrameError
from ..pylon.alarms import AlarmState
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
from ..pylon.profiles import VendorProfile
from ..transport.ascii_serial import AsciiSerialTransport
from ..transport.ascii_tcp import AsciiTcpTransport
from .base import Link, LinkedDriver

CID2_ANALOG = 0x42
CID2_ALARMS = 0x44


class AsciiTransport(Link, Protocol):
    """What the driver needs from a pipe: one request in, one frame out."""

    async def transact(self, request: bytes) -> bytes:
        """Send a request and return the frame that answers it."""


def with_alarms(reading: PackReading, state: AlarmState) -> PackReading:
    """Return ``reading`` with what a 0x44 answer said laid over it."""
    return replace(
        reading,
        warnings=state.warnings,
        protections=state.protections,
        charge_enabled=state.charge_enabled,
        discharge_enabled=state.discharge_enabled,
        balancing=state.balancing,
    )


class PylonAsciiDriver(LinkedDriver["AsciiTransport"]):
    """Reads packs that speak the Pylon framing in one vendor's dialect."""

    profile: ClassVar[VendorProfile]
    # The lowest and highest ADR the vendor allows on a bus.
    lowest_address: ClassVar[int] = 1

    def __init__(self, transport: AsciiTransport) -> None:
        """Drive the packs behind ``transport``."""
        super().__init__(transport)
        # (address, CID2) pairs a pack has refused as unknown.
        self._unsupported: set[tuple[int, int]] = set()

    @classmethod
    def over_tcp(cls, host: str, port: int, *, timeout: float = 1.0) -> Self:
        """Return a driver for packs behind a transparent RS485-to-TCP gateway."""
        return cls(AsciiTcpTransport(host, port, timeout=timeout))

    @classmethod
    def over_serial(cls, port: str, *, baudrate: int = 9600, timeout: float = 1.0) -> Self:
        """Return a driver for packs on a serial port (a USB RS485 adapter)."""
        return cls(AsciiSerialTransport(port, baudrate=baudrate, timeout=timeout))

    async def read_pack(self, address: int) -> PackReading:
        """Read one pack: 0x42 for its values, 0x44 for its alarms and FETs."""
        reply = await self._ask(address, CID2_ANALOG, bytes([address]))
        reading = decode_analog(
            reply.info, address=address, profile=self.profile, expect_command=address
        )
        alarms = await self._ask_if_supported(address, CID2_ALARMS, bytes([address]))
        if alarms is not None:
            reading = with_alarms(reading, self.decode_alarms(alarms.info, address))
        return reading

    @abstractmethod
    def decode_alarms(self, info: bytes, address: int) -> AlarmState:
        """Read a 0x44 reply's INFO in this vendor's layout, checking its command byte."""

    async def _ask_if_supported(self, address: int, cid2: int, info: bytes = b"") -> Frame | None:
        """Ask, unless this pack has refused the command before; None when refused."""
        if (address, cid2) in self._unsupported:
            return None
        try:
            return await self._ask(address, cid2, info)
        except ReturnCodeError as err:
            if err.code != RTN_CID2_INVALID:
                raise
            self._unsupported.add((address, cid2))
            return None

    async def _ask(self, address: int, cid2: int, info: bytes = b"") -> Frame:
        """Send one command to one pack and return its checked reply."""
        if not self.lowest_address <= address <= 0xFE:
            raise ValueError(f"ADR {address} is outside {self.lowest_address}..254")
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
