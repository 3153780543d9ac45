"""A simulated bank that answers as Pylontech packs on RS485.

This is what a driver sees through a transparent RS485-to-TCP gateway, or
on a USB RS485 adapter: the bytes of the Pylon ASCII protocol and nothing
else. The lowest-addressed pack is the master; as on the real bus it answers
for every pack, relaying to the slaves. So a slave taken off the bus gets a
0x91 answer (the master could not reach it), while a master taken off the
bus leaves the whole line silent. Requests for addresses where no pack sits,
and garbage, get no answer either: nothing on the line recognises them as
its own. The master also answers 0x42 and 0x44 for every pack it reaches
when asked with command byte 0xFF: the count it sends is of the packs it
reached, so a slave taken off the bus is not counted (the vendor documents
give each of the M blocks a pack's data and no address, and have no way to
mark one as missing). Older master firmware answers pack by pack only and
refuses the group read as an unknown command: ``per_pack_firmware`` (and
``--protocol pylontech-ascii-per-pack``) plays that master.

Values are encoded from the bank's state at the moment each request
arrives, in the units of the Pylontech profile. The answering machinery and
the fault hooks are shared with the other vendors (:mod:`.pylon_line`).

``python -m simulator --protocol pylontech-ascii`` serves such a bank to a
real Home Assistant.
"""

from __future__ import annotations

from collections.abc import Sequence
import re
from typing import Final

from custom_components.rack_battery.protocol.pylon.frame import (
    RTN_FORMAT_ERROR,
    RTN_INVALID_DATA,
    RTN_OK,
)
from custom_components.rack_battery.protocol.pylon.profiles import PYLONTECH, VendorProfile

from .bank import SimBank, SimPack
from .paced import answer_time
from .pylon_line import (
    Dialect,
    LineFaults,
    RunningPty,
    RunningServer,
    answer as line_answer,
    ascii_bytes,
    kelvin,
    measurements_info,
    pty_starter,
    s16,
    serve_pty,
    serve_tcp,
    u16,
    u24,
)

__all__ = [
    "DIALECT",
    "LineFaults",
    "RunningPty",
    "RunningServer",
    "answer",
    "per_pack_firmware",
    "start_per_pack_pty",
    "start_per_pack_server",
    "start_pty",
    "start_server",
]

_INFO_FLAG: Final = 0x11  # what the specification's own example sends
# Pylontech switches to 24-bit capacity fields for packs above this size.
_SMALL_PACK_AH: Final = 65.0
# Limits a US3000-class pack asks for (charge 0.5 C of 74 Ah, discharge 1 C).
CHARGE_VOLTAGE_LIMIT: Final = 53.2  # V
DISCHARGE_VOLTAGE_LIMIT: Final = 44.5  # V
CHARGE_CURRENT_LIMIT: Final = 37.0  # A
DISCHARGE_CURRENT_LIMIT: Final = 74.0  # A
# Above this a cell-group temperature is flagged (the charge limit).
HOT: Final = 50.0  # degC


def _version(firmware: str) -> bytes:
    """Return "V1.4" (or "1.4") as the two bytes major, minor."""
    numbers = [min(int(part), 0xFF) for part in re.findall(r"\d+", firmware)[:2]]
    numbers += [0] * (2 - len(numbers))
    return bytes(numbers)


def _temperatures(pack: SimPack) -> tuple[float, ...]:
    # Board, the four cell groups, then the MOSFET, as packs sending six do.
    return (pack.temperature, *pack.cell_temperatures, pack.mosfet_temperature)


def _analog_block(pack: SimPack, profile: VendorProfile) -> bytes:
    info = bytearray(measurements_info(pack, _temperatures(pack), profile))
    remaining = pack.remaining_capacity / profile.capacity_scale
    full = pack.full_capacity / profile.capacity_scale
    if pack.design_capacity <= _SMALL_PACK_AH:
        info += u16(remaining)
        info.append(2)
        info += u16(full) + u16(pack.cycles)
    else:
        info += b"\xff\xff"
        info.append(4)
        info += b"\xff\xff" + u16(pack.cycles) + u24(remaining) + u24(full)
    return bytes(info)


