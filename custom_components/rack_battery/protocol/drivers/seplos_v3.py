"""Seplos V3 BMS (the XZH "BMS48100/48200" Modbus-RTU map), pack by pack.

Each pack is a Modbus unit on the RS485 line at 19200 baud. Measurements are
input registers (function 0x04): the pack block PIA at 0x1000 (voltage,
current, capacities, SoC and SoH in tenths of a percent, limits) and PIB at
0x1100 (sixteen cells, four cell sensors, environment and power sensors, in
tenths of a kelvin). Alarms and the MOSFET states are coils (function 0x01)
at 0x1200 to 0x128F: each "event code" byte of the document is eight coils,
so bit ``b`` of the byte at ``B`` is coil ``B + b`` (0x1278 discharge FET
on, 0x1279 charge FET on). Identity is the version block VIA at 0x1700.

A parallel bank has a master pack at unit 0, which polls the others on its
own and also answers for the whole bank in the system block at 0x2000. Unit
0 is Modbus's broadcast address: many gateways and client libraries send a
request to it and never wait for, or forward, a reply. A silent unit 0 is
therefore reported with an error that says so, rather than as a dead pack.

Two traps, both in the document: the system block's 32-bit values come LOW
WORD FIRST, and its current is an INT32 in 0.1 A, while the pack block's is
an INT16 in 0.01 A. A third the document gets wrong: its version block says
"small end first", but real packs send text with the HIGH byte of each
register first, and only read sensibly that way.

Sentinels (0xFFFF, 0x8000 in a signed field, 0xFFFFFFFF and 0x80000000 in
the system block) are unknown, never a number.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Final

from ...bank.model import PackIdentity, PackReading
from ..alarms import Alarm
from ..errors import ControlNotSupported, FrameError, PackNotResponding, WriteRefused
from ..transport.modbus_tcp import ModbusExceptionError, ModbusTransport
from .base import LinkedDriver

FAMILY: Final = "seplos_v3"
BAUDRATE: Final = 19200
MASTER_UNIT: Final = 0
READ_COILS: Final = 0x01
READ_INPUT_REGISTERS: Final = 0x04


class Block(IntEnum):
    """Where each block of the map starts."""

    PACK = 0x1000  # PIA, input registers
    CELLS = 0x1100  # PIB, input registers
    EVENTS = 0x1200  # PIC, coils
    SETTINGS = 0x1300  # SPA, input registers (read), 0x10 (write)
    VERSION = 0x1700  # VIA, input registers
    SYSTEM = 0x2000  # EIA, the master's view of the bank


PACK_COUNT: Final = 0x11  # 0x1000..0x1010
CELLS_COUNT: Final = 0x1A  # 0x1100..0x1119
EVENTS_COUNT: Final = 0x90  # coils 0x1200..0x128F
VERSION_COUNT: Final = 0x33  # 0x1700..0x1732
SYSTEM_COUNT: Final = 0x1A  # 0x2000..0x2019
RATED_CAPACITY: Final = 0x1358  # SPA, UINT16 10 mAh
CELL_SLOTS: Final = 16
CELL_SENSORS: Final = 4
# PIB offsets after the cells: sensors at 0x1110..0x1113, 0x1114..0x1117
# reserved, environment at 0x1118 and the power (MOSFET) sensor at 0x1119.
FIRST_SENSOR: Final = 0x10
ENVIRONMENT: Final = 0x18
POWER: Final = 0x19
# 0.1 K to degC: the document's unit, with 0 degC at 273.1 K.
KELVIN_OFFSET: Final = 2731
TEMPERATURE_RANGE: Final = (-50.0, 150.0)
UNSET: Final = 0xFFFF

# Event bytes, by the coil at which each starts (PIC), as (bit -> name)
# tables for warnings and protections.
CELL_BALANCING: Final = (0x1230, 0x1238)  # one coil per cell, cells 1..16
FET_EVENTS: Final = 0x1278  # TB07
DISCHARGE_FET_ON: Final = FET_EVENTS + 0
CHARGE_FET_ON: Final = FET_EVENTS + 1

WARNING_COILS: Final[Mapping[int, str]] = {
    0x1248 + 0: Alarm.CELL_OVERVOLTAGE,  # TB02 voltage events
    0x1248 + 2: Alarm.CELL_UNDERVOLTAGE,
    0x1248 + 4: Alarm.PACK_OVERVOLTAGE,
    0x1248 + 6: Alarm.PACK_UNDERVOLTAGE,
    0x1250 + 0: Alarm.CHARGE_OVERTEMPERATURE,  # TB03 cell temperature events
    0x1250 + 2: Alarm.CHARGE_UNDERTEMPERATURE,
    0x1250 + 4: Alarm.DISCHARGE_OVERTEMPERATURE,
    0x1250 + 6: Alarm.DISCHARGE_UNDERTEMPERATURE,
    0x1258 + 0: Alarm.ENVIRONMENT_OVERTEMPERATURE,  # TB04 environment and power
    0x1258 + 2: Alarm.ENVIRONMENT_UNDERTEMPERATURE,
    0x1258 + 4: Alarm.MOSFET_OVERTEMPERATURE,
    0x1260 + 0: Alarm.CHARGE_OVERCURRENT,  # TB05 current events
    0x1260 + 3: Alarm.DISCHARGE_OVERCURRENT,
    0x1270 + 2: Alarm.LOW_CAPACITY,  # TB06 capacity events
    0x1270 + 4: Alarm.CELL_IMBALANCE,
}
PROTECTION_COILS: Final[Mapping[int, str]] = {
    0x1248 + 1: Alarm.CELL_OVERVOLTAGE,
    0x1248 + 3: Alarm.CELL_UNDERVOLTAGE,
    0x1248 + 5: Alarm.PACK_OVERVOLTAGE,
    0x1248 + 7: Alarm.PACK_UNDERVOLTAGE,
    0x1250 + 1: Alarm.CHARGE_OVERTEMPERATURE,
    0x1250 + 3: Alarm.CHARGE_UNDERTEMPERATURE,
    0x1250 + 5: Alarm.DISCHARGE_OVERTEMPERATURE,
    0x1250 + 7: Alarm.DISCHARGE_UNDERTEMPERATURE,
    0x1258 + 1: Alarm.ENVIRONMENT_OVERTEMPERATURE,
    0x1258 + 3: Alarm.ENVIRONMENT_UNDERTEMPERATURE,
    0x1258 + 5: Alarm.MOSFET_OVERTEMPERATURE,
    0x1260 + 1: Alarm.CHARGE_OVERCURRENT,
    0x1260 + 2: Alarm.CHARGE_OVERCURRENT,  # second level
    0x1260 + 4: Alarm.DISCHARGE_OVERCURRENT,
    0x1260 + 5: Alarm.DISCHARGE_OVERCURRENT,  # second level
    0x1260 + 6: Alarm.SHORT_CIRCUIT,
    0x1268 + 0: Alarm.SHORT_CIRCUIT,  # TB16 latched protections
    0x1268 + 2: Alarm.CHARGE_OVERCURRENT,
    0x1268 + 3: Alarm.DISCHARGE_OVERCURRENT,
    0x1270 + 3: Alarm.LOW_CAPACITY,
    0x1288 + 0: Alarm.TEMPERATURE_SENSOR_FAULT,  # TB15 hardware faults
    0x1288 + 1: Alarm.INTERNAL_COMMUNICATION_FAULT,  # the AFE stopped answering
    0x1288 + 2: Alarm.CHARGE_MOSFET_FAULT,
    0x1288 + 3: Alarm.DISCHARGE_MOSFET_FAULT,
    0x1288 + 4: Alarm.CELL_FAULT,
    0x1288 + 5: Alarm.BALANCER_WIRE_FAULT,  # a sense wire broken
}

MASTER_SILENT: Final = (
    "the master pack at unit 0 did not answer. Unit 0 is also the Modbus "
    "broadcast address, and many gateways and Modbus clients never deliver "
    "a reply from it: read the master through a USB RS485 adapter or a "
    "transparent (RTU over TCP) gateway, or use listen-only mode"
)


class MasterUnreachable(PackNotResponding):
    """Unit 0 stayed silent, most likely because it is the broadcast address."""


@dataclass(frozen=True, kw_only=True)
class SystemSummary:
    """The master's view of the whole bank (system block EIA, 0x2000..0x2019)."""

    voltage: float | None  # V
    current: float | None  # A, positive while charging
    remaining_capacity: float | None  # Ah
    full_capacity: float | None  # Ah
    rated_capacity: float | None  # Ah
    online_packs: frozenset[int]  # pack addresses, from the bit mask
    protected_packs: frozenset[int]
    discharge_current_limit: float | None  # A
    charge_current_limit: float | None  # A
    pack_count: int
    cycles: int | None
    soc: float | None  # %
    soh: float | None  # %


