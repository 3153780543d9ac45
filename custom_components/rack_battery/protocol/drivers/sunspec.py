"""SunSpec storage models over Modbus: finding the map, and model 802 (battery base).

A SunSpec device does not have one fixed register map. It starts its map
with the marker "SunS" (0x5375 0x6E53) at one of a few base addresses
(40000 by the standard, 0 or 50000 on some devices), and after it comes a
chain of model blocks, each ``[ID][L][L registers]``, until a block whose
ID is 0xFFFF. A reader therefore finds the marker first, then walks the
chain to learn which models the device has and where each one sits.

The layout of model 802 is taken from the SunSpec Alliance's published
model definitions (``model_802.json``): a table of point offsets, kept
small and explicit here. Values follow SunSpec's rules: a point is scaled
by 10 to the power of its scale-factor point, and a point that a device
does not implement holds a sentinel (0xFFFF unsigned, 0x8000 signed, and
0x8000 in the scale factor) that becomes None, never a number.

The lithium-ion models describe the same battery in more detail: 803
(bank) has one group per string, 804 (one block per string) one group per
module, and 805 (one block per module) one group per cell. Packs wired in
parallel are strings to SunSpec (modules in one string are in series), so
a rack of parallel packs is N strings of one module each. The driver reads
the modules of 805 as packs where the device lists them, else the strings
of 804, else the string groups of 803, else model 802 as a single pack.

Current sign: the model files say only "current flowing to/from the
battery" and give no sign. SunSpec's DER models count power leaving the
device as positive (generator convention), and battery devices that
publish these models follow it: positive is discharge. Every value is
therefore negated here, so a reading is positive while charging like every
other family in the project. A device that counts the other way shows its
current with the wrong sign; that is the device's convention, not a
decoding fault, and can only be told by watching SoC move.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar, Final, Self

from ...bank.model import PackIdentity, PackReading, PollReport
from ..errors import ControlNotSupported, FrameError, PackNotResponding, WriteRefused
from ..transport.modbus_tcp import ModbusExceptionError, ModbusTcpTransport, ModbusTransport
from .base import LinkedDriver

# "SunS" as two big-endian registers.
MARKER: Final = (0x5375, 0x6E53)
# Where devices put the marker, in the order worth trying.
BASE_ADDRESSES: Final = (40000, 0, 50000)
END_OF_MODELS: Final = 0xFFFF
# A chain longer than this is a device reading garbage, not a map.
MAX_MODELS: Final = 64
# Registers a model header and a Modbus read can hold.
HEADER: Final = 2
MAX_READ: Final = 125
# The last address a 16-bit Modbus register address can reach.
LAST_ADDRESS: Final = 0xFFFF

UINT16_UNSET: Final = 0xFFFF
INT16_UNSET: Final = 0x8000
SCALE_UNSET: Final = 0x8000
UINT32_UNSET: Final = 0xFFFF_FFFF
# SunSpec allows scale factors of -10..10.
SCALE_RANGE: Final = range(-10, 11)

BATTERY_BASE: Final = 802
BATTERY_BASE_LENGTH: Final = 62

type ReadRegisters = Callable[[int, int], Awaitable[Sequence[int]]]
"""Read ``count`` holding registers at ``address`` (the device is bound in)."""


@dataclass(frozen=True, kw_only=True)
class ModelBlock:
    """One model of the chain: its ID, where its body starts, and its length."""

    model_id: int
    address: int  # first register after the two-register header
    length: int


# Model 802, offsets from the first register after [ID][L].
B802: Final[Mapping[str, int]] = {
    "AHRtg": 0,
    "WHRtg": 1,
    "SoC": 9,
    "SoH": 11,
    "NCyc": 12,  # uint32, two registers
    "ChaSt": 14,
    "State": 20,
    "Evt1": 24,  # bitfield32, two registers
    "V": 32,
    "CellVMax": 35,
    "CellVMin": 38,
    "A": 42,
    "AChaMax": 43,
    "ADisChaMax": 44,
    "SetOp": 48,  # enum16, RW: 1 connect, 2 disconnect
    "AHRtg_SF": 50,
    "SoC_SF": 54,
    "SoH_SF": 56,
    "V_SF": 57,
    "CellV_SF": 58,
    "A_SF": 59,
    "AMax_SF": 60,
}
# 802 State: the bank's contactor is closed only when CONNECTED.
STATE_CONNECTED: Final = 3

# 802 Evt1 bits, by what they mean for a pack reading. Alarms are the BMS
# having acted (protections), warnings a limit approached.
EVT1_PROTECTIONS: Final[Mapping[int, str]] = {
    # COMMUNICATION_ERROR: the battery's own controller lost a part of it.
    0: "internal_communication_fault",
    1: "charge_overtemperature",  # OVER_TEMP_ALARM
    3: "charge_undertemperature",  # UNDER_TEMP_ALARM
    5: "charge_overcurrent",
    7: "discharge_overcurrent",
    9: "pack_overvoltage",
    11: "pack_undervoltage",
    13: "low_capacity",  # UNDER_SOC_MIN_ALARM
    20: "system_fault",  # CONTACTOR_ERROR
}
EVT1_WARNINGS: Final[Mapping[int, str]] = {
    2: "charge_overtemperature",
    4: "charge_undertemperature",
    6: "charge_overcurrent",
    8: "discharge_overcurrent",
    10: "pack_overvoltage",
    12: "pack_undervoltage",
    14: "low_capacity",
    17: "cell_imbalance",  # VOLTAGE_IMBALANCE_WARNING
}


async def find_base(read: ReadRegisters) -> int:
    """Return the address of the "SunS" marker; raise FrameError if none is found.

    A device that refuses a read at one base address (an exception, a
    garbled reply) may still have the map at the next one; a device that
    does not answer at all is not responding.
    """
    for base in BASE_ADDRESSES:
        try:
            registers = await read(base, len(MARKER))
        except FrameError:
            continue
        if tuple(registers) == MARKER:
            return base
    raise FrameError(f"no SunSpec marker at {', '.join(map(str, BASE_ADDRESSES))}")


async def walk_models(read: ReadRegisters, base: int) -> list[ModelBlock]:
    """Return the model blocks after the marker at ``base``, in map order."""
    models: list[ModelBlock] = []
    address = base + len(MARKER)
    for _ in range(MAX_MODELS):
        if address + HEADER - 1 > LAST_ADDRESS:
            raise FrameError(f"the SunSpec map runs past register {LAST_ADDRESS}")
        header = await read(address, HEADER)
        if len(header) != HEADER:
            raise FrameError(f"model header at {address}: {len(header)} registers")
        model_id, length = header
        if model_id == END_OF_MODELS:
            return models
        models.append(ModelBlock(model_id=model_id, address=address + HEADER, length=length))
        address += HEADER + length
    raise FrameError(f"more than {MAX_MODELS} SunSpec models: not a map")


async def read_model(read: ReadRegisters, block: ModelBlock) -> list[int]:
    """Read a model's body, in as many requests as Modbus needs."""
    body: list[int] = []
    while len(body) < block.length:
        count = min(MAX_READ, block.length - len(body))
        chunk = await read(block.address + len(body), count)
        if len(chunk) != count:
            raise FrameError(f"model {block.model_id}: {len(chunk)} registers, asked {count}")
        body.extend(chunk)
    return body


