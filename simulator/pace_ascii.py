"""A simulated bank that answers as PACE packs in their RS485 ASCII protocol (VER 0x25).

Each PACE pack answers its own address on the shared line (master 1,
slaves 2 to 15, 0 when alone); nothing relays, so a pack off the bus is
silent. It answers 0x90 (presence), 0x42 (values in 10 mA, mV, 10 mAh and
0.1 K from 2730), 0x44 (warnings and protections kept apart, FET and
balancing state), and the vendor's 0xC1 / 0xC2 version and product names.

A pack warmer than 45 degC warns of charge over-temperature and one above
55 degC has protected against it; below 10 % it warns of low capacity: so a
hot or empty simulated pack shows on the wire as on a real one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from custom_components.rack_battery.protocol.pylon.frame import (
    RTN_FORMAT_ERROR,
    RTN_INVALID_DATA,
    RTN_OK,
)
from custom_components.rack_battery.protocol.pylon.profiles import PACE, VendorProfile

from .bank import SimBank, SimPack
from .pylon_line import (
    Dialect,
    LineFaults,
    RunningServer,
    answer as line_answer,
    ascii_bytes,
    measurements_info,
    pty_starter,
    serve_tcp,
    u16,
)

__all__ = ["DIALECT", "LineFaults", "answer", "start_pty", "start_server"]

_INFO_FLAG: Final = 0x00  # what the document's example sends
WARM: Final = 45.0  # degC, charge over-temperature warning
HOT: Final = 55.0  # degC, charge over-temperature protection
LOW_SOC: Final = 0.10


def _temperatures(pack: SimPack) -> tuple[float, ...]:
    # Four cell sensors, the MOSFET, the environment.
    return (*pack.cell_temperatures, pack.mosfet_temperature, pack.ambient)


def analog_info(pack: SimPack, profile: VendorProfile = PACE) -> bytes:
    """Return the INFO of a 0x42 reply describing ``pack`` right now."""
    return (
        bytes((_INFO_FLAG, pack.address))
        + measurements_info(pack, _temperatures(pack), profile)
        + u16(pack.remaining_capacity / profile.capacity_scale)
        + bytes((3,))
        + u16(pack.full_capacity / profile.capacity_scale)
        + u16(pack.cycles)
        + u16(pack.design_capacity / profile.capacity_scale)
    )


def alarm_info(pack: SimPack, _profile: VendorProfile = PACE) -> bytes:
    """Return the INFO of a 0x44 reply: per-item bytes, then the state bytes."""
    hottest = max(pack.cell_temperatures)
    protect2 = 0x01 if hottest > HOT else 0
    protect1 = (0x10 if "charge_overcurrent" in pack.protections else 0) | (
        0x20 if "discharge_overcurrent" in pack.protections else 0
    )
    warn2 = (0x01 if hottest > WARM else 0) | (0x80 if pack.soc < LOW_SOC else 0)
    # Bit 2 discharge FET on, bit 1 charge FET on.
    instructions = (0b0100 if pack.discharge_on else 0) | (0b0010 if pack.charge_on else 0)
    cells = len(pack.cell_voltages)
    temperatures = len(_temperatures(pack))
    return (
        bytes((_INFO_FLAG, pack.address, cells)) + bytes(cells)
        + bytes((temperatures,)) + bytes(temperatures)
        + bytes(3)  # charge current, voltage, discharge current
        + bytes((protect1, protect2, instructions, 0, 0, 0, 0, 0, warn2))
    )  # fmt: skip


def presence_info(pack: SimPack, _profile: VendorProfile = PACE) -> bytes:
    """Return the INFO of a 0x90 reply: the pack's number."""
    return bytes((pack.address,))


def version_info(pack: SimPack, _profile: VendorProfile = PACE) -> bytes:
    """Return the INFO of a 0xC1 reply: the software version, twenty characters."""
    return ascii_bytes(pack.firmware, 20)


def product_info(pack: SimPack, _profile: VendorProfile = PACE) -> bytes:
    """Return the INFO of a 0xC2 reply: the product name, twenty characters."""
    return ascii_bytes(pack.model, 20)


def _fet_switch(charge: bool) -> Callable[[SimBank, SimPack, bytes], int]:
    def switch(bank: SimBank, pack: SimPack, info: bytes) -> int:
        # INFO is one byte: 00 turns the FET on, 01 turns it off.
        if len(info) != 1:
            return RTN_FORMAT_ERROR
        if info[0] not in (0x00, 0x01):
            return RTN_INVALID_DATA
        closed = info[0] == 0x00
        if charge:
            bank.set_paths(pack.address, charge=closed)
        else:
            bank.set_paths(pack.address, discharge=closed)
        return RTN_OK

    return switch


DIALECT: Final = Dialect(
    profile=PACE,
    answers={
        0x42: (analog_info, True),
        0x44: (alarm_info, True),
        0x90: (presence_info, False),
        0xC1: (version_info, False),
        0xC2: (product_info, False),
    },
    writes={0x9A: _fet_switch(charge=True), 0x9B: _fet_switch(charge=False)},
)


def answer(bank: SimBank, request: bytes, faults: LineFaults | None = None) -> bytes | None:
    """Return the line's reply to one request, or None where it stays silent."""
    return line_answer(bank, request, DIALECT, faults)


async def start_server(
    bank: SimBank, host: str = "127.0.0.1", port: int = 0, faults: LineFaults | None = None
) -> RunningServer:
    """Serve ``bank`` as PACE RS485 ASCII on a TCP port (0 picks a free one)."""
    return await serve_tcp(bank, DIALECT, host, port, faults)


# Serve ``bank`` as PACE RS485 ASCII on a pseudo-terminal, at a baud rate if given.
start_pty = pty_starter(DIALECT, "pace_ascii")
