"""Turn the INFO of a 0x44 ("alarm info") reply into warnings, protections and FET state.

All three vendors open 0x44 the same way (a flag byte, the command byte,
then one status byte per cell and per temperature sensor), and then go their
own way: Pylontech adds a current / voltage / current triple and five status
bytes, PACE the same triple and nine state bytes split into protections and
warnings, Seplos two bytes and a counted block of twenty event bytes. Each
vendor gets its own decoder here, and every decoder reports the same
:class:`AlarmState` with the shared names of :mod:`..alarms`, so the layers
above never see a vendor's bit numbering.

As with 0x42, the checksum only vouches that the bytes arrived as sent; a
reply whose counts run past its end raises FrameError.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from .. import alarms as a
from ..errors import FrameError
from .analog import Commands, InfoReader, check_command

# What one per-cell or per-sensor status byte says.
ITEM_NORMAL: Final = 0x00
ITEM_BELOW_LOWER_LIMIT: Final = 0x01
ITEM_ABOVE_UPPER_LIMIT: Final = 0x02
ITEM_OTHER_FAULT: Final = 0xF0


@dataclass(frozen=True, kw_only=True, slots=True)
class AlarmState:
    """What a pack's 0x44 answer says about its condition."""

    warnings: frozenset[str] = frozenset()
    protections: frozenset[str] = frozenset()
    charge_enabled: bool | None = None  # charge FET on
    discharge_enabled: bool | None = None  # discharge FET on
    balancing: bool | None = None  # any cell being balanced
    # Cells (1-based) the BMS flags as failed outright, not just out of limits.
    faulty_cells: tuple[int, ...] = field(default=())


def _bits(byte: int, names: Mapping[int, str]) -> set[str]:
    return {name for bit, name in names.items() if byte >> bit & 1}


def _bit(byte: int, bit: int) -> bool:
    return bool(byte >> bit & 1)


def _open(info: bytes, what: str, expect_command: Commands) -> InfoReader:
    reader = InfoReader(info, what)
    reader.unsigned(1, "the flag byte")
    check_command(reader.unsigned(1, "the command byte"), expect_command, "0x44")
    return reader


def _items(reader: InfoReader, what: str) -> bytes:
    count = reader.unsigned(1, f"the {what} count")
    return reader.take(count, f"the {what} status bytes")


# ---------------------------------------------------------------------------
# Pylontech

# Status 1: every bit is a protection the pack has acted on. Bit 3 is unused.
_PYLONTECH_STATUS1: Final = {
    7: a.PACK_UNDERVOLTAGE,
    6: a.CHARGE_OVERTEMPERATURE,
    5: a.DISCHARGE_OVERTEMPERATURE,
    4: a.DISCHARGE_OVERCURRENT,
    2: a.CHARGE_OVERCURRENT,
    1: a.CELL_UNDERVOLTAGE,
    0: a.PACK_OVERVOLTAGE,
}
# Temperatures in the order Pylontech sends them: the BMS board first, four
# cell groups, and on packs sending six the MOSFET last.
_PYLONTECH_BOARD = 0
_PYLONTECH_MOSFET = 5


def pylontech_block(reader: InfoReader) -> AlarmState:
    """Read one pack's alarm block (from its cell count on) of a Pylontech 0x44 reply.

    The bank-wide reply (INFO = 0xFF) repeats this block once per pack.
    Pylontech's per-item bytes "act as protection" by its own document, so
    everything here is a protection: the pack has no separate warnings.
    """
    protections: set[str] = set()
    cells = _items(reader, "cell")
    if ITEM_ABOVE_UPPER_LIMIT in cells:
        protections.add(a.CELL_OVERVOLTAGE)
    if ITEM_BELOW_LOWER_LIMIT in cells:
        protections.add(a.CELL_UNDERVOLTAGE)
    temperatures = _items(reader, "temperature")
    for index, state in enumerate(temperatures):
        if index in (_PYLONTECH_BOARD, _PYLONTECH_MOSFET):
            if state == ITEM_ABOVE_UPPER_LIMIT:
                protections.add(a.MOSFET_OVERTEMPERATURE)
        elif state == ITEM_ABOVE_UPPER_LIMIT:
            # A cell sensor out of limits does not say whether the charge or
            # the discharge window was crossed. The charge window is the
            # narrower one at both ends (charging stops near 0 and 50 degC,
            # discharging only well beyond), so that is the one crossed.
            protections.add(a.CHARGE_OVERTEMPERATURE)
        elif state == ITEM_BELOW_LOWER_LIMIT:
            protections.add(a.CHARGE_UNDERTEMPERATURE)
    charge_current, module_voltage, discharge_current = reader.take(3, "the current and voltage")
    if charge_current == ITEM_ABOVE_UPPER_LIMIT:
        protections.add(a.CHARGE_OVERCURRENT)
    if discharge_current == ITEM_ABOVE_UPPER_LIMIT:
        protections.add(a.DISCHARGE_OVERCURRENT)
    if module_voltage == ITEM_ABOVE_UPPER_LIMIT:
        protections.add(a.PACK_OVERVOLTAGE)
    elif module_voltage == ITEM_BELOW_LOWER_LIMIT:
        protections.add(a.PACK_UNDERVOLTAGE)
    status1, status2, _status3, status4, status5 = reader.take(5, "status bytes 1 to 5")
    protections |= _bits(status1, _PYLONTECH_STATUS1)
    # Status 4 and 5 flag cells 1-8 and 9-16 that read above 4.2 V or below
    # 1 V: a dead or disconnected cell rather than a limit reached.
    flags = status4 | status5 << 8
    faulty = tuple(cell + 1 for cell in range(16) if flags >> cell & 1)
    if faulty:
        protections.add(a.CELL_FAULT)
    return AlarmState(
        protections=frozenset(protections),
        charge_enabled=_bit(status2, 1),
        discharge_enabled=_bit(status2, 2),
        faulty_cells=faulty,
    )


