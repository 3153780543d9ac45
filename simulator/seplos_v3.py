"""Serve a simulated bank as Seplos V3 packs (XZH Modbus-RTU map) on an RS485 line.

The pack at address 0 is the bank's master, as on a real Seplos bank: it
answers at unit 0 like any pack and also holds the system block at 0x2000,
its summary of the whole bank. In master mode it polls the others by itself
(the same reads the driver makes), for the listen-only case.

Addresses come from the driver's tables, which are public facts of the
vendor document; the encoding here is written on its own, from the document.
"""

from __future__ import annotations

from typing import Final

from custom_components.rack_battery.protocol.drivers.seplos_v3 import (
    CELLS_COUNT,
    EVENTS_COUNT,
    PACK_COUNT,
    RATED_CAPACITY,
    SYSTEM_COUNT,
    VERSION_COUNT,
    Block,
)

from .bank import SimBank, SimPack, takes_write
from .modbus_line import ModbusLine

ILLEGAL_FUNCTION: Final = 0x01
ILLEGAL_ADDRESS: Final = 0x02
KELVIN_OFFSET: Final = 2731
MASTER: Final = 0


def _u16(value: float, per_unit: float) -> int:
    return min(max(round(value * per_unit), 0), 0xFFFE)


def _s16(value: float, per_unit: float) -> int:
    return min(max(round(value * per_unit), -0x7FFF), 0x7FFF) & 0xFFFF


def _kelvin(celsius: float) -> int:
    return _u16(celsius + KELVIN_OFFSET / 10, 10)


def _text(value: str, registers: int) -> list[int]:
    """Two characters a register, the first in the HIGH byte, as real packs send them.

    (The map's "small end first" is not what a pack does.)
    """
    raw = value.encode("ascii", errors="replace")[: 2 * registers].ljust(2 * registers, b"\x00")
    return [raw[i] << 8 | raw[i + 1] for i in range(0, len(raw), 2)]


def _firmware(version: str) -> int:
    """Encode "V1.4" as major 1 in the high byte (sent first) and minor 4 in the low byte."""
    digits = [int(part) for part in version.lstrip("Vv").split(".") if part.isdigit()]
    major, minor = ([*digits, 0, 0])[:2]
    return (major & 0xFF) << 8 | (minor & 0xFF)


def input_registers(pack: SimPack) -> dict[int, int]:
    """Return a pack's input registers: PIA, PIB, the rated capacity and VIA."""
    image: dict[int, int] = {}
    pia = [0] * PACK_COUNT
    pia[0] = _u16(pack.voltage, 100)
    pia[1] = _s16(pack.current, 100)
    pia[2] = _u16(pack.remaining_capacity, 100)
    pia[3] = _u16(pack.full_capacity, 100)
    pia[5] = min(round(pack.soc * 1000), 1000)
    pia[6] = min(round(pack.soh * 10), 1000)
    pia[7] = pack.cycles
    cells = pack.cell_voltages
    pia[8] = _u16(sum(cells) / len(cells), 1000)
    pia[9] = _kelvin(pack.temperature)
    pia[0xA] = _u16(max(cells), 1000)
    pia[0xB] = _u16(min(cells), 1000)
    pia[0xC] = _kelvin(max(pack.cell_temperatures))
    pia[0xD] = _kelvin(min(pack.cell_temperatures))
    pia[0xF] = round(pack.design_capacity)  # 1 C discharge, A
    pia[0x10] = round(pack.design_capacity / 2)  # 0.5 C charge, A
    image.update({Block.PACK + i: value for i, value in enumerate(pia)})
    pib = [0] * CELLS_COUNT
    for index, volts in enumerate(cells):
        pib[index] = _u16(volts, 1000)
    for index, celsius in enumerate(pack.cell_temperatures):
        pib[0x10 + index] = _kelvin(celsius)
    pib[0x18] = _kelvin(pack.ambient)
    pib[0x19] = _kelvin(pack.mosfet_temperature)
    image.update({Block.CELLS + i: value for i, value in enumerate(pib)})
    image[RATED_CAPACITY] = _u16(pack.design_capacity, 100)
    via = (
        _text(pack.manufacturer, 10)
        + _text(pack.model, 10)
        + [_firmware(pack.firmware)]
        + _text("BMS" + pack.serial, 15)
        + _text(pack.serial, 15)
    )
    assert len(via) == VERSION_COUNT
    image.update({Block.VERSION + i: value for i, value in enumerate(via)})
    return image


def coils(pack: SimPack) -> list[bool]:
    """Return a pack's event coils 0x1200..0x128F."""
    bits = [False] * EVENTS_COUNT

    def set_bit(coil: int) -> None:
        bits[coil - Block.EVENTS] = True

    if pack.current < -0.005:
        set_bit(0x1240)  # system state: discharging
    elif pack.current > 0.005:
        set_bit(0x1241)  # charging
    if max(pack.cell_voltages) - min(pack.cell_voltages) > 0.1:
        set_bit(0x1274)  # cell difference alarm
    if "charge_overcurrent" in pack.protections:
        set_bit(0x1261)  # charge over-current protection
    if "discharge_overcurrent" in pack.protections:
        set_bit(0x1264)  # discharge over-current protection
    if pack.discharge_on:
        set_bit(0x1278)  # discharge FET on
    if pack.charge_on:
        set_bit(0x1279)  # charge FET on
    return bits


