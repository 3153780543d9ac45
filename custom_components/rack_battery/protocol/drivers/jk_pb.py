"""JK-PB inverter BMS over Modbus RTU ("JK BMS RS485 Modbus" V1.0/V1.1), pack by pack.

Each pack is a unit 1 to 15 set by its DIP switches, at 115200 baud, read
with function 0x03. The map is a byte image, and a register address is the
block's base plus the BYTE offset of the field: live data at 0x1200, settings
at 0x1000, device information at 0x1400. So cell ``i`` is at 0x1200 + 2i,
the pack voltage (u32, mV) at 0x1290, the current (s32, mA) at 0x1298, and a
read of N registers at an address returns the 2N bytes from that offset.

Two 8-bit fields share a register with the first one listed in the high
byte: SoC is the LOW byte of 0x12A6 (balancer state the high), and 0x12C0
holds the charge FET state high and the discharge FET state low. The same
order makes the image big-endian throughout, so a 32-bit field sends its
high word first.

Reads longer than about 40 registers are reported to fail on these packs,
so the live block is read in chunks of at most 40.

DIP address 0 makes a pack the bus master: it polls units 1 to 15 itself,
and a second master on the line garbles both. Such a bank is read with the
listen-only mode instead (``protocol/listen.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import IntEnum
from typing import ClassVar, Final

from ...bank.model import PackIdentity, PackReading
from ..alarms import Alarm
from ..errors import ControlNotSupported, FrameError, WriteRefused
from ..transport.modbus_tcp import ModbusExceptionError, ModbusTransport
from .base import LinkedDriver

FAMILY: Final = "jk_pb"
BAUDRATE: Final = 115200
READ_HOLDING_REGISTERS: Final = 0x03
# The longest read these packs are known to answer.
MAX_CHUNK: Final = 40


class Block(IntEnum):
    """Base address of each block; a field's address adds its byte offset."""

    SETTINGS = 0x1000
    LIVE = 0x1200
    INFO = 0x1400


class Live(IntEnum):
    """Byte offsets in the live block (V1.1)."""

    CELLS = 0x00  # UINT16 mV, 32 slots
    CELL_PRESENT = 0x40  # UINT32, bit n: cell n fitted
    MOSFET_TEMPERATURE = 0x8A  # INT16 0.1 degC
    VOLTAGE = 0x90  # UINT32 mV
    POWER = 0x94  # UINT32 mW
    CURRENT = 0x98  # INT32 mA, positive while charging
    TEMPERATURE_1 = 0x9C  # INT16 0.1 degC
    TEMPERATURE_2 = 0x9E
    ALARMS = 0xA0  # UINT32 bits
    BALANCE_CURRENT = 0xA4  # INT16 mA
    BALANCE_STATE_SOC = 0xA6  # high byte balancer (0 off, 1 charge, 2 discharge), low byte SoC %
    REMAINING = 0xA8  # INT32 mAh
    FULL = 0xAC  # UINT32 mAh
    CYCLES = 0xB0  # UINT32
    SOH_PRECHARGE = 0xB8  # high byte SoH %, low byte precharge
    FETS = 0xC0  # high byte charge FET, low byte discharge FET
    SENSORS_HEATING = 0xD0  # high byte: bit0 MOSFET sensor, bits 1..5 battery sensors (1 = fitted)
    TEMPERATURE_3 = 0xF8
    TEMPERATURE_4 = 0xFA
    TEMPERATURE_5 = 0xFC


class Info(IntEnum):
    """Byte offsets in the device-information block."""

    MODEL = 0x00  # ASCII, 16 bytes
    HARDWARE = 0x10  # ASCII, 8
    SOFTWARE = 0x18  # ASCII, 8


# The live block up to the last field decoded: 0x100 bytes, 128 registers.
LIVE_BYTES: Final = 0x100
INFO_BYTES: Final = 0x20
# Settings read for the identity: cell count (u32 at 0x6C) to design capacity (u32 at 0x7C).
SETTINGS_CELL_COUNT: Final = 0x6C
SETTINGS_CAPACITY: Final = 0x7C
SETTINGS_BYTES: Final = SETTINGS_CAPACITY + 4 - SETTINGS_CELL_COUNT
CELL_SLOTS: Final = 32
TEMPERATURE_RANGE: Final = (-50.0, 150.0)

