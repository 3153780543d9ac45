"""Which BMS families exist, which wires they speak on, and how to open one.

This is the one place that ties a family to its driver and transport, so the
layers above ask for "PACE over Modbus TCP at this address" and get a driver
without knowing a register or a byte.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from .drivers.base import BmsDriver
from .drivers.pace_modbus import PaceModbusDriver
from .drivers.pylontech_rs485 import PylontechRs485Driver
from .transport.ascii_tcp import AsciiTcpTransport
from .transport.modbus_tcp import ModbusTcpTransport


class Wire(StrEnum):
    """How the bank's bus reaches this host."""

    # Modbus TCP, or a gateway that turns it into Modbus RTU on RS485.
    MODBUS_TCP = "modbus_tcp"
    # A transparent RS485-to-TCP gateway carrying the Pylon ASCII protocol.
    ASCII_TCP = "ascii_tcp"


# What gateways ship with: 502 is Modbus TCP's own port; transparent serial
# servers (Elfin EW11 and its kin) default to 8899.
DEFAULT_PORTS: dict[Wire, int] = {Wire.MODBUS_TCP: 502, Wire.ASCII_TCP: 8899}


@dataclass(frozen=True, kw_only=True)
class Family:
    """A BMS family: its name, the wires it speaks on and how to reach it."""

    key: str
    name: str
    manufacturer: str
    wires: tuple[Wire, ...]
    open_tcp: Callable[[str, int, float], BmsDriver]


FAMILIES: dict[str, Family] = {
    family.key: family
    for family in (
        Family(
            key="pace_modbus",
            name="PACE (Modbus)",
            manufacturer="PACE",
            wires=(Wire.MODBUS_TCP,),
            open_tcp=lambda host, port, timeout: PaceModbusDriver(
                ModbusTcpTransport(host, port, timeout=timeout)
            ),
        ),
        Family(
            key="pylontech_rs485",
            name="Pylontech (RS485)",
            manufacturer="Pylontech",
            wires=(Wire.ASCII_TCP,),
            open_tcp=lambda host, port, timeout: PylontechRs485Driver(
                AsciiTcpTransport(host, port, timeout=timeout)
            ),
        ),
    )
}


def families_on(wire: Wire) -> list[Family]:
    """Return the families that speak on a wire."""
    return [family for family in FAMILIES.values() if wire in family.wires]


def open_driver(
    *, wire: Wire, family: str, host: str, port: int, timeout: float = 1.0
) -> BmsDriver:
    """Return a driver for a family on a TCP wire, not yet connected."""
    info = FAMILIES[family]
    if wire not in info.wires:
        raise ValueError(f"{info.name} does not speak on {wire}")
    return info.open_tcp(host, port, timeout)