def scale_factor(value: int) -> int | None:
    """Return a scale factor (a signed exponent), or None if unset or out of range."""
    if value == SCALE_UNSET:
        return None
    exponent = value - 0x10000 if value & 0x8000 else value
    return exponent if exponent in SCALE_RANGE else None


def uint16(value: int, scale: int | None) -> float | None:
    """Return an unsigned point scaled, or None when it or its scale is unset."""
    if value == UINT16_UNSET or scale is None:
        return None
    return _scaled(value, scale)


def int16(value: int, scale: int | None) -> float | None:
    """Return a signed point scaled, or None when it or its scale is unset."""
    if value == INT16_UNSET or scale is None:
        return None
    return _scaled(value - 0x10000 if value & 0x8000 else value, scale)


def _scaled(value: int, scale: int) -> float:
    # round() keeps 5321 x 10^-2 at 53.21 rather than 53.210000000000001.
    return round(value * 10.0**scale, max(0, -scale))


def charge_positive(wire: float | None) -> float | None:
    """Return a SunSpec current (positive leaving the battery) as positive while charging."""
    # 0.0 - x rather than -x, so that a current at rest is 0.0 and not -0.0.
    return None if wire is None else 0.0 - wire


def uint32(high: int, low: int) -> int | None:
    """Return a uint32 sent high word first, or None when unset."""
    value = high << 16 | low
    return None if value == UINT32_UNSET else value


def decode_battery_base(address: int, registers: Sequence[int]) -> PackReading:
    """Decode the body of model 802 into a reading of the whole battery."""
    if len(registers) < BATTERY_BASE_LENGTH:
        raise FrameError(
            f"model {BATTERY_BASE}: {len(registers)} registers, expected {BATTERY_BASE_LENGTH}"
        )
    if any(not 0 <= value <= 0xFFFF for value in registers):
        raise FrameError(f"model {BATTERY_BASE}: a value is not a 16-bit register")

    def point(name: str) -> int:
        return registers[B802[name]]

    def sf(name: str) -> int | None:
        return scale_factor(point(name))

    soc = uint16(point("SoC"), sf("SoC_SF"))
    soh = uint16(point("SoH"), sf("SoH_SF"))
    cycles = uint32(point("NCyc"), registers[B802["NCyc"] + 1])
    events = uint32(point("Evt1"), registers[B802["Evt1"] + 1]) or 0
    state = point("State")
    cell_v = sf("CellV_SF")
    cells = tuple(
        value
        for value in (uint16(point("CellVMin"), cell_v), uint16(point("CellVMax"), cell_v))
        if value is not None
    )
    return PackReading(
        address=address,
        voltage=uint16(point("V"), sf("V_SF")),
        current=charge_positive(int16(point("A"), sf("A_SF"))),
        soc=soc if soc is not None and 0 <= soc <= 100 else None,
        soh=soh if soh is not None and 0 <= soh <= 100 else None,
        design_capacity=uint16(point("AHRtg"), sf("AHRtg_SF")),
        cycles=cycles,
        # Only the lowest and highest cell are in 802; per-cell values are in 805.
        cell_voltages=cells,
        charge_enabled=None if state == UINT16_UNSET else state == STATE_CONNECTED,
        discharge_enabled=None if state == UINT16_UNSET else state == STATE_CONNECTED,
        warnings=frozenset(name for bit, name in EVT1_WARNINGS.items() if events >> bit & 1),
        protections=frozenset(name for bit, name in EVT1_PROTECTIONS.items() if events >> bit & 1),
        charge_current_limit=uint16(point("AChaMax"), sf("AMax_SF")),
        discharge_current_limit=uint16(point("ADisChaMax"), sf("AMax_SF")),
    )


