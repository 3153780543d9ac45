"""Which BMS families exist, which wires they speak on, and how to open one.

This is the one place that ties a family to its driver, so the layers above
ask for "PACE over Modbus TCP at this address" and get a driver without
knowing a register or a byte. Adding a family is one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .connection import ConnectionSpec, Wire
from .drivers.base import BmsDriver
from .drivers.pace_modbus import PaceModbusDriver
from .drivers.pylontech_rs485 import PylontechRs485Driver
from .transport.factory import open_transport


@dataclass(frozen=True, kw_only=True)
class Family:
    """A BMS family: its name, the wires it speaks on and its driver."""

    key: str
    name: str
    manufacturer: str
    wires: tuple[Wire, ...]
    # The baud rate its RS485 or CAN port runs at out of the box.
    default_baudrate: int | None = None
    # Builds the driver over a transport of one of ``wires``.
    driver: Callable[[Any], BmsDriver]


FAMILIES: dict[str, Family] = {
    family.key: family
    for family in (
        Family(
            key="pace_modbus",
            name="PACE (Modbus)",
            manufacturer="PACE",
            wires=(Wire.MODBUS_TCP,),
            default_baudrate=9600,
            driver=PaceModbusDriver,
        ),
        Family(
            key="pylontech_rs485",
            name="Pylontech (RS485)",
            manufacturer="Pylontech",
            wires=(Wire.ASCII_TCP,),
            default_baudrate=115200,
            driver=PylontechRs485Driver,
        ),
    )
}


def families_on(wire: Wire) -> list[Family]:
    """Return the families that speak on a wire."""
    return [family for family in FAMILIES.values() if wire in family.wires]


def open_driver(spec: ConnectionSpec, family: str, *, timeout: float = 1.0) -> BmsDriver:
    """Return a driver for a family on the bus a spec names, not yet connected."""
    info = FAMILIES[family]
    if spec.wire not in info.wires:
        raise ValueError(f"{info.name} does not speak on {spec.wire}")
    return info.driver(open_transport(spec, timeout=timeout))