def analog_info(pack: SimPack, profile: VendorProfile = PYLONTECH) -> bytes:
    """Return the INFO of a 0x42 reply describing ``pack`` right now."""
    return bytes((_INFO_FLAG, pack.address)) + _analog_block(pack, profile)


def _alarm_block(pack: SimPack, _profile: VendorProfile) -> bytes:
    cells = len(pack.cell_voltages)
    temperatures = _temperatures(pack)
    items = bytes(
        2 if index in (1, 2, 3, 4) and t > HOT else 0 for index, t in enumerate(temperatures)
    )
    fets = (0b0010 if pack.charge_on else 0) | (0b0100 if pack.discharge_on else 0)
    flowing = (0x80 if pack.current > 0.1 else 0) | (0x40 if pack.current < -0.1 else 0)
    status1 = 0x40 if any(items) and pack.current > 0 else 0  # charge over temperature
    return (
        bytes((cells,)) + bytes(cells)
        + bytes((len(temperatures),)) + items
        + bytes((
            2 if "charge_overcurrent" in pack.protections else 0,
            0,
            2 if "discharge_overcurrent" in pack.protections else 0,
        ))
        + bytes((status1, fets, flowing, 0, 0))
    )  # fmt: skip


def alarm_info(pack: SimPack, profile: VendorProfile = PYLONTECH) -> bytes:
    """Return the INFO of a 0x44 reply: flag, command byte, then the alarm block."""
    return bytes((_INFO_FLAG, pack.address)) + _alarm_block(pack, profile)


def bank_analog_info(packs: Sequence[SimPack], profile: VendorProfile = PYLONTECH) -> bytes:
    """Return the master's 0x42 reply to 0xFF: flag, pack count, one block each."""
    return bytes((_INFO_FLAG, len(packs))) + b"".join(_analog_block(p, profile) for p in packs)


def bank_alarm_info(packs: Sequence[SimPack], profile: VendorProfile = PYLONTECH) -> bytes:
    """Return the master's 0x44 reply to 0xFF: flag, pack count, one block each."""
    return bytes((_INFO_FLAG, len(packs))) + b"".join(_alarm_block(p, profile) for p in packs)


def system_parameters_info(_pack: SimPack, profile: VendorProfile = PYLONTECH) -> bytes:
    """Return the INFO of a 0x47 reply: a flag and twelve thresholds."""
    return (
        bytes((_INFO_FLAG,))
        + u16(3650) + u16(3100) + u16(2900)  # cell high, low, under (mV)
        + kelvin(50.0, profile) + kelvin(0.0, profile)  # charge window
        + s16(CHARGE_CURRENT_LIMIT * 10)  # 100 mA counts
        + u16(54000) + u16(46500) + u16(44500)  # module high, low, under (mV)
        + kelvin(60.0, profile) + kelvin(-10.0, profile)  # discharge window
        + s16(-DISCHARGE_CURRENT_LIMIT * 10)  # negative on this wire
    )  # fmt: skip


def charge_management_info(pack: SimPack, _profile: VendorProfile = PYLONTECH) -> bytes:
    """Return the INFO of a 0x92 reply: command byte, limits, status flags."""
    # Charge allowed (bit 7), discharge allowed (bit 6); a held limit is
    # what the pack reports until the hold expires.
    status = (0x80 if pack.charge_on else 0) | (0x40 if pack.discharge_on else 0)
    charge, discharge = CHARGE_CURRENT_LIMIT, DISCHARGE_CURRENT_LIMIT
    if pack.hold is not None:
        charge, discharge = pack.hold[0], pack.hold[1]
    return (
        bytes((pack.address,))
        + u16(CHARGE_VOLTAGE_LIMIT * 1000)
        + u16(DISCHARGE_VOLTAGE_LIMIT * 1000)
        + s16(charge * 10)
        + s16(-discharge * 10)  # discharge is negative on this wire
        + bytes((status,))
    )


