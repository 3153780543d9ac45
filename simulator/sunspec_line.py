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

from .bank import SimBank, takes_write
from .modbus_line import ModbusLine
from .sunspec import BASE, MAX_READ, READ_HOLDING, control_points, encode_map

CONNECT: Final = 1
DISCONNECT: Final = 2

ILLEGAL_FUNCTION: Final = 0x01
ILLEGAL_ADDRESS: Final = 0x02
ILLEGAL_VALUE: Final = 0x03


class SunSpecDevice:
    """The one SunSpec device on the line, its map encoded from the bank when asked."""

    def __init__(self, bank: SimBank, unit: int = 1, *, writable: bool = True) -> None:
        """Serve ``bank`` as unit ``unit``; ``writable`` False leaves the connect points out."""
        self.bank = bank
        self.unit = unit
        self.writable = writable

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
        if not self.writable:
            for register in control_points(self.bank):
                image[register - BASE] = 0xFFFF  # not implemented
        return image[offset : offset + count]

    def write(self, unit: int, address: int, values: list[int]) -> bool | int | None:
        """Take a write of a connect point (802 SetOp, 803 StrSetCon, 804 SetCon)."""
        if unit != self.unit:
            return None
        points = control_points(self.bank)
        if not self.writable or address not in points or len(values) != 1:
            return ILLEGAL_ADDRESS
        if values[0] not in (CONNECT, DISCONNECT):
            return ILLEGAL_VALUE
        closed = values[0] == CONNECT
        target = points[address]
        packs = self.bank.packs if target is None else [self.bank.pack(target)]
        for pack in packs:
            taken = takes_write(pack)
            if taken is None:
                return None
            if taken:
                self.bank.set_paths(pack.address, charge=closed, discharge=closed)
        return True


def make_line(bank: SimBank, unit: int = 1) -> ModbusLine:
    """Return the RS485 line of a SunSpec device (open it as a pty, or serve it over TCP)."""
    return ModbusLine(SunSpecDevice(bank, unit))
