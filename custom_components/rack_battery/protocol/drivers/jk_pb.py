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
so no read asks for more than 40. A poll reads only the three spans of the
live block that the reading decodes (cells and their mask; the MOSFET
temperature to the sensor flags; temperatures 3 to 5), each within that
limit: three requests where the whole block would take four.

DIP address 0 makes a pack the bus master: it polls units 1 to 15 itself,
and a second master on the line garbles both. Such a bank is read with the
listen-only mode instead (``protocol/listen.py``). That master does not read
registers: it triggers each slave with a one-register write (0x1620 live
data, 0x161E settings) and the slave answers with a 300-byte ``55 AA EB 90``
frame whose payload is the same block, little-endian, from frame byte 6 on
(frame offset = block offset + 6); then the ordinary write reply follows.

A field that holds its type's "not implemented" sentinel (0xFFFF,
0xFFFFFFFF, 0x8000, 0x80000000, or -1 in a signed field) is unknown, never
a number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Final, Literal

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
    """Byte offsets in the device-information block (V1.1)."""

    MODEL = 0x00  # ASCII, 16 bytes
    HARDWARE = 0x10  # ASCII, 8
    SOFTWARE = 0x18  # ASCII, 8
    RUN_TIME = 0x20  # UINT32 s
    POWER_ON_COUNT = 0x24  # UINT32
    UART1_PROTOCOL = 0xB2  # high byte UART1 protocol number, low byte CAN protocol number
    UART1_ENABLE = 0xB4  # 16 bytes
    UART2_PROTOCOL = 0xD4  # high byte protocol number, low byte enable[0]
    LCD_BUZZER_TRIGGER = 0xE4  # high byte LCD buzzer trigger, low byte DRY1 trigger
    DRY2_TRIGGER = 0xE6  # high byte DRY2 trigger, low byte UART library version
    LCD_BUZZER_VALUE = 0xE8  # INT32
    LCD_BUZZER_RELEASE = 0xEC  # INT32
    DRY1_VALUE = 0xF0  # INT32
    DRY1_RELEASE = 0xF4  # INT32
    DRY2_VALUE = 0xF8  # INT32
    DRY2_RELEASE = 0xFC  # INT32
    DATA_STORED_PERIOD = 0x100  # INT32
    CHARGE_TIMES = 0x104  # high byte RCV time, low byte RFV time, 0.1 h
    CAN_LIBRARY = 0x106  # high byte CAN library version


class LiveExtra(IntEnum):
    """Live-block fields the reading does not carry, but a pack fills (V1.1)."""

    CELL_AVERAGE = 0x44  # UINT16 mV
    CELL_DELTA = 0x46  # UINT16 mV
    CELL_NUMBERS = 0x48  # high byte highest cell, low byte lowest cell (0-based)
    WIRE_RESISTANCES = 0x4A  # UINT16 mOhm, 32 of them
    WIRE_ALARMS = 0x8C  # UINT32 bits
    CYCLE_CAPACITY = 0xB4  # UINT32 mAh
    USER_ALARM = 0xBA  # UINT16
    RUN_TIME = 0xBC  # UINT32 s
    USER_ALARM_2 = 0xC2  # UINT16
    RELEASE_TIMES = 0xC4  # six UINT16 s
    EMERGENCY_TIME = 0xD4  # UINT16 s
    VOLTAGE_CENTIVOLTS = 0xE4  # UINT16 10 mV
    HEATING_CURRENT = 0xE6  # INT16 mA
    CHARGER_PLUGGED = 0xEE  # low byte
    TICKS = 0xF0  # UINT32 0.1 s
    RTC = 0x100  # UINT32 s since 2020-01-01
    SLEEP_TIME = 0x108  # UINT32 s
    PCL_MODULE = 0x10C  # high byte


