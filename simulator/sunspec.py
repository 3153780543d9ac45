"""Serve a simulated bank as a SunSpec storage device over Modbus TCP.

A battery controller that speaks SunSpec is one Modbus unit with one map:
the "SunS" marker at 40000, then model 1 (its name plate), 802 (the
battery as a whole), 803 (the bank, one group per string), one 804 per
string and one 805 per module, and the end marker. Packs wired in parallel
are strings to SunSpec, so each simulated pack is a string of one module:
string i holds module 1, which is pack i of the bank.

Every request is answered from the bank as it is at that moment: the whole
map is encoded when a request arrives, so a test that steps the bank sees
the new values on its next read without any background task.

A pack taken off the bus is what a controller does with a module it lost:
the blocks stay in the map (a map does not shrink while the device runs),
their measurements read "unimplemented", and the string raises its
communication-error event. Unit numbers other than the device's get the
gateway's exception 0x0B, as from a Modbus TCP gateway with nothing behind
that number.

Point offsets come from the driver's tables, which restate SunSpec's
published model files; the values are encoded here, on their own, with
the scale factors this device declares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from custom_components.rack_battery.protocol.drivers.sunspec import (
    B802,
    B803,
    B804,
    B805,
    BANK_FIXED,
    BANK_STRING_GROUP,
    BATTERY_BASE_LENGTH,
    C001,
    G803,
    G804,
    G805,
    MODULE_CELL_GROUP,
    MODULE_FIXED,
    STRING_FIXED,
    STRING_MODULE_GROUP,
)

from .bank import SimBank, SimPack
from .modbus_server import Action, ExcCodes, ModbusServing, SimDevice, listen, nobody_there

BASE: Final = 40000
MARKER: Final = (0x5375, 0x6E53)  # "SunS"
COMMON_LENGTH: Final = 66
READ_HOLDING: Final = 0x03
MAX_READ: Final = 125
ADDRESS_SPACE: Final = 0x10000
UNSET: Final = 0xFFFF
SIGNED_UNSET: Final = 0x8000

# The scale factors this device declares (exponents of ten).
V_SF: Final = -2  # 10 mV
A_SF: Final = -2  # 10 mA
CELL_SF: Final = -3  # 1 mV
TEMPERATURE_SF: Final = -1  # 0.1 degC
PERCENT_SF: Final = -1  # 0.1 %
CAPACITY_SF: Final = 0  # 1 Ah
LIMIT_SF: Final = 0  # 1 A

# 802 State: the bank's contactors are closed.
STATE_CONNECTED: Final = 3
STATE_DISCONNECTED: Final = 1
# 803 StrSt / 804 St: bit 0 string enabled, bit 1 its contactor closed.
ENABLED_AND_CLOSED: Final = 0b11
ENABLED_ONLY: Final = 0b01
# Evt1 bit 0: the controller lost a module.
COMMUNICATION_ERROR: Final = 1 << 0


# Where each model (and each repeating group) has signed points: int16
# measurements and the sunssf scale factors, offsets from the model's
# SunSpec definition. A signed point the device does not set reads 0x8000,
# an unsigned one 0xFFFF.
SIGNED_802: Final = frozenset({42, 45, 47, *range(50, 62)})  # A, W, ReqW, the scale factors
SIGNED_803: Final = frozenset({2, 5, 8, 14, 16, 18, *range(20, 26)})  # ModTmp*, StrA*, SFs
SIGNED_803_GROUP: Final = frozenset({6, 12, 14, 16})  # StrA, StrModTmpMax/Min/Avg
SIGNED_804: Final = frozenset({11, 18, 20, 22, *range(36, 43)})  # A, ModTmp*, SFs
SIGNED_804_GROUP: Final = frozenset({8, 10, 12})  # ModCellTmpMax/Min/Avg
SIGNED_805: Final = frozenset({14, 16, 18, *range(36, 42)})  # CellTmpMax/Min/Avg, SFs
SIGNED_805_GROUP: Final = frozenset({1})  # CellTmp


def _blank(length: int, signed: frozenset[int]) -> list[int]:
    """Return a body of points the device does not set: 0x8000 where signed, else 0xFFFF."""
    return [SIGNED_UNSET if offset in signed else UNSET for offset in range(length)]


def _unsigned(value: float, exponent: int) -> int:
    # 0xFFFF means "unimplemented"; a real value stops short of it.
    return min(max(round(value / 10.0**exponent), 0), 0xFFFE)


def _signed(value: float, exponent: int) -> int:
    # 0x8000 means "unimplemented"; a real value stops short of it.
    return min(max(round(value / 10.0**exponent), -0x7FFF), 0x7FFF) & 0xFFFF


def _exponent(value: int) -> int:
    return value & 0xFFFF


def _text(value: str, registers: int) -> list[int]:
    """Encode text as SunSpec holds it: two characters a register, NUL padded."""
    raw = value.encode("ascii", errors="replace")[: 2 * registers].ljust(2 * registers, b"\0")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def _u32(value: int) -> tuple[int, int]:
    value = min(max(value, 0), 0xFFFF_FFFE)
    return value >> 16, value & 0xFFFF


def _discharge_positive(pack_current: float) -> float:
    # A SunSpec device counts current leaving the battery as positive; the
    # simulated pack counts charging as positive.
    return -pack_current


def _put(body: list[int], table: Mapping[str, int], values: Mapping[str, int]) -> None:
    for name, value in values.items():
        body[table[name]] = value


def _put32(body: list[int], offset: int, value: int) -> None:
    body[offset], body[offset + 1] = _u32(value)


def encode_common(bank: SimBank) -> list[int]:
    """Model 1: the controller's name plate, from the first pack."""
    first = bank.packs[0]
    body = [0] * COMMON_LENGTH
    for name, text in (
        ("Mn", first.manufacturer),
        ("Md", first.model),
        ("Vr", first.firmware),
        ("SN", f"{first.serial}-BMS"),
    ):
        offset, size = C001[name]
        body[offset : offset + size] = _text(text, size)
    body[64] = 1  # DA: the device's Modbus address
    return body