async def read_battery(read: ReadRegisters, address: int) -> PackReading:
    """Find the map, walk it, and decode model 802 (a silent device raises from ``read``)."""
    base = await find_base(read)
    for block in await walk_models(read, base):
        if block.model_id == BATTERY_BASE:
            return decode_battery_base(address, await read_model(read, block))
    raise FrameError(f"no model {BATTERY_BASE} in the SunSpec map")


# --- Model 1 (common): who made the device -------------------------------

COMMON: Final = 1
# Mn, Md, Opt, Vr and SN; DA and a pad follow (66 registers in all), but
# devices of the first SunSpec years sent 65, so only the texts are required.
COMMON_LENGTH: Final = 64
C001: Final[Mapping[str, tuple[int, int]]] = {  # offset, registers
    "Mn": (0, 16),
    "Md": (16, 16),
    "Vr": (40, 8),
    "SN": (48, 16),
}


@dataclass(frozen=True, kw_only=True)
class CommonInfo:
    """The device's own name plate, from model 1."""

    manufacturer: str | None
    model: str | None
    version: str | None
    serial: str | None


def decode_text(registers: Sequence[int]) -> str | None:
    """Return a SunSpec string: two characters a register, high byte first, NUL padded.

    Unwritten fields hold NULs (or 0xFFFF bytes on some devices); anything
    left that is not printable ASCII makes the field unknown rather than
    a string of garbage.
    """
    raw = b"".join((value & 0xFFFF).to_bytes(2, "big") for value in registers)
    text = raw.split(b"\x00", 1)[0].strip(b"\xff ")
    if not text or any(not 0x20 <= byte <= 0x7E for byte in text):
        return None
    return text.decode("ascii")


def decode_common(registers: Sequence[int]) -> CommonInfo:
    """Decode the body of model 1."""
    _check_body(COMMON, registers, COMMON_LENGTH)

    def text(name: str) -> str | None:
        offset, size = C001[name]
        return decode_text(registers[offset : offset + size])

    return CommonInfo(
        manufacturer=text("Mn"), model=text("Md"), version=text("Vr"), serial=text("SN")
    )


# --- Models 803, 804, 805: lithium-ion bank, string, module -----------------

LITHIUM_BANK: Final = 803
LITHIUM_STRING: Final = 804
LITHIUM_MODULE: Final = 805

# Model 803 fixed block, offsets after [ID][L]; one group per string follows.
B803: Final[Mapping[str, int]] = {
    "NStr": 0,
    "NStrCon": 1,
    "ModTmpMax": 2,
    "ModTmpMin": 5,
    "ModTmpAvg": 8,  # the model gives this point no scale factor; ModTmp_SF is meant
    "StrVMax": 9,
    "StrVMin": 11,
    "StrAAvg": 18,
    "CellV_SF": 20,
    "ModTmp_SF": 21,
    "A_SF": 22,
    "SoH_SF": 23,
    "SoC_SF": 24,
    "V_SF": 25,
}
BANK_FIXED: Final = 26
# One 803 string group, offsets from the start of the group. It has no
# string voltage: that is in 804.
G803: Final[Mapping[str, int]] = {
    "StrNMod": 0,
    "StrSt": 1,  # bitfield32
    "StrSoC": 4,
    "StrSoH": 5,
    "StrA": 6,
    "StrCellVMax": 7,
    "StrCellVMin": 9,
    "StrModTmpMax": 12,
    "StrModTmpMin": 14,
    "StrEvt1": 20,  # bitfield32
    "StrSetEna": 28,  # enum16, RW
    "StrSetCon": 29,  # enum16, RW: 1 connect, 2 disconnect
}
BANK_STRING_GROUP: Final = 32