def _check(values: Sequence[int], count: int, what: str) -> None:
    if len(values) != count:
        raise FrameError(f"{what}: expected {count} registers, got {len(values)}")
    for value in values:
        if not 0 <= value <= 0xFFFF:
            raise FrameError(f"{what}: {value} is not a 16-bit register value")


def _signed16(value: int) -> int:
    return value - 0x10000 if value & 0x8000 else value


def _scaled(value: int, step: int) -> float | None:
    return None if value == UNSET else value / step


def _permille(value: int) -> float | None:
    """Return a 0.1 % field as percent; past 100 % is no reading."""
    return value / 10 if value <= 1000 else None


def _temperature(value: int) -> float | None:
    """Return a 0.1 K field in degC; 0 and 0xFFFF are an absent sensor."""
    if value in (0, UNSET):
        return None
    celsius = (value - KELVIN_OFFSET) / 10
    low, high = TEMPERATURE_RANGE
    return celsius if low <= celsius <= high else None


def _cells(values: Sequence[int]) -> tuple[float | None, ...]:
    fitted = len(values)
    while fitted and values[fitted - 1] in (0, UNSET):
        fitted -= 1
    return tuple(None if mv in (0, UNSET) else mv / 1000 for mv in values[:fitted])


def decode_pack(
    address: int,
    pack: Sequence[int],
    cells: Sequence[int],
    events: Sequence[bool] | None = None,
) -> PackReading:
    """Decode PIA (0x1000, 17 registers), PIB (0x1100, 26) and PIC coils (0x1200, 144).

    Without the coils the reading has no alarms and the FET states are unknown.
    """
    _check(pack, PACK_COUNT, f"pack {address} block 0x1000")
    _check(cells, CELLS_COUNT, f"pack {address} block 0x1100")
    if events is not None and len(events) != EVENTS_COUNT:
        raise FrameError(f"pack {address} coils 0x1200: expected {EVENTS_COUNT}, got {len(events)}")
    sensors = cells[FIRST_SENSOR : FIRST_SENSOR + CELL_SENSORS]

    def coil(number: int) -> bool:
        assert events is not None
        return bool(events[number - Block.EVENTS])

    warnings: frozenset[str] = frozenset()
    protections: frozenset[str] = frozenset()
    charge = discharge = balancing = None
    if events is not None:
        warnings = frozenset(name for at, name in WARNING_COILS.items() if coil(at))
        protections = frozenset(name for at, name in PROTECTION_COILS.items() if coil(at))
        charge, discharge = coil(CHARGE_FET_ON), coil(DISCHARGE_FET_ON)
        first = CELL_BALANCING[0]
        balancing = any(coil(first + cell) for cell in range(CELL_SLOTS))
    current = pack[1]
    return PackReading(
        address=address,
        voltage=_scaled(pack[0], 100),  # 10 mV
        # INT16 in 10 mA, positive while charging; 0x8000 is the filler, and
        # 0xFFFF (-1) the "not set" of a pack that fills every register (its
        # voltage unset too); on its own, 0xFFFF is a true -10 mA.
        current=(
            None
            if current == 0x8000 or (current == UNSET and pack[0] == UNSET)
            else _signed16(current) / 100
        ),
        remaining_capacity=_scaled(pack[2], 100),  # 10 mAh
        full_capacity=_scaled(pack[3], 100),
        soc=_permille(pack[5]),
        soh=_permille(pack[6]),
        cycles=None if pack[7] == UNSET else pack[7],
        discharge_current_limit=None if pack[0xF] == UNSET else float(pack[0xF]),  # 1 A
        charge_current_limit=None if pack[0x10] == UNSET else float(pack[0x10]),
        cell_voltages=_cells(cells[:CELL_SLOTS]),
        temperatures=(
            *(_temperature(value) for value in sensors),
            _temperature(cells[ENVIRONMENT]),
        ),
        mosfet_temperature=_temperature(cells[POWER]),
        charge_enabled=charge,
        discharge_enabled=discharge,
        balancing=balancing,
        warnings=warnings,
        protections=protections,
    )