def firmware_info(pack: SimPack, _profile: VendorProfile = PYLONTECH) -> bytes:
    """Return the INFO of a 0x96 reply: command byte, vendor and main-line versions."""
    major, minor = _version(pack.firmware)
    return bytes((pack.address, major, minor, major, minor, 0))


def manufacturer_info(pack: SimPack, _profile: VendorProfile = PYLONTECH) -> bytes:
    """Return the INFO of a 0x51 reply: device name, version, manufacturer."""
    return (
        ascii_bytes(pack.model, 10) + _version(pack.firmware) + ascii_bytes(pack.manufacturer, 20)
    )


def serial_info(pack: SimPack, _profile: VendorProfile = PYLONTECH) -> bytes:
    """Return the INFO of a 0x93 reply: the command byte and sixteen characters."""
    return bytes((pack.address,)) + ascii_bytes(pack.serial, 16)


def _protocol_version(_pack: SimPack, _profile: VendorProfile) -> bytes:
    return b""


def set_charge_management(bank: SimBank, pack: SimPack, info: bytes) -> int:
    """Carry out a 0x94: hold the limits sent for 10 s of the bank's clock.

    INFO is the command byte (the pack's address), charge and discharge
    voltage limits (mV) and charge and discharge current limits (100 mA
    counts, the discharge one negative).
    """
    if len(info) != 9:
        return RTN_FORMAT_ERROR
    if info[0] != pack.address:
        return RTN_INVALID_DATA
    charge = int.from_bytes(info[5:7], "big", signed=True) / 10.0
    discharge = -int.from_bytes(info[7:9], "big", signed=True) / 10.0
    if charge < 0 or discharge < 0:
        return RTN_INVALID_DATA
    bank.set_hold(pack.address, charge, discharge)
    return RTN_OK


DIALECT: Final = Dialect(
    profile=PYLONTECH,
    relayed=True,
    answers={
        0x42: (analog_info, True),
        0x44: (alarm_info, True),
        0x47: (system_parameters_info, False),
        0x4F: (_protocol_version, False),
        0x51: (manufacturer_info, False),
        0x92: (charge_management_info, True),
        0x93: (serial_info, True),
        0x96: (firmware_info, True),
    },
    bank_answers={0x42: bank_analog_info, 0x44: bank_alarm_info},
    writes={0x94: set_charge_management},
)


def answer(bank: SimBank, request: bytes, faults: LineFaults | None = None) -> bytes | None:
    """Return the master's reply to one request, or None where the line stays silent."""
    return line_answer(bank, request, DIALECT, faults)


async def start_server(
    bank: SimBank,
    host: str = "127.0.0.1",
    port: int = 0,
    faults: LineFaults | None = None,
    *,
    baudrate: int | None = None,
) -> RunningServer:
    """Serve ``bank`` as Pylontech RS485 on a TCP port (0 picks a free one).

    With ``baudrate`` the line behind the gateway runs at that speed and the
    packs take their answer time (``simulator/paced.py``).
    """
    return await serve_tcp(
        bank,
        DIALECT,
        host,
        port,
        faults,
        baudrate=baudrate,
        answer_time=answer_time("pylontech_rs485"),
    )


# Serve ``bank`` as Pylontech RS485 on a pseudo-terminal, at a baud rate if given.
start_pty = pty_starter(DIALECT, "pylontech_rs485")


def per_pack_firmware() -> LineFaults:
    """Return line settings for a master whose firmware refuses the group read (INFO 0xFF)."""
    return LineFaults(refuse_bank_reads=True)


async def start_per_pack_server(
    bank: SimBank, host: str = "127.0.0.1", port: int = 0
) -> RunningServer:
    """Serve ``bank`` on TCP behind a master that answers pack by pack only."""
    return await serve_tcp(bank, DIALECT, host, port, per_pack_firmware())


async def start_per_pack_pty(bank: SimBank, *, baudrate: int | None = None) -> RunningPty:
    """Serve ``bank`` on a pseudo-terminal behind a master that answers pack by pack only."""
    return await serve_pty(
        bank,
        DIALECT,
        per_pack_firmware(),
        baudrate=baudrate,
        answer_time=answer_time("pylontech_rs485"),
    )