def encode_battery_base(bank: SimBank) -> list[int]:
    """Model 802: the bank as one battery."""
    body = _blank(BATTERY_BASE_LENGTH, SIGNED_802)
    packs = [pack for pack in bank.packs if pack.online]
    capacity = sum(pack.full_capacity for pack in packs)
    soc = sum(pack.soc * pack.full_capacity for pack in packs) / capacity if capacity else 0.0
    cells = [cell for pack in packs for cell in pack.cell_voltages]
    connected = any(pack.charge_on and pack.discharge_on for pack in bank.packs)
    values = {
        "AHRtg": _unsigned(sum(pack.design_capacity for pack in bank.packs), CAPACITY_SF),
        "SoC": _unsigned(100.0 * soc, PERCENT_SF),
        "SoH": _unsigned(sum(p.soh for p in packs) / len(packs) if packs else 0.0, PERCENT_SF),
        "ChaSt": UNSET,
        "State": STATE_CONNECTED if connected else STATE_DISCONNECTED,
        "V": _unsigned(bank.bus_voltage, V_SF),
        "A": _signed(_discharge_positive(sum(p.current for p in bank.packs)), A_SF),
        "AChaMax": _unsigned(sum(0.5 * p.design_capacity for p in packs), LIMIT_SF),
        "ADisChaMax": _unsigned(sum(1.0 * p.design_capacity for p in packs), LIMIT_SF),
        "AHRtg_SF": _exponent(CAPACITY_SF),
        "SoC_SF": _exponent(PERCENT_SF),
        "SoH_SF": _exponent(PERCENT_SF),
        "V_SF": _exponent(V_SF),
        "CellV_SF": _exponent(CELL_SF),
        "A_SF": _exponent(A_SF),
        "AMax_SF": _exponent(LIMIT_SF),
    }
    if cells:
        values["CellVMax"] = _unsigned(max(cells), CELL_SF)
        values["CellVMin"] = _unsigned(min(cells), CELL_SF)
    _put(body, B802, values)
    body[B802["SetOp"]] = 0  # implemented; reads 0 once a command is done
    _put32(body, B802["NCyc"], max((p.cycles for p in packs), default=0))
    _put32(body, B802["Evt1"], 0 if len(packs) == len(bank.packs) else COMMUNICATION_ERROR)
    return body