def _u32(values: Sequence[int], index: int) -> int:
    """Return the 32-bit value at ``index``: LOW word first, as the system block sends it."""
    return values[index] | values[index + 1] << 16


def _pack_set(mask: int) -> frozenset[int]:
    if mask == 0xFFFF_FFFF:
        return frozenset()  # a sentinel, not 32 packs
    return frozenset(bit for bit in range(32) if mask >> bit & 1)


def decode_system(registers: Sequence[int]) -> SystemSummary:
    """Decode the master's system block (0x2000..0x2019, 26 registers)."""
    _check(registers, SYSTEM_COUNT, "system block 0x2000")
    raw_current = _u32(registers, 2)
    current: float | None = None
    if raw_current not in (0x8000_0000, 0xFFFF_FFFF):
        signed = raw_current - 0x1_0000_0000 if raw_current & 0x8000_0000 else raw_current
        current = signed / 10  # INT32, 100 mA

    def u32(index: int, step: int) -> float | None:
        value = _u32(registers, index)
        return None if value == 0xFFFF_FFFF else value / step

    return SystemSummary(
        voltage=u32(0, 100),  # 10 mV
        current=current,
        remaining_capacity=u32(4, 100),  # 10 mAh
        full_capacity=u32(6, 100),
        rated_capacity=u32(0xA, 100),
        online_packs=_pack_set(_u32(registers, 0xC)),
        protected_packs=_pack_set(_u32(registers, 0xE)),
        discharge_current_limit=u32(0x10, 10),  # 100 mA
        charge_current_limit=u32(0x12, 10),
        pack_count=registers[0x16],
        cycles=None if registers[0x17] == UNSET else registers[0x17],
        soc=_permille(registers[0x18]),
        soh=_permille(registers[0x19]),
    )


