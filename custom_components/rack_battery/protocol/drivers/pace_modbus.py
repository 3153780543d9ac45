"""PACE BMS over Modbus (protocol V1.3 of 2017-06-27), as packs behind a gateway.

Each pack on the RS485 line is a Modbus unit, 1 to 15 by its DIP switches,
and answers function 0x03 on a holding-register map. One read of registers
0 to 36 carries every measurement; registers 150 to 179 carry three
20-character ASCII texts: the firmware version, the "Model SN" that the BMS
maker writes, and the pack serial that the pack assembler writes. The pack
serial only arrived with V1.3 of the map; older firmware may end the map at
169 and refuse a read that reaches past it, so the driver then reads 150 to
169 alone.

The map is a public fact and lives here as a table, so the simulator can
serve the same addresses; the decoders are checked against values computed
by hand from the vendor document, not against the simulator's encoder.

Units differ from PACE's ASCII protocol on the same BMS: temperatures here
are signed tenths of a degree Celsius, not tenths of a kelvin, and current
is in 10 mA steps, positive while charging.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Final, Self

from ...bank.model import PackIdentity, PackReading
from ..alarms import Alarm
from ..errors import FrameError
from ..transport.modbus_tcp import ModbusExceptionError, ModbusTcpTransport, ModbusTransport
from .base import LinkedDriver


class Register(IntEnum):
    """Holding-register addresses of the V1.3 map (decimal, as the document counts)."""

    CURRENT = 0  # INT16, 10 mA, positive while charging
    VOLTAGE = 1  # UINT16, 10 mV
    SOC = 2  # UINT8 in the low byte, %
    SOH = 3  # UINT8 in the low byte, %
    REMAINING_CAPACITY = 4  # UINT16, 10 mAh
    FULL_CAPACITY = 5  # UINT16, 10 mAh
    DESIGN_CAPACITY = 6  # UINT16, 10 mAh
    CYCLES = 7  # UINT16
    # 8 is reserved.
    WARNING = 9  # bits, WARNING_FLAGS
    PROTECTION = 10  # bits, PROTECTION_FLAGS
    STATUS = 11  # bits, STATUS_FLAGS (faults in the low byte, states in the high)
    BALANCING = 12  # bits, one per cell (the document gives no layout)
    # 13 and 14 are reserved.
    FIRST_CELL = 15  # UINT16 mV, sixteen registers 15..30
    FIRST_CELL_TEMPERATURE = 31  # INT16 0.1 degC, four registers 31..34
    MOSFET_TEMPERATURE = 35  # INT16 0.1 degC, "or invalid"
    ENVIRONMENT_TEMPERATURE = 36  # INT16 0.1 degC, "or invalid"
    # 37..59 reserved, 60..114 protection settings (read/write), 115..149 reserved.
    VERSION = 150  # 20 ASCII characters, read only
    MODEL_SN = 160  # 20 ASCII characters, written by the BMS maker
    PACK_SN = 170  # 20 ASCII characters, written by the pack maker (V1.3)


FAMILY: Final = "pace_modbus"
CELL_SLOTS: Final = 16
CELL_TEMPERATURES: Final = 4
# One read serves a pack: registers 0..36.
MEASUREMENTS_START: Final = 0
MEASUREMENTS_COUNT: Final = 37
# Identity texts: ten registers, two characters each, per text.
TEXT_REGISTERS: Final = 10
IDENTITY_START: Final = Register.VERSION
IDENTITY_COUNT: Final = 3 * TEXT_REGISTERS
IDENTITY_COUNT_BEFORE_V13: Final = 2 * TEXT_REGISTERS

# The document asks for more than 100 ms between frames on the RS485 line
# (and gives the BMS 200 ms to answer).
FRAME_GAP: Final = 0.1
# What firmware before V1.3 answers to a read that reaches past register 169.
ILLEGAL_DATA_ADDRESS: Final = 0x02

# Status bits that tell whether the pack's MOSFETs conduct.
CHARGE_FET_ON_BIT: Final = 10
DISCHARGE_FET_ON_BIT: Final = 11

# Warning register 9: the pack is near a limit.
WARNING_FLAGS: Final[Mapping[int, str]] = {
    0: Alarm.CELL_OVERVOLTAGE,
    1: Alarm.CELL_UNDERVOLTAGE,
    2: Alarm.PACK_OVERVOLTAGE,
    3: Alarm.PACK_UNDERVOLTAGE,
    4: Alarm.CHARGE_OVERCURRENT,
    5: Alarm.DISCHARGE_OVERCURRENT,
    8: Alarm.CHARGE_OVERTEMPERATURE,
    9: Alarm.DISCHARGE_OVERTEMPERATURE,
    10: Alarm.CHARGE_UNDERTEMPERATURE,
    11: Alarm.DISCHARGE_UNDERTEMPERATURE,
    12: Alarm.ENVIRONMENT_OVERTEMPERATURE,
    13: Alarm.ENVIRONMENT_UNDERTEMPERATURE,
    14: Alarm.MOSFET_OVERTEMPERATURE,
    15: Alarm.LOW_CAPACITY,
}
# Protection register 10: the pack has acted. Bits 12-14 are NOT in the
# warning register's order: MOSFET comes first here, last there.
PROTECTION_FLAGS: Final[Mapping[int, str]] = {
    0: Alarm.CELL_OVERVOLTAGE,
    1: Alarm.CELL_UNDERVOLTAGE,
    2: Alarm.PACK_OVERVOLTAGE,
    3: Alarm.PACK_UNDERVOLTAGE,
    4: Alarm.CHARGE_OVERCURRENT,
    5: Alarm.DISCHARGE_OVERCURRENT,
    6: Alarm.SHORT_CIRCUIT,
    7: Alarm.CHARGER_OVERVOLTAGE,
    8: Alarm.CHARGE_OVERTEMPERATURE,
    9: Alarm.DISCHARGE_OVERTEMPERATURE,
    10: Alarm.CHARGE_UNDERTEMPERATURE,
    11: Alarm.DISCHARGE_UNDERTEMPERATURE,
    12: Alarm.MOSFET_OVERTEMPERATURE,
    13: Alarm.ENVIRONMENT_OVERTEMPERATURE,
    14: Alarm.ENVIRONMENT_UNDERTEMPERATURE,
}
# The faults of the status register's low byte: the BMS found something
# wrong with itself. They join the protections in a reading.
STATUS_FAULTS: Final[Mapping[int, str]] = {
    0: Alarm.CHARGE_MOSFET_FAULT,
    1: Alarm.DISCHARGE_MOSFET_FAULT,
    2: Alarm.TEMPERATURE_SENSOR_FAULT,
    4: Alarm.CELL_FAULT,
    5: Alarm.INTERNAL_COMMUNICATION_FAULT,
}
# Status/fault register 11: faults in the low byte, states in the high byte.
STATUS_FLAGS: Final[Mapping[int, str]] = {
    **STATUS_FAULTS,
    8: "charging",
    9: "discharging",
    CHARGE_FET_ON_BIT: "charge_mosfet_on",
    DISCHARGE_FET_ON_BIT: "discharge_mosfet_on",
    12: "charge_limiter_on",
    14: "charger_reversed",
    15: "heater_on",
}

# "Not implemented" fillers. An unsigned field full of ones is no reading.
# A signed temperature of 0x8000 or 0x7FFF is a filler. The document says
# the MOSFET and environment registers may be "invalid" (on its BMS-4820)
# without saying what they then hold; 0xFFFF is the usual filler, so it is
# taken as unknown too, at the price of a true -0.1 degC reading showing as
# unknown. For the current, 0xFFFF is a real -10 mA (a pack at rest reads
# that), and only 0x8000 is taken as a filler.
UNSET: Final = 0xFFFF
SIGNED_UNSET: Final = 0x8000
TEMPERATURE_UNSET: Final = frozenset({0x7FFF, 0x8000, 0xFFFF})
# A temperature outside this range is a broken or missing sensor: a pack
# cannot be that hot or cold and still talk.
TEMPERATURE_RANGE: Final = (-50.0, 150.0)


@dataclass(frozen=True, kw_only=True)
class PaceFlags:
    """The alarm, protection and status bits of one read, by name."""

    warnings: frozenset[str]
    protections: frozenset[str]
    status: frozenset[str]
    balancing_cells: tuple[int, ...]  # 1-based cell numbers


def _check_registers(registers: Sequence[int], count: int, what: str) -> None:
    if len(registers) != count:
        raise FrameError(f"{what}: expected {count} registers, got {len(registers)}")
    for value in registers:
        if not 0 <= value <= 0xFFFF:
            raise FrameError(f"{what}: {value} is not a 16-bit register value")


def _signed(value: int) -> int:
    return value - 0x10000 if value & 0x8000 else value


def _unsigned(value: int, step: int) -> float | None:
    """Return a UINT16 in SI units (value / step), or None for the filler."""
    return None if value == UNSET else value / step


def _percent(value: int) -> float | None:
    """Return a UINT8 percentage; anything past 100 (0xFF, 0xFFFF) is unknown."""
    return float(value) if value <= 100 else None


def _temperature(value: int) -> float | None:
    if value in TEMPERATURE_UNSET:
        return None
    celsius = _signed(value) / 10
    low, high = TEMPERATURE_RANGE
    return celsius if low <= celsius <= high else None


def _cells(values: Sequence[int]) -> tuple[float | None, ...]:
    """Return the cell voltages of the cells that are fitted.

    The map has sixteen cell registers whatever the pack; on a 15-cell pack
    the unused one is expected to read 0 or the filler. Trailing empty
    inputs are dropped; an empty input between fitted cells is an unknown
    reading of that cell, so positions stay the cells' own.
    """
    fitted = len(values)
    while fitted and values[fitted - 1] in (0, UNSET):
        fitted -= 1
    return tuple(None if mv in (0, UNSET) else mv / 1000 for mv in values[:fitted])


def _active(value: int, names: Mapping[int, str]) -> frozenset[str]:
    if not value:
        return _NONE_ACTIVE  # the usual word: nothing to look up
    return frozenset(name for bit, name in names.items() if value >> bit & 1)


_NONE_ACTIVE: frozenset[str] = frozenset()


def decode_pack(address: int, registers: Sequence[int]) -> PackReading:
    """Decode one read of registers 0..36 into a reading."""
    _check_registers(registers, MEASUREMENTS_COUNT, f"pack {address} measurements")
    current = registers[Register.CURRENT]
    status = registers[Register.STATUS]
    first_cell = Register.FIRST_CELL
    first_temperature = Register.FIRST_CELL_TEMPERATURE
    cell_temperatures = registers[first_temperature : first_temperature + CELL_TEMPERATURES]
    return PackReading(
        address=address,
        current=None if current == SIGNED_UNSET else _signed(current) / 100,
        voltage=_unsigned(registers[Register.VOLTAGE], 100),
        soc=_percent(registers[Register.SOC]),
        soh=_percent(registers[Register.SOH]),
        remaining_capacity=_unsigned(registers[Register.REMAINING_CAPACITY], 100),
        full_capacity=_unsigned(registers[Register.FULL_CAPACITY], 100),
        design_capacity=_unsigned(registers[Register.DESIGN_CAPACITY], 100),
        cycles=None if registers[Register.CYCLES] == UNSET else registers[Register.CYCLES],
        cell_voltages=_cells(registers[first_cell : first_cell + CELL_SLOTS]),
        # Positions stay put: four cell sensors, then the environment.
        temperatures=(
            *(_temperature(value) for value in cell_temperatures),
            _temperature(registers[Register.ENVIRONMENT_TEMPERATURE]),
        ),
        mosfet_temperature=_temperature(registers[Register.MOSFET_TEMPERATURE]),
        charge_enabled=bool(status >> CHARGE_FET_ON_BIT & 1),
        discharge_enabled=bool(status >> DISCHARGE_FET_ON_BIT & 1),
        balancing=registers[Register.BALANCING] & ((1 << CELL_SLOTS) - 1) != 0,
        warnings=_active(registers[Register.WARNING], WARNING_FLAGS),
        protections=_active(registers[Register.PROTECTION], PROTECTION_FLAGS)
        | _active(status, STATUS_FAULTS),
    )


def decode_flags(address: int, registers: Sequence[int]) -> PaceFlags:
    """Decode the warning, protection, status and balancing bits of registers 0..36."""
    _check_registers(registers, MEASUREMENTS_COUNT, f"pack {address} measurements")
    balancing = registers[Register.BALANCING]
    return PaceFlags(
        warnings=_active(registers[Register.WARNING], WARNING_FLAGS),
        protections=_active(registers[Register.PROTECTION], PROTECTION_FLAGS),
        status=_active(registers[Register.STATUS], STATUS_FLAGS),
        balancing_cells=tuple(cell + 1 for cell in range(CELL_SLOTS) if balancing >> cell & 1),
    )


def decode_text(registers: Sequence[int]) -> str | None:
    """Return the ASCII text in registers, two characters each, high byte first.

    Short texts are padded: with spaces, as PACE's ASCII protocol says, and
    NULs or 0xFF are stripped as well, as an unwritten field holds those.
    What remains must be printable ASCII, or the field is unknown rather
    than a string of garbage.
    """
    raw = b"".join(value.to_bytes(2, "big") for value in registers)
    text = raw.strip(b"\x00\xff ")
    if not text or any(not 0x20 <= byte <= 0x7E for byte in text):
        return None
    return text.decode("ascii")


def decode_identity(
    address: int, registers: Sequence[int], *, reading: PackReading | None = None
) -> PackIdentity:
    """Decode registers 150..179 (or 150..169 before V1.3) into an identity.

    ``reading``, from the same pack, supplies the design capacity and the
    number of fitted cells, which the identity block does not carry.

    "Model SN" (160..169) becomes the model. In PACE's ASCII protocol the
    matching field is the BMS board's own serial number, so on real packs it
    may read like a serial rather than a model name. The pack serial
    (170..179) is the serial; where it is blank the pack is named by its slot
    rather than by a field that is not guaranteed to be unique.
    """
    count = len(registers)
    if count not in (IDENTITY_COUNT, IDENTITY_COUNT_BEFORE_V13):
        raise FrameError(
            f"pack {address} identity: expected {IDENTITY_COUNT} "
            f"or {IDENTITY_COUNT_BEFORE_V13} registers, got {count}"
        )
    _check_registers(registers, count, f"pack {address} identity")

    def text(start: Register) -> str | None:
        offset = start - IDENTITY_START
        if offset >= count:
            return None
        return decode_text(registers[offset : offset + TEXT_REGISTERS])

    cells = len(reading.cell_voltages) if reading is not None else 0
    return PackIdentity(
        address=address,
        family=FAMILY,
        model=text(Register.MODEL_SN),
        serial=text(Register.PACK_SN),
        firmware=text(Register.VERSION),
        cell_count=cells or CELL_SLOTS,
        design_capacity=reading.design_capacity if reading is not None else None,
    )


class PaceModbusDriver(LinkedDriver[ModbusTransport]):
    """Reads PACE packs, Modbus units 1 to 15, through one Modbus TCP connection.

    The map has no register that switches a pack's MOSFETs; isolating a
    pack needs PACE's ASCII protocol (commands 0x9A and 0x9B) instead.
    """

    family: ClassVar[str] = FAMILY
    addresses: ClassVar[range] = range(1, 16)

    @classmethod
    def over_tcp(
        cls,
        host: str,
        port: int = 502,
        *,
        timeout: float = 1.0,
        frame_gap: float = FRAME_GAP,
    ) -> Self:
        """Return a driver with a transport of its own to a Modbus TCP gateway.

        The transport keeps the quiet time between frames that the document
        asks of the RS485 line; pass ``frame_gap=0`` where nothing needs it
        (the simulator, a gateway that spaces frames itself).
        """
        return cls(ModbusTcpTransport(host, port, timeout=timeout, frame_gap=frame_gap))

    async def read_pack(self, address: int) -> PackReading:
        """Read one pack's measurements in a single request."""
        return decode_pack(address, await self._measurements(address))

    async def read_flags(self, address: int) -> tuple[PackReading, PaceFlags]:
        """Read one pack's measurements and its alarm and status bits together."""
        registers = await self._measurements(address)
        return decode_pack(address, registers), decode_flags(address, registers)

    async def read_identity(self, address: int) -> PackIdentity:
        """Ask one pack who it is.

        The measurements are read first: they carry the design capacity and
        the number of fitted cells, and a unit that is not there fails fast
        on that first request (a gateway answers 0x0B at once).
        """
        reading = await self.read_pack(address)
        try:
            texts = await self.transport.read_holding_registers(
                address, IDENTITY_START, IDENTITY_COUNT
            )
        except ModbusExceptionError as err:
            if err.code != ILLEGAL_DATA_ADDRESS:
                raise
            # Firmware before V1.3 ends the map at 169: no pack serial.
            texts = await self.transport.read_holding_registers(
                address, IDENTITY_START, IDENTITY_COUNT_BEFORE_V13
            )
        return decode_identity(address, texts, reading=reading)

    async def _measurements(self, address: int) -> list[int]:
        return await self.transport.read_holding_registers(
            address, MEASUREMENTS_START, MEASUREMENTS_COUNT
        )