def decode_pylontech_alarms(info: bytes, *, expect_command: Commands = None) -> AlarmState:
    """Return the state in a Pylontech 0x44 reply to one pack."""
    return pylontech_block(_open(info, "0x44", expect_command))


def decode_pylontech_bank_alarms(info: bytes) -> list[AlarmState]:
    """Return each pack's state from the master's 0x44 reply to INFO = 0xFF.

    The command byte's place holds the number of packs, then one block each
    and nothing after the last: a reply that runs on is not this one.
    """
    reader = InfoReader(info, "0x44 bank")
    reader.unsigned(1, "the flag byte")
    count = reader.unsigned(1, "the pack count")
    states = [pylontech_block(reader) for _ in range(count)]
    if reader.remaining:
        raise FrameError(f"0x44 bank reply runs {reader.remaining} bytes past its {count} packs")
    return states


# ---------------------------------------------------------------------------
# PACE (VER 0x25)

_PACE_PROTECT1: Final = {
    6: a.SHORT_CIRCUIT,
    5: a.DISCHARGE_OVERCURRENT,
    4: a.CHARGE_OVERCURRENT,
    3: a.PACK_UNDERVOLTAGE,
    2: a.PACK_OVERVOLTAGE,
    1: a.CELL_UNDERVOLTAGE,
    0: a.CELL_OVERVOLTAGE,
}
# Bit 7 means "fully charged", a state rather than a protection.
_PACE_PROTECT2: Final = {
    6: a.ENVIRONMENT_UNDERTEMPERATURE,
    5: a.ENVIRONMENT_OVERTEMPERATURE,
    4: a.MOSFET_OVERTEMPERATURE,
    3: a.DISCHARGE_UNDERTEMPERATURE,
    2: a.CHARGE_UNDERTEMPERATURE,
    1: a.DISCHARGE_OVERTEMPERATURE,
    0: a.CHARGE_OVERTEMPERATURE,
}
# The BMS's own faults, reported with the protections.
_PACE_FAULT: Final = {
    4: a.CELL_FAULT,
    2: a.TEMPERATURE_SENSOR_FAULT,
    1: a.DISCHARGE_MOSFET_FAULT,
    0: a.CHARGE_MOSFET_FAULT,
}
_PACE_WARN1: Final = {
    5: a.DISCHARGE_OVERCURRENT,
    4: a.CHARGE_OVERCURRENT,
    3: a.PACK_UNDERVOLTAGE,
    2: a.PACK_OVERVOLTAGE,
    1: a.CELL_UNDERVOLTAGE,
    0: a.CELL_OVERVOLTAGE,
}
_PACE_WARN2: Final = {
    7: a.LOW_CAPACITY,
    6: a.MOSFET_OVERTEMPERATURE,
    5: a.ENVIRONMENT_UNDERTEMPERATURE,
    4: a.ENVIRONMENT_OVERTEMPERATURE,
    3: a.DISCHARGE_UNDERTEMPERATURE,
    2: a.CHARGE_UNDERTEMPERATURE,
    1: a.DISCHARGE_OVERTEMPERATURE,
    0: a.CHARGE_OVERTEMPERATURE,
}


def decode_pace_alarms(info: bytes, *, expect_command: Commands = None) -> AlarmState:
    """Return the state in a PACE 0x44 reply.

    PACE keeps warnings and protections apart in bit fields after the
    per-item bytes, so those are what is read; the per-item bytes repeat
    the same conditions without saying which of the two they are.
    The document's table names its last byte "protect state 2" a second
    time, but points to the warn-state-2 table for it: it is warn state 2.
    """
    reader = _open(info, "0x44", expect_command)
    _items(reader, "cell")
    _items(reader, "temperature")
    reader.take(3, "the current and voltage")
    (
        protect1,
        protect2,
        instructions,
        _control,
        fault,
        balance1,
        balance2,
        warn1,
        warn2,
    ) = reader.take(9, "the state bytes")
    return AlarmState(
        warnings=frozenset(_bits(warn1, _PACE_WARN1) | _bits(warn2, _PACE_WARN2)),
        protections=frozenset(
            _bits(protect1, _PACE_PROTECT1)
            | _bits(protect2, _PACE_PROTECT2)
            | _bits(fault, _PACE_FAULT)
        ),
        charge_enabled=_bit(instructions, 1),
        discharge_enabled=_bit(instructions, 2),
        balancing=bool(balance1 or balance2),
    )


