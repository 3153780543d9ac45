"""PACE BMS over RS485 in its ASCII protocol (Pylon framing, VER 0x25).

PACE packs in parallel each answer at their own address on the shared
RS485 line, set by DIP switch: the master at 1, slaves 2 to 15, and 0 for a
pack used alone. Nothing relays, so a pack that is off is simply silent.
0x90 is a short "are you there" that a scan asks before anything longer.

Values come in PACE's own units (10 mA, 10 mAh, 0.1 K from 2730) and the
alarm answer carries warnings and protections apart, with the state of the
charge and discharge FETs; the VER 0x25 profile and the PACE alarm decoder
say so, the rest is the shared framing.
"""

from __future__ import annotations

from typing import ClassVar

from ...bank.model import PackIdentity
from ..pylon.alarms import AlarmState, decode_pace_alarms
from ..pylon.identity import ascii_field
from ..pylon.profiles import PACE
from .pylon_ascii import PylonAsciiDriver

CID2_PRESENCE = 0x90
CID2_SOFTWARE_VERSION = 0xC1
CID2_PRODUCT_INFO = 0xC2
# The charge and discharge FET switches; INFO is one byte, 00 on, 01 off.
CID2_CHARGE_FET = 0x9A
CID2_DISCHARGE_FET = 0x9B
FET_ON = 0x00
FET_OFF = 0x01
# Both version and product name are twenty characters, space padded.
_NAME_BYTES = 20


class PaceAsciiDriver(PylonAsciiDriver):
    """Reads PACE packs pack by pack on one RS485 line."""

    family: ClassVar[str] = "pace_ascii"
    addresses: ClassVar[range] = range(0, 16)
    lowest_address: ClassVar[int] = 0
    profile = PACE

    def decode_alarms(self, info: bytes, address: int) -> AlarmState:
        """Read a PACE 0x44 reply."""
        return decode_pace_alarms(info, expect_command=address)

    async def read_identity(self, address: int) -> PackIdentity:
        """Ask one pack who it is: 0x90 first, then versions and a reading.

        PACE sends no serial number in this protocol, so a pack is known by
        its slot. The version and product commands are vendor additions a
        rebadged firmware may refuse; the pack is identified without them.
        """
        await self._ask(address, CID2_PRESENCE)
        version = await self._ask_if_supported(address, CID2_SOFTWARE_VERSION)
        product = await self._ask_if_supported(address, CID2_PRODUCT_INFO)
        reading = await self.read_pack(address)
        return PackIdentity(
            address=address,
            family=self.family,
            manufacturer="PACE",
            model=None if product is None else ascii_field(product.info[:_NAME_BYTES]),
            serial=None,
            firmware=None if version is None else ascii_field(version.info[:_NAME_BYTES]),
            cell_count=len(reading.cell_voltages) or None,
            design_capacity=reading.design_capacity,
        )

    async def set_paths(
        self, address: int, *, charge: bool | None = None, discharge: bool | None = None
    ) -> None:
        """Switch a pack's charge FET (0x9A) and discharge FET (0x9B)."""
        for cid2, closed in ((CID2_CHARGE_FET, charge), (CID2_DISCHARGE_FET, discharge)):
            if closed is not None:
                await self._ask(address, cid2, bytes((FET_ON if closed else FET_OFF,)))
