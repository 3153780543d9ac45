"""Serve a simulated bank as JK-PB packs (JK BMS RS485 Modbus V1.1) on an RS485 line.

The map is a byte image per block, and a register address is the block's
base plus a byte offset: a read of N registers at an address returns the 2N
bytes from that offset. Reads of more than 40 registers are refused, as
packs in the field are reported to fail them. In master mode the pack at
DIP 0 polls the others (units 1..15) in chunks of 40, for the listen-only case.

Offsets come from the driver's tables (public facts of the vendor document);
the encoding is written here on its own.
"""

from __future__ import annotations

from typing import Final

from custom_components.rack_battery.protocol.drivers.jk_pb import (
    CHARGE_SWITCH,
    DISCHARGE_SWITCH,
    INFO_BYTES,
    LIVE_BYTES,
    MAX_CHUNK,
    SETTINGS_CAPACITY,
    SETTINGS_CELL_COUNT,
    Block,
    Info,
    Live,
    chunks,
)

from .bank import SimBank, SimPack, takes_write
from .modbus_line import ModbusLine

ILLEGAL_FUNCTION: Final = 0x01
ILLEGAL_ADDRESS: Final = 0x02
ILLEGAL_VALUE: Final = 0x03
# Block sizes served: the live block to 0x110, settings to 0x11C, info to 0x28.
SIZES: Final = {Block.SETTINGS: 0x11C, Block.LIVE: 0x110, Block.INFO: 0x28}


def _put(image: bytearray, offset: int, value: int, size: int, *, signed: bool = False) -> None:
    image[offset : offset + size] = value.to_bytes(size, "big", signed=signed)


def live_image(pack: SimPack) -> bytearray:
    """Return the live block of a pack, big-endian throughout."""
    image = bytearray(SIZES[Block.LIVE])
    for cell, volts in enumerate(pack.cell_voltages):
        _put(image, Live.CELLS + 2 * cell, round(volts * 1000), 2)
    _put(image, Live.CELL_PRESENT, (1 << len(pack.cell_voltages)) - 1, 4)
    _put(image, Live.MOSFET_TEMPERATURE, round(pack.mosfet_temperature * 10), 2, signed=True)
    _put(image, Live.VOLTAGE, round(pack.voltage * 1000), 4)
    _put(image, Live.POWER, round(abs(pack.voltage * pack.current) * 1000), 4)
    _put(image, Live.CURRENT, round(pack.current * 1000), 4, signed=True)
    temperatures = (*pack.cell_temperatures, pack.ambient)
    offsets = (
        Live.TEMPERATURE_1,
        Live.TEMPERATURE_2,
        Live.TEMPERATURE_3,
        Live.TEMPERATURE_4,
        Live.TEMPERATURE_5,
    )
    for offset, celsius in zip(offsets, temperatures, strict=True):
        _put(image, offset, round(celsius * 10), 2, signed=True)
    image[Live.BALANCE_STATE_SOC + 1] = min(round(pack.soc * 100), 100)
    _put(image, Live.REMAINING, round(pack.remaining_capacity * 1000), 4, signed=True)
    _put(image, Live.FULL, round(pack.full_capacity * 1000), 4)
    _put(image, Live.CYCLES, pack.cycles, 4)
    image[Live.SOH_PRECHARGE] = min(round(pack.soh), 100)
    image[Live.FETS] = int(pack.charge_on)
    image[Live.FETS + 1] = int(pack.discharge_on)
    image[Live.SENSORS_HEATING] = 0x3F  # the MOSFET sensor and five battery sensors
    return image


def settings_image(pack: SimPack) -> bytearray:
    """Return the settings block: only the cell count and design capacity are filled."""
    image = bytearray(SIZES[Block.SETTINGS])
    _put(image, SETTINGS_CELL_COUNT, len(pack.cell_voltages), 4)
    _put(image, SETTINGS_CAPACITY, round(pack.design_capacity * 1000), 4)
    # The configured switches (the live FET state is in the live block).
    _put(image, CHARGE_SWITCH - Block.SETTINGS, int(pack.charge_path), 4)
    _put(image, DISCHARGE_SWITCH - Block.SETTINGS, int(pack.discharge_path), 4)
    return image


def info_image(pack: SimPack) -> bytearray:
    """Return the device-information block: model, hardware and software versions."""
    image = bytearray(SIZES[Block.INFO])
    image[Info.MODEL : Info.MODEL + 16] = pack.model.encode("ascii")[:16].ljust(16, b"\x00")
    image[Info.HARDWARE : Info.HARDWARE + 8] = b"19A".ljust(8, b"\x00")
    image[Info.SOFTWARE : Info.SOFTWARE + 8] = pack.firmware.encode("ascii")[:8].ljust(8, b"\x00")
    assert len(image) >= INFO_BYTES
    return image


class JkPbPacks:
    """What each pack on a JK-PB line holds, read from the bank when asked."""

    def __init__(self, bank: SimBank) -> None:
        """Serve ``bank``; pack addresses are DIP addresses (unit numbers)."""
        self.bank = bank

    def read(
        self, unit: int, function: int, address: int, count: int
    ) -> list[int] | list[bool] | int | None:
        """Answer a read, as the pack at ``unit`` would."""
        if (pack := self.bank.answering(unit)) is None:
            return None
        if function != 0x03:
            return ILLEGAL_FUNCTION
        if count > MAX_CHUNK:
            return ILLEGAL_VALUE
        for base, build in (
            (Block.INFO, info_image),
            (Block.LIVE, live_image),
            (Block.SETTINGS, settings_image),
        ):
            if address >= base:
                image = build(pack)
                offset = address - base
                if offset + 2 * count > len(image):
                    return ILLEGAL_ADDRESS
                raw = image[offset : offset + 2 * count]
                return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
        return ILLEGAL_ADDRESS

    def write(self, unit: int, address: int, values: list[int]) -> bool | int | None:
        """Take a write of the charge or discharge switch (u32: two registers, 1 on, 0 off)."""
        if (pack := self.bank.answering(unit)) is None:
            return None
        if address not in (CHARGE_SWITCH, DISCHARGE_SWITCH) or len(values) != 2:
            return ILLEGAL_ADDRESS
        value = values[0] << 16 | values[1]
        if value not in (0, 1):
            return ILLEGAL_VALUE
        taken = takes_write(pack)
        if taken is None:
            return None
        if taken:
            if address == CHARGE_SWITCH:
                self.bank.set_paths(unit, charge=bool(value))
            else:
                self.bank.set_paths(unit, discharge=bool(value))
        return True


def master_polls(bank: SimBank) -> list[tuple[int, int, int, int]]:
    """Return what the DIP-0 master asks each of units 1..15, in turn."""
    polls: list[tuple[int, int, int, int]] = []
    for pack in bank.packs:
        if pack.address == 0:
            continue
        polls += [
            (pack.address, 0x03, start, count) for start, count in chunks(Block.LIVE, LIVE_BYTES)
        ]
    return polls


def make_line(bank: SimBank) -> ModbusLine:
    """Return the RS485 line of a JK-PB bank (open it as a pty, or serve it over TCP)."""
    return ModbusLine(JkPbPacks(bank))