# ---------------------------------------------------------------------------
# Seplos V2

# Alarm events 2 to 6, each bit either a warning (W) or a protection (P).
_W, _P = "warning", "protection"
_SEPLOS_EVENTS: Final[dict[int, dict[int, tuple[str, str]]]] = {
    0: {  # alarm event 1: faults of the BMS itself
        1: (_P, a.TEMPERATURE_SENSOR_FAULT),
        2: (_P, a.CURRENT_SENSOR_FAULT),
        4: (_P, a.CELL_FAULT),  # a cell's voltage sense lost
        5: (_P, a.CHARGE_MOSFET_FAULT),
        6: (_P, a.DISCHARGE_MOSFET_FAULT),
    },
    1: {  # alarm event 2: voltages
        0: (_W, a.CELL_OVERVOLTAGE),
        1: (_P, a.CELL_OVERVOLTAGE),
        2: (_W, a.CELL_UNDERVOLTAGE),
        3: (_P, a.CELL_UNDERVOLTAGE),
        4: (_W, a.PACK_OVERVOLTAGE),
        5: (_P, a.PACK_OVERVOLTAGE),
        6: (_W, a.PACK_UNDERVOLTAGE),
        7: (_P, a.PACK_UNDERVOLTAGE),
    },
    2: {  # alarm event 3: cell temperatures
        0: (_W, a.CHARGE_OVERTEMPERATURE),
        1: (_P, a.CHARGE_OVERTEMPERATURE),
        2: (_W, a.CHARGE_UNDERTEMPERATURE),
        3: (_P, a.CHARGE_UNDERTEMPERATURE),
        4: (_W, a.DISCHARGE_OVERTEMPERATURE),
        5: (_P, a.DISCHARGE_OVERTEMPERATURE),
        6: (_W, a.DISCHARGE_UNDERTEMPERATURE),
        7: (_P, a.DISCHARGE_UNDERTEMPERATURE),
    },
    3: {  # alarm event 4: environment and power board
        0: (_W, a.ENVIRONMENT_OVERTEMPERATURE),
        1: (_P, a.ENVIRONMENT_OVERTEMPERATURE),
        2: (_W, a.ENVIRONMENT_UNDERTEMPERATURE),
        3: (_P, a.ENVIRONMENT_UNDERTEMPERATURE),
        4: (_P, a.MOSFET_OVERTEMPERATURE),
        5: (_W, a.MOSFET_OVERTEMPERATURE),
    },
    4: {  # alarm event 5: currents
        0: (_W, a.CHARGE_OVERCURRENT),
        1: (_P, a.CHARGE_OVERCURRENT),
        2: (_W, a.DISCHARGE_OVERCURRENT),
        3: (_P, a.DISCHARGE_OVERCURRENT),
        4: (_P, a.DISCHARGE_OVERCURRENT),  # transient over-current
        5: (_P, a.SHORT_CIRCUIT),
        6: (_P, a.DISCHARGE_OVERCURRENT),  # transient over-current lock-out
        7: (_P, a.SHORT_CIRCUIT),  # short-circuit lock-out
    },
    5: {  # alarm event 6: capacity
        2: (_W, a.LOW_CAPACITY),
        3: (_P, a.LOW_CAPACITY),
    },
}
_SEPLOS_SWITCHES = 6  # on-off state: bit 0 discharge, bit 1 charge
_SEPLOS_BALANCE = (7, 8)  # equilibrium states of cells 1-8 and 9-16


def decode_seplos_alarms(info: bytes, *, expect_command: Commands = None) -> AlarmState:
    """Return the state in a Seplos V2 0x44 reply.

    After the per-item bytes Seplos sends one current and one voltage byte
    and a counted block of event bytes (twenty on the firmware documented).
    A shorter block leaves what it does not reach unknown.
    """
    reader = _open(info, "0x44", expect_command)
    _items(reader, "cell")
    _items(reader, "temperature")
    reader.take(2, "the current and voltage")
    events = _items(reader, "event")
    warnings: set[str] = set()
    protections: set[str] = set()
    for index, table in _SEPLOS_EVENTS.items():
        if index >= len(events):
            break
        for bit, (kind, name) in table.items():
            if events[index] >> bit & 1:
                (warnings if kind == _W else protections).add(name)
    switches = events[_SEPLOS_SWITCHES] if len(events) > _SEPLOS_SWITCHES else None
    balancing = (
        bool(events[_SEPLOS_BALANCE[0]] or events[_SEPLOS_BALANCE[1]])
        if len(events) > _SEPLOS_BALANCE[1]
        else None
    )
    return AlarmState(
        warnings=frozenset(warnings),
        protections=frozenset(protections),
        charge_enabled=None if switches is None else _bit(switches, 1),
        discharge_enabled=None if switches is None else _bit(switches, 0),
        balancing=balancing,
    )