def _status(pack: SimPack) -> int:
    # The contactor is closed while current may flow either way.
    return ENABLED_AND_CLOSED if pack.charge_on and pack.discharge_on else ENABLED_ONLY


def _events(pack: SimPack) -> int:
    return 0 if pack.online else COMMUNICATION_ERROR


def encode_lithium_bank(bank: SimBank) -> list[int]:
    """Model 803: the bank, and one group per string (one pack each)."""
    packs = bank.packs
    body = _blank(BANK_FIXED, SIGNED_803) + [UNSET] * (BANK_STRING_GROUP * len(packs))
    online = [pack for pack in packs if pack.online]
    temperatures = [t for pack in online for t in pack.cell_temperatures]
    voltages = [pack.voltage for pack in online]
    currents = [_discharge_positive(pack.current) for pack in packs]
    values = {
        "NStr": len(packs),
        "NStrCon": sum(pack.charge_on and pack.discharge_on for pack in packs),
        "StrAAvg": _signed(sum(currents) / len(currents), A_SF),
        "CellV_SF": _exponent(CELL_SF),
        "ModTmp_SF": _exponent(TEMPERATURE_SF),
        "A_SF": _exponent(A_SF),
        "SoH_SF": _exponent(PERCENT_SF),
        "SoC_SF": _exponent(PERCENT_SF),
        "V_SF": _exponent(V_SF),
    }
    if temperatures:
        values["ModTmpMax"] = _signed(max(temperatures), TEMPERATURE_SF)
        values["ModTmpMin"] = _signed(min(temperatures), TEMPERATURE_SF)
        values["ModTmpAvg"] = _signed(sum(temperatures) / len(temperatures), TEMPERATURE_SF)
    if voltages:
        values["StrVMax"] = _unsigned(max(voltages), V_SF)
        values["StrVMin"] = _unsigned(min(voltages), V_SF)
    _put(body, B803, values)
    for index, pack in enumerate(packs):
        start = BANK_FIXED + index * BANK_STRING_GROUP
        group = _blank(BANK_STRING_GROUP, SIGNED_803_GROUP)
        group[G803["StrNMod"]] = 1
        group[G803["StrSetEna"]] = group[G803["StrSetCon"]] = 0
        _put32(group, G803["StrSt"], _status(pack))
        _put32(group, G803["StrEvt1"], _events(pack))
        # The string's own current sensor keeps measuring a lost module.
        group[G803["StrA"]] = _signed(_discharge_positive(pack.current), A_SF)
        if pack.online:
            _put(
                group,
                G803,
                {
                    "StrSoC": _unsigned(100.0 * pack.soc, PERCENT_SF),
                    "StrSoH": _unsigned(pack.soh, PERCENT_SF),
                    "StrCellVMax": _unsigned(max(pack.cell_voltages), CELL_SF),
                    "StrCellVMin": _unsigned(min(pack.cell_voltages), CELL_SF),
                    "StrModTmpMax": _signed(max(pack.cell_temperatures), TEMPERATURE_SF),
                    "StrModTmpMin": _signed(min(pack.cell_temperatures), TEMPERATURE_SF),
                },
            )
        body[start : start + BANK_STRING_GROUP] = group
    return body


