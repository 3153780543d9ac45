"""A simulated bank that answers as Seplos V2 packs (EMU10xx/11xx) on RS485.

Each pack answers its own DIP address, 0 to 15; nothing relays, so a pack
off the bus is silent. It answers 0x42 (values in 10 mA, 10 mV, 10 mAh and
0.1 K from 2731, with its own state of charge and health) and 0x44 (twenty
event bytes with warnings and protections apart, switch and balancing
state). Like a real pack, one at ADR 0 answers with command group 0x01
(the battery group, counted from 1) where a pack at ADR n answers n. A
pack warmer than 45 degC raises the charge high-temperature alarm
and above 55 degC its protection; below 10 % the residual capacity alarm.
"""

from __future__ import annotations

from typing import Final

from custom_components.rack_battery.protocol.pylon.profiles import SEPLOS_V2, VendorProfile

from .bank import SimBank, SimPack
from .pylon_line import (
    Dialect,
    LineFaults,
    RunningServer,
    answer as line_answer,
    measurements_info,
    pty_starter,
    serve_tcp,
    u16,
)

__all__ = ["DIALECT", "LineFaults", "answer", "start_pty", "start_server"]

_INFO_FLAG: Final = 0x00
WARM: Final = 45.0  # degC
HOT: Final = 55.0  # degC
LOW_SOC: Final = 0.10
_EVENT_BYTES: Final = 20


def command_group(pack: SimPack) -> int:
    """Return the "command group" byte a pack puts in its 0x42 and 0x44 replies."""
    return pack.address or 1


def _temperatures(pack: SimPack) -> tuple[float, ...]:
    # Four cell sensors, the environment, the power (MOSFET) board.
    return (*pack.cell_temperatures, pack.ambient, pack.mosfet_temperature)


def analog_info(pack: SimPack, profile: VendorProfile = SEPLOS_V2) -> bytes:
    """Return the INFO of a 0x42 reply describing ``pack`` right now."""
    return (
        bytes((_INFO_FLAG, command_group(pack)))
        + measurements_info(pack, _temperatures(pack), profile)
        + u16(pack.remaining_capacity / profile.capacity_scale)
        + bytes((10,))
        + u16(pack.full_capacity / profile.capacity_scale)
        + u16(pack.soc * 1000)  # per mille
        + u16(pack.design_capacity / profile.capacity_scale)
        + u16(pack.cycles)
        + u16(pack.soh * 10)  # per mille
        + u16(pack.voltage / profile.voltage_scale)  # port voltage, same bus
        + bytes(8)  # four reserved items
    )


def alarm_info(pack: SimPack, _profile: VendorProfile = SEPLOS_V2) -> bytes:
    """Return the INFO of a 0x44 reply: per-item bytes, then twenty event bytes."""
    hottest = max(pack.cell_temperatures)
    events = bytearray(_EVENT_BYTES)
    events[2] = (0x01 if hottest > WARM else 0) | (0x02 if hottest > HOT else 0)
    events[5] = 0x04 if pack.soc < LOW_SOC else 0
    events[6] = 0b11 if pack.connected else 0  # discharge and charge switch on
    events[9] = (0x01 if pack.current < -0.1 else 0) | (0x02 if pack.current > 0.1 else 0)
    cells = len(pack.cell_voltages)
    temperatures = len(_temperatures(pack))
    return (
        bytes((_INFO_FLAG, command_group(pack), cells)) + bytes(cells)
        + bytes((temperatures,)) + bytes(temperatures)
        + bytes(2)  # current, voltage
        + bytes((_EVENT_BYTES,)) + bytes(events)
    )  # fmt: skip


DIALECT: Final = Dialect(
    profile=SEPLOS_V2,
    answers={0x42: (analog_info, True), 0x44: (alarm_info, True)},
)


def answer(bank: SimBank, request: bytes, faults: LineFaults | None = None) -> bytes | None:
    """Return the line's reply to one request, or None where it stays silent."""
    return line_answer(bank, request, DIALECT, faults)


async def start_server(
    bank: SimBank, host: str = "127.0.0.1", port: int = 0, faults: LineFaults | None = None
) -> RunningServer:
    """Serve ``bank`` as Seplos V2 on a TCP port (0 picks a free one)."""
    return await serve_tcp(bank, DIALECT, host, port, faults)


# Serve ``bank`` as Seplos V2 on a pseudo-terminal, at a baud rate if given.
start_pty = pty_starter(DIALECT, "seplos_v2")