# The live block up to the last field decoded: 0x100 bytes, 128 registers.
LIVE_BYTES: Final = 0x100
# The spans of it a reading decodes, as (first byte, end byte), each at most
# MAX_CHUNK registers: 34, 36 and 3 registers. What lies between (wire
# resistances, counters) is not read.
LIVE_SPANS: Final = (
    (Live.CELLS, Live.CELL_PRESENT + 4),
    (Live.MOSFET_TEMPERATURE, Live.SENSORS_HEATING + 2),
    (Live.TEMPERATURE_3, Live.TEMPERATURE_5 + 2),
)
INFO_BYTES: Final = 0x20
# Settings read for the identity: cell count (u32 at 0x6C) to design capacity (u32 at 0x7C).
SETTINGS_CELL_COUNT: Final = 0x6C
SETTINGS_CAPACITY: Final = 0x7C
SETTINGS_BYTES: Final = SETTINGS_CAPACITY + 4 - SETTINGS_CELL_COUNT
CELL_SLOTS: Final = 32
TEMPERATURE_RANGE: Final = (-50.0, 150.0)
# Settings: the pack's own DIP address (u32).
SETTINGS_ADDRESS: Final = 0x108

# The 55AA frames of a master bus: type byte, and where the block starts.
FRAME_SETTINGS: Final = 0x01
FRAME_LIVE: Final = 0x02
FRAME_INFO: Final = 0x03
FRAME_OFFSET: Final = 6
# The one-register write that asks a slave for each frame, by frame type.
TRIGGERS: Final[Mapping[int, int]] = {
    FRAME_SETTINGS: 0x161E,
    FRAME_LIVE: 0x1620,
    FRAME_INFO: 0x161C,
}
Order = Literal["big", "little"]

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


U16_UNSET: Final = 0xFFFF
U32_UNSET: Final = 0xFFFF_FFFF
# Signed fields: the most negative value; and -1 (all bits set) in a block
# that is all sentinels (its pack voltage unset too). A lone -1 is a true
# reading: -1 mA of current, -0.1 degC in a cold garage.
S16_FILLER: Final = frozenset({-0x8000})
S32_FILLER: Final = frozenset({-0x8000_0000})
S16_UNSET: Final = frozenset({-0x8000, -1})
S32_UNSET: Final = frozenset({-0x8000_0000, -1})


def _u16(image: bytes, offset: int, order: Order = "big") -> int:
    return int.from_bytes(image[offset : offset + 2], order)


def _s16(image: bytes, offset: int, order: Order = "big") -> int:
    return int.from_bytes(image[offset : offset + 2], order, signed=True)


def _u32(image: bytes, offset: int, order: Order = "big") -> int:
    return int.from_bytes(image[offset : offset + 4], order)


def _s32(image: bytes, offset: int, order: Order = "big") -> int:
    return int.from_bytes(image[offset : offset + 4], order, signed=True)


def _scaled_u32(image: bytes, offset: int, order: Order) -> float | None:
    value = _u32(image, offset, order)
    return None if value == U32_UNSET else value / 1000


def _scaled_s32(
    image: bytes, offset: int, order: Order, unset: frozenset[int] = S32_UNSET
) -> float | None:
    value = _s32(image, offset, order)
    return None if value in unset else value / 1000


def _flag(value: int) -> bool | None:
    """Return a 0/1 state byte; anything else (0xFF) is no state."""
    return bool(value) if value in (0, 1) else None


def _temperature(
    image: bytes, offset: int, fitted: bool, order: Order, unset: frozenset[int] = S16_UNSET
) -> float | None:
    if not fitted:
        return None
    raw = _s16(image, offset, order)
    if raw in unset:
        return None
    celsius = raw / 10
    low, high = TEMPERATURE_RANGE
    return celsius if low <= celsius <= high else None


def _cells(image: bytes, order: Order) -> tuple[float | None, ...]:
    """Return the fitted cells, as the presence mask says, else the non-zero slots."""
    mask = _u32(image, Live.CELL_PRESENT, order)
    if mask == U32_UNSET:
        mask = 0  # no mask at all, rather than 32 cells fitted
    values = [_u16(image, Live.CELLS + 2 * cell, order) for cell in range(CELL_SLOTS)]
    fitted = mask.bit_length() if mask else len(values)
    while fitted and not mask and values[fitted - 1] in (0, U16_UNSET):
        fitted -= 1
    return tuple(
        None if mv in (0, U16_UNSET) or (mask and not mask >> cell & 1) else mv / 1000
        for cell, mv in enumerate(values[:fitted])
    )