# Model 804 fixed block; one group per module follows.
B804: Final[Mapping[str, int]] = {
    "Idx": 0,
    "NMod": 1,
    "St": 2,  # bitfield32
    "NCellBal": 5,
    "SoC": 6,
    "NCyc": 8,  # uint32
    "SoH": 10,
    "A": 11,
    "V": 12,
    "CellVMax": 13,
    "CellVMin": 15,
    "ModTmpMax": 18,
    "ModTmpMin": 20,
    "Evt1": 26,  # bitfield32
    "SetEna": 34,  # enum16, RW: 1 enable, 2 disable
    "SetCon": 35,  # enum16, RW: 1 connect, 2 disconnect
    "SoC_SF": 36,
    "SoH_SF": 37,
    "A_SF": 39,
    "V_SF": 40,
    "CellV_SF": 41,
    "ModTmp_SF": 42,
}
STRING_FIXED: Final = 46
# One 804 module group. ModCellVMinCell is a cell number, although the
# model file gives it the cell-voltage scale factor and unit.
G804: Final[Mapping[str, int]] = {
    "ModNCell": 0,
    "ModSoC": 1,
    "ModSoH": 2,
    "ModCellVMax": 3,
    "ModCellVMin": 5,
    "ModCellTmpMax": 8,
    "ModCellTmpMin": 10,
    "ModCellTmpAvg": 12,
}
STRING_MODULE_GROUP: Final = 16

# Model 805 fixed block; one group per cell follows.
B805: Final[Mapping[str, int]] = {
    "StrIdx": 0,
    "ModIdx": 1,
    "NCell": 2,
    "SoC": 3,
    "SoH": 5,
    "NCyc": 6,  # uint32
    "V": 8,
    "CellVMax": 9,
    "CellVMin": 11,
    "NCellBal": 19,
    "SN": 20,  # 16 registers of text
    "SoC_SF": 36,
    "SoH_SF": 37,
    "V_SF": 39,
    "CellV_SF": 40,
    "Tmp_SF": 41,
}
MODULE_FIXED: Final = 42
SERIAL_REGISTERS: Final = 16
# One 805 cell group: voltage, temperature, status (bit 0: balancing).
G805: Final[Mapping[str, int]] = {"CellV": 0, "CellTmp": 1, "CellSt": 2}
MODULE_CELL_GROUP: Final = 4

# The values 802 SetOp, 803 StrSetCon and 804 SetCon take.
CONNECT: Final = 1
DISCONNECT: Final = 2

# String status (803 StrSt, 804 St): enabled, and every contactor closed.
STRING_ENABLED_BIT: Final = 0
CONTACTOR_CLOSED_BIT: Final = 1
CELL_BALANCING_BIT: Final = 0


@dataclass(frozen=True, kw_only=True)
class LithiumString:
    """A string as model 804 (or a group of 803) reports it.

    ``reading`` is the string as one pack; ``modules`` holds a summary
    reading per module group of 804, addressed by module index 1..N.
    """

    index: int | None
    reading: PackReading
    modules: tuple[PackReading, ...] = ()
    module_cells: tuple[int | None, ...] = ()  # cells in each module, as 804 counts them


@dataclass(frozen=True, kw_only=True)
class LithiumModule:
    """A module as model 805 reports it.

    A module has no current or contactor of its own: it carries its
    string's current and is connected when its string is.
    """

    string_index: int | None
    module_index: int | None
    serial: str | None
    cell_count: int | None
    reading: PackReading


def _check_body(model_id: int, registers: Sequence[int], length: int) -> None:
    if len(registers) < length:
        raise FrameError(f"model {model_id}: {len(registers)} registers, expected {length}")
    if any(not 0 <= value <= 0xFFFF for value in registers):
        raise FrameError(f"model {model_id}: a value is not a 16-bit register")


def _count(value: int) -> int | None:
    """Return a uint16 count, None when unimplemented."""
    return None if value == UINT16_UNSET else value


def _percent(value: float | None) -> float | None:
    return value if value is not None and 0 <= value <= 100 else None


def _flags(events: int | None, names: Mapping[int, str]) -> frozenset[str]:
    # An unimplemented bitfield32 is all ones: no events known.
    if events is None:
        return frozenset()
    return frozenset(name for bit, name in names.items() if events >> bit & 1)


def _contactor_closed(status: int | None) -> bool | None:
    if status is None:
        return None
    return bool(status >> STRING_ENABLED_BIT & 1 and status >> CONTACTOR_CLOSED_BIT & 1)


def _known(*values: float | None) -> tuple[float, ...]:
    return tuple(value for value in values if value is not None)


def _groups(
    model_id: int, registers: Sequence[int], fixed: int, size: int, count: int | None
) -> int:
    """Return how many repeating groups follow the fixed block.

    The count point says how many there are; the model length must have
    room for them. A device that leaves the count unimplemented gets as
    many groups as the length holds.
    """
    room = (len(registers) - fixed) // size
    if count is None:
        return room
    if count > room:
        raise FrameError(
            f"model {model_id}: {count} groups of {size} do not fit in {len(registers)} registers"
        )
    return count