def decode_text(registers: Sequence[int]) -> str | None:
    """Return ASCII from VIA registers, HIGH byte of each register first.

    The map says "small end first", but real packs send the first
    character in the high byte. Padding (NUL, 0xFF, spaces) is stripped;
    anything unprintable makes the field unknown rather than garbage.
    """
    raw = b"".join(value.to_bytes(2, "big") for value in registers)
    text = raw.strip(b"\x00\xff ")
    if not text or any(not 0x20 <= byte <= 0x7E for byte in text):
        return None
    return text.decode("ascii")


def decode_identity(
    address: int,
    registers: Sequence[int],
    *,
    reading: PackReading | None = None,
    rated: int | None = None,
) -> PackIdentity:
    """Decode VIA (0x1700..0x1732): factory, device name, firmware, BMS and pack serials.

    The firmware field is one register; where it is not two printable
    characters it is read as two numbers, major (the high byte, sent first)
    and minor.
    """
    _check(registers, VERSION_COUNT, f"pack {address} block 0x1700")
    firmware_word = registers[0x14]
    firmware = decode_text([firmware_word])
    if firmware is None and firmware_word not in (0, UNSET):
        firmware = f"{firmware_word >> 8}.{firmware_word & 0xFF}"
    serial = decode_text(registers[0x24:0x33]) or decode_text(registers[0x15:0x24])
    cells = len(reading.cell_voltages) if reading is not None else 0
    return PackIdentity(
        address=address,
        family=FAMILY,
        manufacturer=decode_text(registers[0x00:0x0A]),
        model=decode_text(registers[0x0A:0x14]),
        serial=serial,
        firmware=firmware,
        cell_count=cells or CELL_SLOTS,
        design_capacity=None if rated in (None, 0, UNSET) else rated / 100,
    )


Heard = Mapping[tuple[int, int], Sequence[int] | Sequence[bool]]
"""What a listener heard of one unit: (function code, start) -> values."""


def decode_heard(address: int, heard: Heard) -> PackReading | None:
    """Decode what a listener overheard of one pack, or None if it is not enough.

    The master polls PIA and PIB at their starts; coils are used when heard.
    """
    pack = heard.get((READ_INPUT_REGISTERS, Block.PACK))
    cells = heard.get((READ_INPUT_REGISTERS, Block.CELLS))
    if pack is None or cells is None:
        return None
    events = heard.get((READ_COILS, Block.EVENTS))
    return decode_pack(
        address,
        [int(value) for value in pack],
        [int(value) for value in cells],
        None if events is None else [bool(value) for value in events],
    )