# Alarm word (0xA0): the BMS has acted, or found a fault in itself. Bits the
# table has no shared name for (GPS, password) are left out.
PROTECTION_BITS: Final[Mapping[int, str]] = {
    0: Alarm.BALANCER_WIRE_FAULT,
    1: Alarm.MOSFET_OVERTEMPERATURE,
    2: Alarm.CELL_COUNT_MISMATCH,
    3: Alarm.CURRENT_SENSOR_FAULT,
    4: Alarm.CELL_OVERVOLTAGE,
    5: Alarm.PACK_OVERVOLTAGE,
    6: Alarm.CHARGE_OVERCURRENT,
    7: Alarm.SHORT_CIRCUIT,  # while charging
    8: Alarm.CHARGE_OVERTEMPERATURE,
    9: Alarm.CHARGE_UNDERTEMPERATURE,
    10: Alarm.INTERNAL_COMMUNICATION_FAULT,
    11: Alarm.CELL_UNDERVOLTAGE,
    12: Alarm.PACK_UNDERVOLTAGE,
    13: Alarm.DISCHARGE_OVERCURRENT,
    14: Alarm.SHORT_CIRCUIT,  # while discharging
    15: Alarm.DISCHARGE_OVERTEMPERATURE,
    16: Alarm.CHARGE_MOSFET_FAULT,
    17: Alarm.DISCHARGE_MOSFET_FAULT,
    22: Alarm.TEMPERATURE_SENSOR_FAULT,
}
# Bit 21, "battery over temperature alarm", is the one warning of the word.
WARNING_BITS: Final[Mapping[int, str]] = {21: Alarm.DISCHARGE_OVERTEMPERATURE}


def registers_to_bytes(registers: Sequence[int]) -> bytes:
    """Return the byte image behind registers (each register high byte first)."""
    for value in registers:
        if not 0 <= value <= 0xFFFF:
            raise FrameError(f"{value} is not a 16-bit register value")
    return b"".join(value.to_bytes(2, "big") for value in registers)