def decode_lithium_bank(registers: Sequence[int]) -> tuple[LithiumString, ...]:
    """Decode the body of model 803 into its strings, addressed 1..NStr in group order."""
    _check_body(LITHIUM_BANK, registers, BANK_FIXED)
    strings = _groups(
        LITHIUM_BANK, registers, BANK_FIXED, BANK_STRING_GROUP, _count(registers[B803["NStr"]])
    )

    def sf(name: str) -> int | None:
        return scale_factor(registers[B803[name]])

    a_sf, cell_sf, tmp_sf = sf("A_SF"), sf("CellV_SF"), sf("ModTmp_SF")
    soc_sf, soh_sf = sf("SoC_SF"), sf("SoH_SF")
    found: list[LithiumString] = []
    for number in range(1, strings + 1):
        start = BANK_FIXED + (number - 1) * BANK_STRING_GROUP
        group = registers[start : start + BANK_STRING_GROUP]

        def point(name: str, group: Sequence[int] = group) -> int:
            return group[G803[name]]

        status = uint32(point("StrSt"), group[G803["StrSt"] + 1])
        events = uint32(point("StrEvt1"), group[G803["StrEvt1"] + 1])
        closed = _contactor_closed(status)
        reading = PackReading(
            address=number,
            current=charge_positive(int16(point("StrA"), a_sf)),
            soc=_percent(uint16(point("StrSoC"), soc_sf)),
            soh=_percent(uint16(point("StrSoH"), soh_sf)),
            cell_voltages=_known(
                uint16(point("StrCellVMin"), cell_sf), uint16(point("StrCellVMax"), cell_sf)
            ),
            temperatures=_known(
                int16(point("StrModTmpMin"), tmp_sf), int16(point("StrModTmpMax"), tmp_sf)
            ),
            charge_enabled=closed,
            discharge_enabled=closed,
            warnings=_flags(events, EVT1_WARNINGS),
            protections=_flags(events, EVT1_PROTECTIONS),
        )
        found.append(LithiumString(index=number, reading=reading))
    return tuple(found)


def decode_lithium_string(registers: Sequence[int]) -> LithiumString:
    """Decode the body of model 804: the string, and a summary of each module."""
    _check_body(LITHIUM_STRING, registers, STRING_FIXED)

    def point(name: str) -> int:
        return registers[B804[name]]

    def sf(name: str) -> int | None:
        return scale_factor(point(name))

    modules = _groups(
        LITHIUM_STRING, registers, STRING_FIXED, STRING_MODULE_GROUP, _count(point("NMod"))
    )
    index = _count(point("Idx"))
    status = uint32(point("St"), registers[B804["St"] + 1])
    events = uint32(point("Evt1"), registers[B804["Evt1"] + 1])
    closed = _contactor_closed(status)
    cell_sf, tmp_sf = sf("CellV_SF"), sf("ModTmp_SF")
    soc_sf, soh_sf = sf("SoC_SF"), sf("SoH_SF")
    balancing = _count(point("NCellBal"))
    reading = PackReading(
        address=index or 0,
        voltage=uint16(point("V"), sf("V_SF")),
        current=charge_positive(int16(point("A"), sf("A_SF"))),
        soc=_percent(uint16(point("SoC"), soc_sf)),
        soh=_percent(uint16(point("SoH"), soh_sf)),
        cycles=uint32(point("NCyc"), registers[B804["NCyc"] + 1]),
        cell_voltages=_known(
            uint16(point("CellVMin"), cell_sf), uint16(point("CellVMax"), cell_sf)
        ),
        temperatures=_known(int16(point("ModTmpMin"), tmp_sf), int16(point("ModTmpMax"), tmp_sf)),
        charge_enabled=closed,
        discharge_enabled=closed,
        balancing=None if balancing is None else balancing > 0,
        warnings=_flags(events, EVT1_WARNINGS),
        protections=_flags(events, EVT1_PROTECTIONS),
    )
    summaries: list[PackReading] = []
    for number in range(1, modules + 1):
        start = STRING_FIXED + (number - 1) * STRING_MODULE_GROUP
        group = registers[start : start + STRING_MODULE_GROUP]

        def mod(name: str, group: Sequence[int] = group) -> int:
            return group[G804[name]]

        summaries.append(
            PackReading(
                address=number,
                soc=_percent(uint16(mod("ModSoC"), soc_sf)),
                soh=_percent(uint16(mod("ModSoH"), soh_sf)),
                cell_voltages=_known(
                    uint16(mod("ModCellVMin"), cell_sf), uint16(mod("ModCellVMax"), cell_sf)
                ),
                temperatures=_known(
                    int16(mod("ModCellTmpMin"), tmp_sf), int16(mod("ModCellTmpMax"), tmp_sf)
                ),
            )
        )
    cell_counts = tuple(
        _count(registers[STRING_FIXED + number * STRING_MODULE_GROUP + G804["ModNCell"]])
        for number in range(modules)
    )
    return LithiumString(
        index=index, reading=reading, modules=tuple(summaries), module_cells=cell_counts
    )