# System control (SCA): one register written with a fixed value, by function
# 0x10, the only write function the map lists. An "off" register takes
# 0x55AA, an "on" register 0xAA55; any other value is refused (NACK).
SCA_DISCHARGE_FETS_OFF: Final = 0x1510
SCA_CHARGE_FETS_OFF: Final = 0x1511
SCA_CHARGE_FETS_ON: Final = 0x1515
SCA_OFF: Final = 0x55AA
SCA_ON: Final = 0xAA55
NO_DISCHARGE_ON: Final = (
    "a Seplos V3 can turn its discharge FETs off (0x1510) but its map has no "
    "register to turn them on again, so they are not switched remotely"
)


class SeplosV3Driver(LinkedDriver[ModbusTransport]):
    """Reads Seplos V3 packs, units 0 (the master) to 15, over any Modbus transport."""

    family: ClassVar[str] = FAMILY
    addresses: ClassVar[range] = range(0, 16)

    async def read_pack(self, address: int) -> PackReading:
        """Read one pack: two register reads and one coil read."""
        with _master_explained(address):
            pack = await self.transport.read_input_registers(address, Block.PACK, PACK_COUNT)
            cells = await self.transport.read_input_registers(address, Block.CELLS, CELLS_COUNT)
            events = await self.transport.read_coils(address, Block.EVENTS, EVENTS_COUNT)
        return decode_pack(address, pack, cells, events)

    async def read_identity(self, address: int) -> PackIdentity:
        """Ask one pack who it is (the measurements first: an absent unit fails fast)."""
        reading = await self.read_pack(address)
        with _master_explained(address):
            version = await self.transport.read_input_registers(
                address, Block.VERSION, VERSION_COUNT
            )
            rated = await self.transport.read_input_registers(address, RATED_CAPACITY, 1)
        return decode_identity(address, version, reading=reading, rated=rated[0])

    async def set_paths(
        self, address: int, *, charge: bool | None = None, discharge: bool | None = None
    ) -> None:
        """Switch a pack's charge FETs (SCA 0x1511 off, 0x1515 on).

        The discharge FETs are refused: turned off remotely, nothing in the
        map turns them on again. Unit 0 is refused too: it is the Modbus
        broadcast address, and a write there reaches every pack on the line.
        """
        if discharge is not None:
            raise ControlNotSupported(NO_DISCHARGE_ON)
        if charge is None:
            return
        if address == MASTER_UNIT:
            raise ControlNotSupported(
                "unit 0 is the Modbus broadcast address: a write there would switch every pack"
            )
        register, value = (SCA_CHARGE_FETS_ON, SCA_ON) if charge else (SCA_CHARGE_FETS_OFF, SCA_OFF)
        try:
            await self.transport.write_registers(address, register, [value])
        except ModbusExceptionError as err:
            raise WriteRefused(f"pack {address} refused register 0x{register:04X}: {err}") from err

    async def scan_addresses(self) -> Sequence[int]:
        """Return the units the master lists online, the master first.

        The system block's "online pack flag" has a bit for each pack the
        master reaches, and its pack count says how many that is. Where
        both agree, a scan asks those units only, instead of waiting out a
        response timeout at every empty one of the sixteen. A master that
        is silent, refuses the block or sends a mask and count that
        disagree leaves every unit to be asked.
        """
        try:
            system = await self.read_system()
        except (PackNotResponding, FrameError):
            return self.addresses
        online = system.online_packs | {MASTER_UNIT}
        if len(system.online_packs) != system.pack_count or not online <= set(self.addresses):
            return self.addresses
        return sorted(online)

    async def read_system(self) -> SystemSummary:
        """Read the master's summary of the whole bank."""
        with _master_explained(MASTER_UNIT):
            registers = await self.transport.read_input_registers(
                MASTER_UNIT, Block.SYSTEM, SYSTEM_COUNT
            )
        return decode_system(registers)


@contextmanager
def _master_explained(address: int) -> Iterator[None]:
    """Say why unit 0 may be silent, where it is."""
    try:
        yield
    except MasterUnreachable:
        raise
    except PackNotResponding as err:
        if address != MASTER_UNIT:
            raise
        raise MasterUnreachable(f"{MASTER_SILENT} ({err})") from err