def encode_lithium_string(index: int, pack: SimPack) -> list[int]:
    """Model 804: string ``index`` (1-based), holding one module: ``pack``."""
    body = _blank(STRING_FIXED, SIGNED_804) + [UNSET] * STRING_MODULE_GROUP
    values = {
        "Idx": index,
        "NMod": 1,
        "A": _signed(_discharge_positive(pack.current), A_SF),
        "SoC_SF": _exponent(PERCENT_SF),
        "SoH_SF": _exponent(PERCENT_SF),
        "A_SF": _exponent(A_SF),
        "V_SF": _exponent(V_SF),
        "CellV_SF": _exponent(CELL_SF),
        "ModTmp_SF": _exponent(TEMPERATURE_SF),
    }
    body[B804["SetEna"]] = body[B804["SetCon"]] = 0
    _put32(body, B804["St"], _status(pack))
    _put32(body, B804["Evt1"], _events(pack))
    group = _blank(STRING_MODULE_GROUP, SIGNED_804_GROUP)
    group[G804["ModNCell"]] = len(pack.cell_voltages)
    if pack.online:
        values |= {
            "NCellBal": 0,
            "SoC": _unsigned(100.0 * pack.soc, PERCENT_SF),
            "SoH": _unsigned(pack.soh, PERCENT_SF),
            "V": _unsigned(pack.voltage, V_SF),
            "CellVMax": _unsigned(max(pack.cell_voltages), CELL_SF),
            "CellVMin": _unsigned(min(pack.cell_voltages), CELL_SF),
            "ModTmpMax": _signed(max(pack.cell_temperatures), TEMPERATURE_SF),
            "ModTmpMin": _signed(min(pack.cell_temperatures), TEMPERATURE_SF),
        }
        _put32(body, B804["NCyc"], pack.cycles)
        _put(
            group,
            G804,
            {
                "ModSoC": _unsigned(100.0 * pack.soc, PERCENT_SF),
                "ModSoH": _unsigned(pack.soh, PERCENT_SF),
                "ModCellVMax": _unsigned(max(pack.cell_voltages), CELL_SF),
                "ModCellVMin": _unsigned(min(pack.cell_voltages), CELL_SF),
                "ModCellTmpMax": _signed(max(pack.cell_temperatures), TEMPERATURE_SF),
                "ModCellTmpMin": _signed(min(pack.cell_temperatures), TEMPERATURE_SF),
                "ModCellTmpAvg": _signed(
                    sum(pack.cell_temperatures) / len(pack.cell_temperatures), TEMPERATURE_SF
                ),
            },
        )
    _put(body, B804, values)
    body[STRING_FIXED:] = group
    return body