def decode_lithium_module(address: int, registers: Sequence[int]) -> LithiumModule:
    """Decode the body of model 805: the module and each of its cells."""
    _check_body(LITHIUM_MODULE, registers, MODULE_FIXED)

    def point(name: str) -> int:
        return registers[B805[name]]

    def sf(name: str) -> int | None:
        return scale_factor(point(name))

    cell_count = _count(point("NCell"))
    cells = _groups(LITHIUM_MODULE, registers, MODULE_FIXED, MODULE_CELL_GROUP, cell_count)
    cell_sf, tmp_sf = sf("CellV_SF"), sf("Tmp_SF")
    voltages: list[float | None] = []
    temperatures: list[float | None] = []
    cell_balancing = False
    for number in range(cells):
        start = MODULE_FIXED + number * MODULE_CELL_GROUP
        group = registers[start : start + MODULE_CELL_GROUP]
        voltages.append(uint16(group[G805["CellV"]], cell_sf))
        temperatures.append(int16(group[G805["CellTmp"]], tmp_sf))
        status = uint32(group[G805["CellSt"]], group[G805["CellSt"] + 1])
        cell_balancing |= status is not None and bool(status >> CELL_BALANCING_BIT & 1)
    if not cells:
        # No cell groups: the lowest and highest cell stand in, as in 802.
        voltages = list(
            _known(uint16(point("CellVMin"), cell_sf), uint16(point("CellVMax"), cell_sf))
        )
    # Balancing shows in each cell's status and in the module's count.
    balancing_count = _count(point("NCellBal"))
    balancing: bool | None = None
    if cells or balancing_count is not None:
        balancing = cell_balancing or bool(balancing_count)
    serial_at = B805["SN"]
    reading = PackReading(
        address=address,
        voltage=uint16(point("V"), sf("V_SF")),
        soc=_percent(uint16(point("SoC"), sf("SoC_SF"))),
        soh=_percent(uint16(point("SoH"), sf("SoH_SF"))),
        cycles=uint32(point("NCyc"), registers[B805["NCyc"] + 1]),
        cell_voltages=tuple(voltages),
        temperatures=tuple(temperatures),
        balancing=balancing,
    )
    return LithiumModule(
        string_index=_count(point("StrIdx")),
        module_index=_count(point("ModIdx")),
        serial=decode_text(registers[serial_at : serial_at + SERIAL_REGISTERS]),
        cell_count=cell_count,
        reading=reading,
    )


def _has_measurements(reading: PackReading) -> bool:
    """Return whether a block holds anything measured.

    A battery controller that has lost a module (or the modules of a
    string) keeps the block in its map and fills it with "unimplemented";
    that module is off the bus, not a module at rest.
    """
    return (
        reading.voltage is not None
        or reading.soc is not None
        or any(value is not None for value in reading.cell_voltages)
    )


# --- The driver --------------------------------------------------------------

FAMILY: Final = "sunspec"
DEFAULT_UNIT: Final = 1
# How long a failed search for the map stands, in seconds. A scan asks every
# address in quick succession, and a bus with no SunSpec device would
# otherwise be searched again for each; a poll a few seconds later
# searches afresh, so a device that has just booted is still found.
NO_MAP_HOLD: Final = 5.0


@dataclass(frozen=True, kw_only=True)
class _Layout:
    """Where a device keeps what the driver reads, learnt once from its map."""

    common: ModelBlock | None
    battery: ModelBlock | None  # 802
    bank: ModelBlock | None  # 803
    strings: Mapping[int, ModelBlock]  # 804 by string index
    modules: Mapping[int, ModelBlock]  # 805 by pack address (1.. in map order)

    @property
    def packs(self) -> tuple[int, ...]:
        """Return the pack addresses: modules, else strings, else the whole battery."""
        if self.modules:
            return tuple(self.modules)
        if self.strings:
            return tuple(self.strings)
        return ()