def chunks(base: int, size: int) -> list[tuple[int, int]]:
    """Return (address, register count) reads covering ``size`` bytes from ``base``."""
    reads: list[tuple[int, int]] = []
    offset = 0
    while offset < size:
        count = min(MAX_CHUNK, (size - offset + 1) // 2)
        reads.append((base + offset, count))
        offset += 2 * count
    return reads


def _u16(image: bytes, offset: int) -> int:
    return int.from_bytes(image[offset : offset + 2], "big")


def _s16(image: bytes, offset: int) -> int:
    return int.from_bytes(image[offset : offset + 2], "big", signed=True)


def _u32(image: bytes, offset: int) -> int:
    return int.from_bytes(image[offset : offset + 4], "big")


def _s32(image: bytes, offset: int) -> int:
    return int.from_bytes(image[offset : offset + 4], "big", signed=True)


def _temperature(image: bytes, offset: int, fitted: bool) -> float | None:
    if not fitted:
        return None
    celsius = _s16(image, offset) / 10
    low, high = TEMPERATURE_RANGE
    return celsius if low <= celsius <= high else None


def _cells(image: bytes) -> tuple[float | None, ...]:
    """Return the fitted cells, as the presence mask says, else the non-zero slots."""
    mask = _u32(image, Live.CELL_PRESENT)
    values = [_u16(image, Live.CELLS + 2 * cell) for cell in range(CELL_SLOTS)]
    fitted = mask.bit_length() if mask else len(values)
    while fitted and not mask and values[fitted - 1] in (0, 0xFFFF):
        fitted -= 1
    return tuple(
        None if mv in (0, 0xFFFF) or (mask and not mask >> cell & 1) else mv / 1000
        for cell, mv in enumerate(values[:fitted])
    )


def decode_live(address: int, image: bytes) -> PackReading:
    """Decode the first 0x100 bytes of the live block (0x1200) into a reading."""
    if len(image) != LIVE_BYTES:
        raise FrameError(
            f"pack {address} live block: expected {LIVE_BYTES} bytes, got {len(image)}"
        )
    sensors = image[Live.SENSORS_HEATING]
    alarms = _u32(image, Live.ALARMS)
    soc = image[Live.BALANCE_STATE_SOC + 1]
    soh = image[Live.SOH_PRECHARGE]
    return PackReading(
        address=address,
        voltage=_u32(image, Live.VOLTAGE) / 1000,
        current=_s32(image, Live.CURRENT) / 1000,
        soc=float(soc) if soc <= 100 else None,
        soh=float(soh) if soh <= 100 else None,
        remaining_capacity=_s32(image, Live.REMAINING) / 1000,
        full_capacity=_u32(image, Live.FULL) / 1000,
        cycles=_u32(image, Live.CYCLES),
        cell_voltages=_cells(image),
        # Sensors 1..5, each only where the BMS says it is fitted.
        temperatures=tuple(
            _temperature(image, offset, bool(sensors >> (index + 1) & 1))
            for index, offset in enumerate(
                (
                    Live.TEMPERATURE_1,
                    Live.TEMPERATURE_2,
                    Live.TEMPERATURE_3,
                    Live.TEMPERATURE_4,
                    Live.TEMPERATURE_5,
                )
            )
        ),
        mosfet_temperature=_temperature(image, Live.MOSFET_TEMPERATURE, bool(sensors & 1)),
        charge_enabled=image[Live.FETS] != 0,
        discharge_enabled=image[Live.FETS + 1] != 0,
        balancing=image[Live.BALANCE_STATE_SOC] != 0,
        warnings=frozenset(name for bit, name in WARNING_BITS.items() if alarms >> bit & 1),
        protections=frozenset(name for bit, name in PROTECTION_BITS.items() if alarms >> bit & 1),
    )


def _text(raw: bytes) -> str | None:
    text = raw.split(b"\x00", 1)[0].strip(b"\xff ")
    if not text or any(not 0x20 <= byte <= 0x7E for byte in text):
        return None
    return text.decode("ascii")


def decode_identity(
    address: int, info: bytes, settings: bytes, *, reading: PackReading | None = None
) -> PackIdentity:
    """Decode the device-information bytes (0x1400, 0x20) and settings 0x106C..0x107F.

    The map has no serial number, so a JK pack is named by its slot.
    """
    if len(info) != INFO_BYTES or len(settings) != SETTINGS_BYTES:
        raise FrameError(f"pack {address} identity: wrong length")
    cells = int.from_bytes(settings[0:4], "big")
    capacity = int.from_bytes(settings[SETTINGS_CAPACITY - SETTINGS_CELL_COUNT :], "big")
    fitted = len(reading.cell_voltages) if reading is not None else 0
    return PackIdentity(
        address=address,
        family=FAMILY,
        manufacturer="JK",
        model=_text(info[Info.MODEL : Info.MODEL + 16]),
        firmware=_text(info[Info.SOFTWARE : Info.SOFTWARE + 8]),
        cell_count=cells if 0 < cells <= CELL_SLOTS else (fitted or None),
        design_capacity=capacity / 1000 if capacity else None,
    )


Heard = Mapping[tuple[int, int], Sequence[int] | Sequence[bool]]
"""What a listener heard of one unit: (function code, start) -> values."""


def decode_heard(address: int, heard: Heard) -> PackReading | None:
    """Decode the live block from whatever reads of it a listener overheard.

    The master's reads need not match ours: every 0x03 reply inside the
    live block is laid into the byte image at its own offset, and a reading
    is made once the image is complete.
    """
    image = bytearray(LIVE_BYTES)
    covered = bytearray(LIVE_BYTES)
    for (function, start), values in heard.items():
        offset = start - Block.LIVE
        if function != READ_HOLDING_REGISTERS or not 0 <= offset < LIVE_BYTES:
            continue
        raw = registers_to_bytes([int(value) for value in values])[: LIVE_BYTES - offset]
        image[offset : offset + len(raw)] = raw
        covered[offset : offset + len(raw)] = b"\x01" * len(raw)
    if not all(covered):
        return None
    return decode_live(address, bytes(image))


# The settings block's switches, u32 (two registers, big-endian): 1 on, 0 off.
CHARGE_SWITCH: Final = 0x1070
DISCHARGE_SWITCH: Final = 0x1074


class JkPbDriver(LinkedDriver[ModbusTransport]):
    """Reads JK-PB packs, DIP addresses 1 to 15, over any Modbus transport."""

    family: ClassVar[str] = FAMILY
    addresses: ClassVar[range] = range(1, 16)

    async def _read_bytes(self, address: int, base: int, size: int) -> bytes:
        image = b""
        for start, count in chunks(base, size):
            image += registers_to_bytes(
                await self.transport.read_holding_registers(address, start, count)
            )
        return image[:size]

    async def read_pack(self, address: int) -> PackReading:
        """Read one pack's live block in chunks of at most 40 registers."""
        return decode_live(address, await self._read_bytes(address, Block.LIVE, LIVE_BYTES))

    async def read_identity(self, address: int) -> PackIdentity:
        """Ask one pack who it is (the measurements first: an absent unit fails fast)."""
        reading = await self.read_pack(address)
        info = await self._read_bytes(address, Block.INFO, INFO_BYTES)
        settings = await self._read_bytes(
            address, Block.SETTINGS + SETTINGS_CELL_COUNT, SETTINGS_BYTES
        )
        return decode_identity(address, info, settings, reading=reading)

    async def set_paths(
        self, address: int, *, charge: bool | None = None, discharge: bool | None = None
    ) -> None:
        """Write a pack's charge switch (0x1070) and discharge switch (0x1074), function 0x10.

        Unit 0 is refused: it is the broadcast address, and on a JK bank the
        pack at DIP 0 is the master that polls the others.
        """
        if address not in self.addresses:
            raise ControlNotSupported(f"unit {address} is not a JK-PB pack address (1 to 15)")
        for register, closed in ((CHARGE_SWITCH, charge), (DISCHARGE_SWITCH, discharge)):
            if closed is None:
                continue
            try:
                await self.transport.write_registers(address, register, [0, int(closed)])
            except ModbusExceptionError as err:
                raise WriteRefused(
                    f"pack {address} refused register 0x{register:04X}: {err}"
                ) from err
