"""What every BMS on the Pylon ASCII framing shares: asking one pack, reading its reply.

Pylontech, PACE and Seplos V2 send the same frames and differ in units,
addresses and the layout of their alarm answer. A driver for one of them is
this class plus a vendor profile and an alarm decoder; the shared part
builds each request, checks that the answer is from the pack asked, and
reads a pack as its analog values (0x42) with its alarm state (0x44) laid
over them.

A reply is accepted only for the request just sent. The transport hands
every frame that arrives to :meth:`PylonAsciiDriver._accept`, which takes
it only if it is sound, is not our own request heard back (RS485 adapters
echo), comes from the asked ADR in this vendor's VER with CID1 0x46 and a
return code where a request has its command, and its INFO answers the
command asked: the command byte matches, and a 0x42 answer has the shape of
one while any other answer does not (a late 0x44 reply to the same pack
differs from a 0x42 reply only there). Anything else is discarded and the
transaction listens on until its timeout.

A command that a pack's firmware does not know is refused with "CID2
invalid". Such a command is remembered per address and not sent again, so
an older pack costs one refusal, not one per poll.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import ClassVar, Protocol, Self

from ...bank.model import PackReading
from ..errors import FrameError
from ..linkstats import LinkStats
from ..pylon.alarms import AlarmState
from ..pylon.analog import check_analog_shape, decode_analog, is_analog_shaped
from ..pylon.frame import (
    CID1_BATTERY,
    RTN_ADR_ERROR,
    RTN_CID2_INVALID,
    RTN_COMMUNICATION_ERROR,
    RTN_OK,
    RTN_VER_ERROR,
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


# Checks the INFO of a sound reply with return code 0; raises FrameError if
# it does not answer the command asked.
type InfoCheck = Callable[[bytes], object]


class AsciiTransport(Link, Protocol):
    """What the driver needs from a pipe: one request in, the frame it accepts out."""

    stats: LinkStats

    async def exchange[T](self, request: bytes, accept: Callable[[bytes], T]) -> T:
        """Send a request; return what ``accept`` makes of the first frame it does not reject."""


def is_return_code(cid2: int) -> bool:
    """Return whether a CID2 can be a reply's return code rather than a request's command.

    The documents list 0x00-0x07, 0x90 and 0x91 and Seplos' 0xE1-0xE4.
    Every command this stack sends lies outside those but PACE's presence
    probe, 0x90; heard back unchanged, that one is caught as an echo.
    """
    return cid2 <= 0x07 or cid2 in (RTN_ADR_ERROR, RTN_COMMUNICATION_ERROR) or cid2 >= 0xE0


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

    def command_groups(self, address: int) -> Collection[int]:
        """Return the command bytes a pack at ``address`` answers 0x42/0x44 with."""
        return (address,)

    def _analog_check(self, address: int) -> InfoCheck:
        groups = self.command_groups(address)

        def check(info: bytes) -> None:
            decode_analog(info, address=address, profile=self.profile, expect_command=groups)
            check_analog_shape(info, self.profile)

        return check

    async def read_pack(self, address: int) -> PackReading:
        """Read one pack: 0x42 for its values, 0x44 for its alarms and FETs."""
        groups = self.command_groups(address)
        reply = await self._ask(
            address, CID2_ANALOG, bytes([address]), check=self._analog_check(address)
        )
        reading = decode_analog(
            reply.info, address=address, profile=self.profile, expect_command=groups
        )
        alarms = await self._ask_if_supported(
            address,
            CID2_ALARMS,
            bytes([address]),
            check=lambda info: self.decode_alarms(info, address),
        )
        if alarms is not None:
            reading = with_alarms(reading, self.decode_alarms(alarms.info, address))
        return reading

    @abstractmethod
    def decode_alarms(self, info: bytes, address: int) -> AlarmState:
        """Read a 0x44 reply's INFO in this vendor's layout, checking its command byte."""

    async def _ask_if_supported(
        self, address: int, cid2: int, info: bytes = b"", *, check: InfoCheck | None = None
    ) -> Frame | None:
        """Ask, unless this pack has refused the command before; None when refused."""
        if (address, cid2) in self._unsupported:
            return None
        try:
            return await self._ask(address, cid2, info, check=check)
        except ReturnCodeError as err:
            if err.code != RTN_CID2_INVALID:
                raise
            self._unsupported.add((address, cid2))
            return None

    async def _ask(
        self, address: int, cid2: int, info: bytes = b"", *, check: InfoCheck | None = None
    ) -> Frame:
        """Send one command to one pack and return its reply, checked as answering it.

        ``check`` reads a reply's INFO and raises FrameError if it does not
        answer this command (see :meth:`_accept`); refusals by return code
        are raised only once the reply has been accepted as this request's.
        """
        if not self.lowest_address <= address <= 0xFE:
            raise ValueError(f"ADR {address} is outside {self.lowest_address}..254")
        request = encode_frame(self.profile.ver, address, CID1_BATTERY, cid2, info)
        reply = await self.transport.exchange(
            request, lambda raw: self._accept(raw, request, address, cid2, check)
        )
        check_return_code(reply)
        return reply

    def _accept(
        self, raw: bytes, request: bytes, address: int, cid2: int, check: InfoCheck | None
    ) -> Frame:
        """Return the reply in ``raw`` if it answers ``request``; raise FrameError if not."""
        reply = decode_frame(raw)
        if raw == request:
            raise FrameError("it is an echo of the request")
        if reply.adr != address:
            # Two packs with the same DIP setting, or a late answer for
            # another pack: either way this is not the asked pack's data.
            raise FrameError(f"asked ADR {address}, the answer came from ADR {reply.adr}")
        if reply.cid1 != CID1_BATTERY:
            raise FrameError(f"answer carries CID1 0x{reply.cid1:02X}, not battery data (0x46)")
        if not is_return_code(reply.cid2):
            # Another master's request on the line, or ours heard back altered.
            raise FrameError(f"CID2 0x{reply.cid2:02X} is a command, not a return code")
        if reply.ver != self.profile.ver and reply.cid2 != RTN_VER_ERROR:
            raise FrameError(
                f"answer carries VER 0x{reply.ver:02X}, {self.profile.name} speaks "
                f"0x{self.profile.ver:02X}"
            )
        if reply.cid2 != RTN_OK:
            return reply  # a refusal carries no INFO to check
        if cid2 != CID2_ANALOG and is_analog_shaped(reply.info, self.profile):
            raise FrameError(f"a 0x42 answer came while 0x{cid2:02X} was asked")
        if check is not None:
            check(reply.info)
        return reply