def cell_temperature(pack: SimPack, cell: int) -> float:
    """Return the temperature of one cell: the reading of the sensor of its group of four."""
    sensors = pack.cell_temperatures
    return sensors[min(cell * len(sensors) // len(pack.cell_voltages), len(sensors) - 1)]


def encode_lithium_module(string_index: int, pack: SimPack) -> list[int]:
    """Model 805: module 1 of string ``string_index``, which is ``pack``, cell by cell."""
    cells = pack.cell_voltages
    body = _blank(MODULE_FIXED, SIGNED_805) + [*_blank(MODULE_CELL_GROUP, SIGNED_805_GROUP)] * len(
        cells
    )
    values = {
        "StrIdx": string_index,
        "ModIdx": 1,
        "NCell": len(cells),
        "SoC_SF": _exponent(PERCENT_SF),
        "SoH_SF": _exponent(PERCENT_SF),
        "V_SF": _exponent(V_SF),
        "CellV_SF": _exponent(CELL_SF),
        "Tmp_SF": _exponent(TEMPERATURE_SF),
    }
    serial_at = B805["SN"]
    body[serial_at : serial_at + 16] = _text(pack.serial, 16)
    if pack.online:
        values |= {
            "SoC": _unsigned(100.0 * pack.soc, PERCENT_SF),
            "SoH": _unsigned(pack.soh, PERCENT_SF),
            "V": _unsigned(pack.voltage, V_SF),
            "CellVMax": _unsigned(max(cells), CELL_SF),
            "CellVMin": _unsigned(min(cells), CELL_SF),
            "NCellBal": 0,
        }
        _put32(body, B805["NCyc"], pack.cycles)
        for cell, volts in enumerate(cells):
            start = MODULE_FIXED + cell * MODULE_CELL_GROUP
            body[start + G805["CellV"]] = _unsigned(volts, CELL_SF)
            body[start + G805["CellTmp"]] = _signed(cell_temperature(pack, cell), TEMPERATURE_SF)
            _put32(body, start + G805["CellSt"], 0)
    _put(body, B805, values)
    return body


def encode_map(bank: SimBank) -> list[int]:
    """Return the whole map from the marker at 40000 to the end marker."""
    models: list[tuple[int, list[int]]] = [
        (1, encode_common(bank)),
        (802, encode_battery_base(bank)),
        (803, encode_lithium_bank(bank)),
    ]
    models += [(804, encode_lithium_string(i, p)) for i, p in enumerate(bank.packs, start=1)]
    models += [(805, encode_lithium_module(i, p)) for i, p in enumerate(bank.packs, start=1)]
    image = list(MARKER)
    for model_id, body in models:
        image += [model_id, len(body), *body]
    image += [0xFFFF, 0]
    return image


def control_points(bank: SimBank) -> dict[int, int | None]:
    """Return where the map's connect points are: register -> pack address (None: the battery).

    802 SetOp switches every string; 803 StrSetCon and 804 SetCon switch
    the string that is one pack.
    """
    points: dict[int, int | None] = {}
    at = BASE + len(MARKER)
    at += 2 + len(encode_common(bank))
    points[at + 2 + B802["SetOp"]] = None
    at += 2 + len(encode_battery_base(bank))
    for index, pack in enumerate(bank.packs):
        points[at + 2 + BANK_FIXED + index * BANK_STRING_GROUP + G803["StrSetCon"]] = pack.address
    at += 2 + len(encode_lithium_bank(bank))
    for index, pack in enumerate(bank.packs, start=1):
        points[at + 2 + B804["SetCon"]] = pack.address
        at += 2 + len(encode_lithium_string(index, pack))
    return points


@dataclass(kw_only=True)
class RunningServer(ModbusServing):
    """A listening SunSpec device at one unit number."""

    unit: int


def _device_action(bank: SimBank) -> Action:
    async def answer(  # noqa: PLR0917 - an action takes six positionals
        function_code: int,
        start_address: int,
        request_address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if function_code != READ_HOLDING:
            # Nothing here may be written: the simulator models reading only.
            return ExcCodes.ILLEGAL_FUNCTION
        if count > MAX_READ:
            return ExcCodes.ILLEGAL_VALUE
        image = encode_map(bank)
        registers[: len(image)] = image
        return None

    return answer


async def start_server(
    bank: SimBank, host: str = "127.0.0.1", port: int = 0, *, unit: int = 1
) -> RunningServer:
    """Serve ``bank`` as one SunSpec device, Modbus unit ``unit`` (port 0 picks a free one).

    The map starts at 40000; reads at any other base (0, 50000) get
    exception 0x02, as from a device that keeps its map at the standard
    place only.
    """
    if not 1 <= unit <= 247:
        raise ValueError(f"unit {unit} is not a Modbus unit (1..247)")
    if not bank.packs:
        raise ValueError("a SunSpec battery needs at least one pack")
    size = len(encode_map(bank))
    # Unit 0 stands in for every unit number not listed.
    devices = [
        # The whole address range, so the action answers wherever a request points.
        SimDevice(0, start=0, size=ADDRESS_SPACE, action=nobody_there),
        SimDevice(unit, start=BASE, size=size, action=_device_action(bank)),
    ]
    server, bound_port = await listen(devices, host, port)
    return RunningServer(host=host, port=bound_port, bank=bank, unit=unit, _server=server)