def _u32_low_first(value: int) -> list[int]:
    value &= 0xFFFF_FFFF
    return [value & 0xFFFF, value >> 16]


def system_registers(bank: SimBank) -> dict[int, int]:
    """Return the master's system block: the bank as a whole, u32 values LOW word first."""
    online = [pack for pack in bank.packs if pack.online]
    voltage = sum(pack.voltage for pack in online) / len(online) if online else 0.0
    mask = 0
    for pack in online:
        mask |= 1 << pack.address
    full = sum(pack.full_capacity for pack in online)
    block = [
        *_u32_low_first(round(voltage * 100)),
        *_u32_low_first(round(sum(pack.current for pack in online) * 10)),  # INT32, 0.1 A
        *_u32_low_first(round(sum(pack.remaining_capacity for pack in online) * 100)),
        *_u32_low_first(round(full * 100)),
        0,
        0,  # total discharge capacity
        *_u32_low_first(round(sum(pack.design_capacity for pack in online) * 100)),
        *_u32_low_first(mask),
        *_u32_low_first(0),
        *_u32_low_first(round(sum(pack.design_capacity for pack in online) * 10)),
        *_u32_low_first(round(sum(pack.design_capacity for pack in online) * 5)),
        560,  # suggested pack overvoltage, 100 mV
        440,
        len(online),
        max((pack.cycles for pack in online), default=0),
        round(sum(pack.soc * pack.full_capacity for pack in online) / full * 1000) if full else 0,
        round(sum(pack.soh for pack in online) / len(online) * 10) if online else 0,
    ]
    assert len(block) == SYSTEM_COUNT
    return {Block.SYSTEM + i: value for i, value in enumerate(block)}


class SeplosV3Packs:
    """What each pack on a Seplos V3 line holds, read from the bank when asked."""

    def __init__(self, bank: SimBank) -> None:
        """Serve ``bank``; pack addresses are unit numbers, 0 the master."""
        self.bank = bank

    def read(
        self, unit: int, function: int, address: int, count: int
    ) -> list[int] | list[bool] | int | None:
        """Answer a read, as the pack at ``unit`` would."""
        if (pack := self.bank.answering(unit)) is None:
            return None
        wanted = range(address, address + count)
        if function == 0x04:
            image = input_registers(pack)
            if unit == MASTER:
                image.update(system_registers(self.bank))
            if any(at not in image for at in wanted):
                return ILLEGAL_ADDRESS
            return [image[at] for at in wanted]
        if function == 0x01:
            first = address - Block.EVENTS
            if first < 0 or first + count > EVENTS_COUNT:
                return ILLEGAL_ADDRESS
            return coils(pack)[first : first + count]
        return ILLEGAL_FUNCTION

    def write(self, unit: int, address: int, values: list[int]) -> bool | int | None:
        """Take a write of a system control register, as the pack at ``unit`` would."""
        return _write(self.bank, unit, address, values)


# System control registers and the one value each takes (anything else is a NACK).
_SCA: Final = {
    0x1510: (0x55AA, "discharge", False),
    0x1511: (0x55AA, "charge", False),
    0x1515: (0xAA55, "charge", True),
}
_ILLEGAL_VALUE: Final = 0x03


def _write(bank: SimBank, unit: int, address: int, values: list[int]) -> bool | int | None:
    """Carry out an SCA command register written with function 0x10."""
    if (pack := bank.answering(unit)) is None:
        return None
    if address not in _SCA or len(values) != 1:
        return ILLEGAL_ADDRESS
    value, path, closed = _SCA[address]
    if values[0] != value:
        return _ILLEGAL_VALUE
    taken = takes_write(pack)
    if taken is None:
        return None
    if taken:
        if path == "charge":
            bank.set_paths(unit, charge=closed)
        else:
            bank.set_paths(unit, discharge=closed)
    return True


def master_polls(bank: SimBank) -> list[tuple[int, int, int, int]]:
    """Return what the master (unit 0) asks each of the other packs, in turn."""
    polls: list[tuple[int, int, int, int]] = []
    for pack in bank.packs:
        if pack.address == MASTER:
            continue
        polls += [
            (pack.address, 0x04, Block.PACK, PACK_COUNT),
            (pack.address, 0x04, Block.CELLS, CELLS_COUNT),
            (pack.address, 0x01, Block.EVENTS, EVENTS_COUNT),
        ]
    return polls


def make_line(bank: SimBank) -> ModbusLine:
    """Return the RS485 line of a Seplos V3 bank (open it as a pty, or serve it over TCP)."""
    return ModbusLine(SeplosV3Packs(bank))