class SunSpecDriver(LinkedDriver[ModbusTransport]):
    """Reads a SunSpec storage device, one Modbus unit, through any Modbus transport.

    A pack is a module of model 805 (address 1..N in the order of the map)
    where the device lists modules; otherwise a string of model 804
    (address = its string index); otherwise a string group of 803; and a
    device with model 802 alone is one pack at address 1. The map is walked
    once and kept: it does not move while the device runs, and walking it
    costs one request per model. A block that no longer holds the model it
    held sends the next read back to walking the map.

    Within one poll each block is read once, whatever number of packs it
    serves: the bank model 803 holds every string, and a string's block
    serves each of its modules. A module's string (its current, contactor
    and events) comes from 803 where the device has it, one read for every
    string, rather than from each string's own 804.
    """

    family: ClassVar[str] = FAMILY
    # Module (or string) numbers a scan asks about; a device's own list comes
    # from its map (``pack_addresses``), and 32 covers any rack bank.
    addresses: ClassVar[range] = range(1, 33)

    def __init__(self, transport: ModbusTransport, *, unit: int = DEFAULT_UNIT) -> None:
        """Use a transport (which may be shared) and the device's Modbus unit id."""
        super().__init__(transport)
        self.unit = unit
        self._layout: _Layout | None = None
        self._no_map: tuple[float, FrameError | PackNotResponding] | None = None
        # The bodies read in the poll under way, by block address.
        self._bodies: dict[int, list[int]] | None = None

    @classmethod
    def over_tcp(
        cls, host: str, port: int = 502, *, unit: int = DEFAULT_UNIT, timeout: float = 1.0
    ) -> Self:
        """Return a driver with a Modbus TCP connection of its own."""
        return cls(ModbusTcpTransport(host, port, timeout=timeout), unit=unit)

    async def close(self) -> None:
        """Close the connection and forget the map (the device may change before next time)."""
        self._layout = self._no_map = None
        await super().close()

    async def _read(self, address: int, count: int) -> list[int]:
        return await self.transport.read_holding_registers(self.unit, address, count)

    async def layout(self) -> _Layout:
        """Return where the models are, walking the map the first time."""
        if self._layout is not None:
            return self._layout
        now = asyncio.get_running_loop().time()
        if self._no_map is not None and now < self._no_map[0]:
            failure = self._no_map[1]
            kind = PackNotResponding if isinstance(failure, PackNotResponding) else FrameError
            raise kind(str(failure))
        try:
            self._layout = await self._discover()
        except (FrameError, PackNotResponding) as err:
            self._no_map = (now + NO_MAP_HOLD, err)
            raise
        self._no_map = None
        return self._layout

    async def _discover(self) -> _Layout:
        base = await find_base(self._read)
        models = await walk_models(self._read, base)

        def first(model_id: int) -> ModelBlock | None:
            return next((block for block in models if block.model_id == model_id), None)

        strings: dict[int, ModelBlock] = {}
        for ordinal, block in enumerate(
            (block for block in models if block.model_id == LITHIUM_STRING), start=1
        ):
            # The string index is the block's first point; a device that
            # leaves it unimplemented has its strings in map order.
            index = _count((await self._read(block.address, 1))[0]) if block.length else None
            strings[index or ordinal] = block
        modules = {
            number: block
            for number, block in enumerate(
                (block for block in models if block.model_id == LITHIUM_MODULE), start=1
            )
        }
        return _Layout(
            common=first(COMMON),
            battery=first(BATTERY_BASE),
            bank=first(LITHIUM_BANK),
            strings=strings,
            modules=modules,
        )

    async def poll(self, addresses: Iterable[int]) -> PollReport:
        """Read every pack, each block of the map at most once."""
        self._bodies = {}
        try:
            return await super().poll(addresses)
        finally:
            self._bodies = None

    async def _body(self, block: ModelBlock) -> list[int]:
        """Read a model with its header, and check the header still names it.

        In a poll, a block read already is not asked again.
        """
        if self._bodies is not None and (body := self._bodies.get(block.address)) is not None:
            return body
        body = await self._read_body(block)
        if self._bodies is not None:
            self._bodies[block.address] = body
        return body

    async def _read_body(self, block: ModelBlock) -> list[int]:
        whole = await read_model(
            self._read,
            ModelBlock(
                model_id=block.model_id,
                address=block.address - HEADER,
                length=block.length + HEADER,
            ),
        )
        if whole[:HEADER] != [block.model_id, block.length]:
            self._layout = None
            raise FrameError(
                f"model {block.model_id} is no longer at {block.address - HEADER}: the map changed"
            )
        return whole[HEADER:]

    async def pack_addresses(self) -> tuple[int, ...]:
        """Return the addresses of the packs the device lists."""
        layout = await self.layout()
        if layout.packs:
            return layout.packs
        if layout.bank is not None:
            return tuple(s.index or 0 for s in decode_lithium_bank(await self._body(layout.bank)))
        if layout.battery is not None:
            return (1,)
        raise FrameError("the SunSpec map has no battery model (802 to 805)")

    async def scan_addresses(self) -> Sequence[int]:
        """Return the packs the device lists: its map says which exist; none without a map.

        Asking the 32 allowed addresses one by one would read the map 32
        times to learn what one reading of it says.
        """
        try:
            return await self.pack_addresses()
        except (FrameError, PackNotResponding):
            return ()

    async def scan(self, addresses: Iterable[int] | None = None) -> list[PackIdentity]:
        """Find the packs the device lists, of ``addresses`` where given."""
        listed = await self.scan_addresses()
        wanted = listed if addresses is None else [a for a in addresses if a in listed]
        return await super().scan(wanted)

    async def read_pack(self, address: int) -> PackReading:
        """Read one module (or string) of the device."""
        layout = await self.layout()
        if layout.modules:
            return (await self._module(layout, address)).reading
        if layout.strings:
            return await self._string_reading(layout, address)
        if layout.bank is not None:
            return self._pick(await self._bank_strings(layout), address).reading
        if layout.battery is not None and address == 1:
            reading = decode_battery_base(address, await self._body(layout.battery))
            if not _has_measurements(reading):
                raise PackNotResponding("the battery reports no measurements")
            return reading
        raise PackNotResponding(f"pack {address} is not in the SunSpec map")

    async def read_identity(self, address: int) -> PackIdentity:
        """Return the device's name plate, with the module's own serial where 805 has one.

        A module or string without a serial of its own is named by its slot,
        not by the device's serial, which every pack of the device shares.
        """
        layout = await self.layout()
        serial: str | None = None
        cells: int | None = None
        design: float | None = None
        # The pack first: an address the map does not list fails without
        # further requests, which keeps a scan of every address short.
        if layout.modules:
            module = await self._module(layout, address)
            serial, cells = module.serial, module.cell_count
        elif layout.strings:
            block = self._pick_block(layout.strings, address)
            string = decode_lithium_string(await self._body(block))
            if not _has_measurements(string.reading):
                raise PackNotResponding(f"string {address} reports no measurements")
            known = [count for count in string.module_cells if count is not None]
            cells = sum(known) or None
        else:
            reading = await self.read_pack(address)
            design = reading.design_capacity
        common = (
            decode_common(await self._body(layout.common)) if layout.common is not None else None
        )
        return PackIdentity(
            address=address,
            family=FAMILY,
            manufacturer=common.manufacturer if common else None,
            model=common.model if common else None,
            serial=serial,
            firmware=common.version if common else None,
            cell_count=cells,
            design_capacity=design,
        )

    async def _module(self, layout: _Layout, address: int) -> LithiumModule:
        block = self._pick_block(layout.modules, address)
        module = decode_lithium_module(address, await self._body(block))
        if not _has_measurements(module.reading):
            raise PackNotResponding(f"module {address} reports no measurements: the device lost it")
        string = await self._string_of(layout, module.string_index)
        if string is None:
            return module
        # Modules of a string are in series: each carries the string's
        # current, and is on the bus when the string's contactor is closed.
        # The string's alarms are the module's too.
        merged = replace(
            module.reading,
            current=string.current,
            charge_enabled=string.charge_enabled,
            discharge_enabled=string.discharge_enabled,
            warnings=string.warnings,
            protections=string.protections,
        )
        return replace(module, reading=merged)

    async def _string_of(self, layout: _Layout, index: int | None) -> PackReading | None:
        """Return a module's string: from 803 (one read for all) where it says, else 804."""
        if index is None:
            return None
        if layout.bank is not None:
            for string in await self._bank_strings(layout):
                if string.index == index and string.reading.current is not None:
                    return string.reading
        if index in layout.strings:
            return decode_lithium_string(await self._body(layout.strings[index])).reading
        return None

    async def _string_reading(self, layout: _Layout, address: int) -> PackReading:
        block = self._pick_block(layout.strings, address)
        reading = replace(decode_lithium_string(await self._body(block)).reading, address=address)
        if not _has_measurements(reading):
            raise PackNotResponding(f"string {address} reports no measurements: the device lost it")
        return reading

    async def _bank_strings(self, layout: _Layout) -> tuple[LithiumString, ...]:
        assert layout.bank is not None
        return decode_lithium_bank(await self._body(layout.bank))

    @staticmethod
    def _pick(strings: Sequence[LithiumString], address: int) -> LithiumString:
        for string in strings:
            if string.index == address:
                if string.reading.soc is None and not string.reading.cell_voltages:
                    raise PackNotResponding(f"string {address} reports no measurements")
                return string
        raise PackNotResponding(f"string {address} is not in the SunSpec map")

    @staticmethod
    def _pick_block(blocks: Mapping[int, ModelBlock], address: int) -> ModelBlock:
        try:
            return blocks[address]
        except KeyError:
            raise PackNotResponding(f"pack {address} is not in the SunSpec map") from None

    async def set_paths(
        self, address: int, *, charge: bool | None = None, discharge: bool | None = None
    ) -> None:
        """Connect or disconnect a string (804 SetCon, 803 StrSetCon) or the battery (802 SetOp).

        A contactor carries both ways at once, so both paths are asked
        together. A point the device leaves unimplemented (0xFFFF) is not
        writable, and a module of 805 cannot be switched apart from its
        string.
        """
        if charge is None and discharge is None:
            return
        if charge is None or discharge is None or charge != discharge:
            raise ControlNotSupported(
                "a SunSpec string has one contactor: charge and discharge switch together"
            )
        value = CONNECT if charge else DISCONNECT
        layout = await self.layout()
        string_index = address
        if layout.modules:
            # A module is switched by its string's contactor: only where it
            # is the string's one module does that leave the others be.
            module = decode_lithium_module(
                address, await self._body(self._pick_block(layout.modules, address))
            )
            block = layout.strings.get(module.string_index or 0)
            if block is None or (await self._body(block))[B804["NMod"]] != 1:
                raise ControlNotSupported(
                    f"module {address} shares its string's contactor with other modules"
                )
            string_index = module.string_index or 0
        if layout.strings:
            block = self._pick_block(layout.strings, string_index)
            register = block.address + B804["SetCon"]
        elif layout.bank is not None:
            strings = await self._bank_strings(layout)
            position = next(
                (n for n, string in enumerate(strings) if string.index == address), None
            )
            if position is None:
                raise PackNotResponding(f"string {address} is not in the SunSpec map")
            register = (
                layout.bank.address + BANK_FIXED + position * BANK_STRING_GROUP + G803["StrSetCon"]
            )
        elif layout.battery is not None and address == 1:
            register = layout.battery.address + B802["SetOp"]
        else:
            raise PackNotResponding(f"pack {address} is not in the SunSpec map")
        (current,) = await self._read(register, 1)
        if current == UINT16_UNSET:
            raise ControlNotSupported(
                f"the device does not implement the connect point at {register}"
            )
        try:
            await self.transport.write_registers(self.unit, register, [value])
        except ModbusExceptionError as err:
            raise WriteRefused(f"the device refused register {register}: {err}") from err
