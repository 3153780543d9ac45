"""Serve a simulated bank as a SunSpec storage device on an RS485 line.

``sunspec.py`` serves the device over Modbus TCP. Battery controllers also
offer their SunSpec map on an RS485 port, reached by a USB adapter or a
transparent gateway forwarding raw RTU frames; there the device is one
unit on the line and every other unit number is silence. The map is the
same (``encode_map``), served through
:class:`~simulator.modbus_line.ModbusLine`, which does the RTU framing.
"""

from __future__ import annotations

from typing import Final

from .bank import SimBank
from .modbus_line import ModbusLine
from .sunspec import BASE, MAX_READ, READ_HOLDING, encode_map

ILLEGAL_FUNCTION: Final = 0x01
ILLEGAL_ADDRESS: Final = 0x02
ILLEGAL_VALUE: Final = 0x03


class SunSpecDevice:
    """The one SunSpec device on the line, its map encoded from the bank when asked."""

    def __init__(self, bank: SimBank, unit: int = 1) -> None:
        """Serve ``bank`` as Modbus unit ``unit``."""
        self.bank = bank
        self.unit = unit

    def read(
        self, unit: int, function: int, address: int, count: int
    ) -> list[int] | list[bool] | int | None:
        """Answer a read at the device's unit; any other unit is silence."""
        if unit != self.unit:
            return None
        if function != READ_HOLDING:
            return ILLEGAL_FUNCTION
        if count > MAX_READ:
            return ILLEGAL_VALUE
        image = encode_map(self.bank)
        # The map lives at 40000 only: a probe at another base is refused,
        # as by a device that keeps its map at the standard place.
        offset = address - BASE
        if offset < 0 or offset + count > len(image):
            return ILLEGAL_ADDRESS
        return image[offset : offset + count]


def make_line(bank: SimBank, unit: int = 1) -> ModbusLine:
    """Return the RS485 line of a SunSpec device (open it as a pty, or serve it over TCP)."""
    return ModbusLine(SunSpecDevice(bank, unit))
