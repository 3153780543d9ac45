"""Seplos V2 BMS (EMU10xx/11xx) over RS485 (Pylon framing, VER 0x20, own units).

Each pack answers at its DIP address, 0 to 15, and checks that the command
byte matches it; the "all packs" command byte 0xFF is for the RS232 port
only, so packs are always read one by one. Seplos shares VER 0x20 with
Pylontech but not its units: current in 10 mA, pack voltage in 10 mV,
capacities in 10 mAh, and ten user-defined items that bring the pack's own
state of charge, state of health and design capacity.

A pack at ADR 0, the usual setting for a pack used alone, answers 0x42
and 0x44 with 0x01 in the "command group" byte where a pack at ADR n
answers n: the request's byte is checked against the DIP switch, the
reply's is the battery group, numbered from 1. Both are taken at ADR 0.

Its document lists temperatures as 0.1 degC in one table and as 0.1 K from
2731 in the next; its worked example (3032 is 30.1 degC) settles it as
kelvin, which is what the Seplos profile uses.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import ClassVar

from ...bank.model import PackIdentity
from ..pylon.alarms import AlarmState, decode_seplos_alarms
from ..pylon.profiles import SEPLOS_V2
from .pylon_ascii import PylonAsciiDriver


class SeplosV2Driver(PylonAsciiDriver):
    """Reads Seplos V2 packs pack by pack on one RS485 line."""

    family: ClassVar[str] = "seplos_v2"
    addresses: ClassVar[range] = range(0, 16)
    lowest_address: ClassVar[int] = 0
    profile = SEPLOS_V2

    def command_groups(self, address: int) -> Collection[int]:
        """Return the command groups a pack answers with: 0x01 (or 0x00) at ADR 0."""
        return (0, 1) if address == 0 else (address,)

    def decode_alarms(self, info: bytes, address: int) -> AlarmState:
        """Read a Seplos V2 0x44 reply."""
        return decode_seplos_alarms(info, expect_command=self.command_groups(address))

    async def read_identity(self, address: int) -> PackIdentity:
        """Identify a pack by what its reading says: no serial or model on this wire."""
        reading = await self.read_pack(address)
        return PackIdentity(
            address=address,
            family=self.family,
            manufacturer="Seplos",
            cell_count=len(reading.cell_voltages) or None,
            design_capacity=reading.design_capacity,
        )