def decode_live(address: int, image: bytes, *, order: Order = "big") -> PackReading:
    """Decode the first 0x100 bytes of the live block (0x1200) into a reading.

    ``order`` is "big" for registers read over Modbus and "little" for the
    payload of a 55AA frame (the same bytes at the same offsets).
    """
    if len(image) != LIVE_BYTES:
        raise FrameError(
            f"pack {address} live block: expected {LIVE_BYTES} bytes, got {len(image)}"
        )
    sensors = image[Live.SENSORS_HEATING]
    if sensors == 0xFF:
        sensors = 0  # no sensor reported fitted, rather than all of them
    alarms = _u32(image, Live.ALARMS, order)
    if alarms == U32_UNSET:
        alarms = 0  # a word of sentinels names no real condition
    soc = image[Live.BALANCE_STATE_SOC + 1]
    soh = image[Live.SOH_PRECHARGE]
    cycles = _u32(image, Live.CYCLES, order)
    balance = image[Live.BALANCE_STATE_SOC]
    voltage = _scaled_u32(image, Live.VOLTAGE, order)
    filled = voltage is None  # a block of sentinels: -1 is one of them too
    s16_unset = S16_UNSET if filled else S16_FILLER
    s32_unset = S32_UNSET if filled else S32_FILLER
    return PackReading(
        address=address,
        voltage=voltage,
        current=_scaled_s32(image, Live.CURRENT, order, s32_unset),
        soc=float(soc) if soc <= 100 else None,
        soh=float(soh) if soh <= 100 else None,
        remaining_capacity=_scaled_s32(image, Live.REMAINING, order, s32_unset),
        full_capacity=_scaled_u32(image, Live.FULL, order),
        cycles=None if cycles == U32_UNSET else cycles,
        cell_voltages=_cells(image, order),
        # Sensors 1..5, each only where the BMS says it is fitted.
        temperatures=tuple(
            _temperature(image, offset, bool(sensors >> (index + 1) & 1), order, s16_unset)
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
        mosfet_temperature=_temperature(
            image, Live.MOSFET_TEMPERATURE, bool(sensors & 1), order, s16_unset
        ),
        charge_enabled=_flag(image[Live.FETS]),
        discharge_enabled=_flag(image[Live.FETS + 1]),
        balancing=balance != 0 if balance <= 2 else None,
        warnings=frozenset(name for bit, name in WARNING_BITS.items() if alarms >> bit & 1),
        protections=frozenset(name for bit, name in PROTECTION_BITS.items() if alarms >> bit & 1),
    )


def _frame_block(frame: bytes, kind: int, size: int) -> bytes:
    """Return ``size`` bytes of a 55AA frame's block, after checking what it is."""
    if len(frame) != 300 or frame[0:4] != b"\x55\xaa\xeb\x90":
        raise FrameError("not a 300-byte 55AA frame")
    if frame[4] != kind:
        raise FrameError(f"frame type 0x{frame[4]:02X}, expected 0x{kind:02X}")
    if sum(frame[:-1]) & 0xFF != frame[-1]:
        raise FrameError("55AA frame checksum does not match")
    return frame[FRAME_OFFSET : FRAME_OFFSET + size]


def decode_live_frame(address: int, frame: bytes) -> PackReading:
    """Decode a type 0x02 frame (live data) that a master bus carried for a pack."""
    return decode_live(address, _frame_block(frame, FRAME_LIVE, LIVE_BYTES), order="little")


@dataclass(frozen=True, kw_only=True)
class FrameSettings:
    """What a type 0x01 frame (settings) tells about its pack."""

    cell_count: int | None
    design_capacity: float | None  # Ah
    address: int | None  # the pack's own DIP address


def decode_settings_frame(frame: bytes) -> FrameSettings:
    """Decode the fields of a type 0x01 frame that name and size the pack."""
    block = _frame_block(frame, FRAME_SETTINGS, SETTINGS_ADDRESS + 4)
    cells = _u32(block, SETTINGS_CELL_COUNT, "little")
    capacity = _u32(block, SETTINGS_CAPACITY, "little")
    address = _u32(block, SETTINGS_ADDRESS, "little")
    return FrameSettings(
        cell_count=cells if 0 < cells <= CELL_SLOTS else None,
        design_capacity=capacity / 1000 if capacity not in (0, U32_UNSET) else None,
        address=address if 0 <= address <= 15 else None,
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
    if capacity == U32_UNSET:
        capacity = 0
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
        """Read the spans of one pack's live block that a reading decodes (three reads)."""
        image = bytearray(LIVE_BYTES)
        for start, end in LIVE_SPANS:
            image[start:end] = await self._read_bytes(address, Block.LIVE + start, end - start)
        return decode_live(address, bytes(image))

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
