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
from .drivers.jk_pb import JkPbDriver
from .drivers.pace_ascii import PaceAsciiDriver
from .drivers.pace_modbus import PaceModbusDriver
from .drivers.pylontech_can import PylontechCanDriver
from .drivers.pylontech_rs485 import PylontechRs485Driver
from .drivers.seplos_v2 import SeplosV2Driver
from .drivers.seplos_v3 import SeplosV3Driver
from .drivers.sunspec import SunSpecDriver
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
    # A master pack may already poll the bus (JK-PB at DIP 0, Seplos V3 at
    # unit 0): the family can then be read by listening (protocol/listen.py).
    listen_only: bool = False
    # Builds the driver over a transport of one of ``wires``.
    driver: Callable[[Any], BmsDriver]


FAMILIES: dict[str, Family] = {
    family.key: family
    for family in (
        Family(
            key="pace_modbus",
            name="PACE (Modbus)",
            manufacturer="PACE",
            wires=(Wire.MODBUS_TCP, Wire.MODBUS_RTU_SERIAL, Wire.MODBUS_RTU_TCP),
            default_baudrate=9600,
            driver=PaceModbusDriver,
        ),
        Family(
            key="seplos_v3",
            name="Seplos V3 (Modbus)",
            manufacturer="Seplos",
            wires=(Wire.MODBUS_RTU_SERIAL, Wire.MODBUS_RTU_TCP, Wire.MODBUS_TCP),
            default_baudrate=19200,
            listen_only=True,
            driver=SeplosV3Driver,
        ),
        Family(
            key="jk_pb",
            name="JK-PB inverter BMS (Modbus)",
            manufacturer="JK",
            wires=(Wire.MODBUS_RTU_SERIAL, Wire.MODBUS_RTU_TCP, Wire.MODBUS_TCP),
            default_baudrate=115200,
            listen_only=True,
            driver=JkPbDriver,
        ),
        Family(
            key="pylontech_rs485",
            name="Pylontech (RS485)",
            manufacturer="Pylontech",
            wires=(Wire.ASCII_TCP, Wire.ASCII_SERIAL),
            default_baudrate=115200,
            driver=PylontechRs485Driver,
        ),
        Family(
            key="pace_ascii",
            name="PACE (RS485 ASCII)",
            manufacturer="PACE",
            wires=(Wire.ASCII_SERIAL, Wire.ASCII_TCP),
            default_baudrate=9600,
            driver=PaceAsciiDriver,
        ),
        Family(
            key="seplos_v2",
            name="Seplos V2 (RS485)",
            manufacturer="Seplos",
            wires=(Wire.ASCII_SERIAL, Wire.ASCII_TCP),
            default_baudrate=9600,
            driver=SeplosV2Driver,
        ),
        Family(
            key="pylontech_can",
            name="Pylontech (CAN, bank only)",
            manufacturer="Pylontech",
            wires=(Wire.CAN,),
            # The CAN bit rate of the battery port.
            default_baudrate=500_000,
            driver=PylontechCanDriver,
        ),
        Family(
            key="sunspec",
            name="SunSpec storage (Modbus)",
            manufacturer="SunSpec",
            wires=(Wire.MODBUS_TCP, Wire.MODBUS_RTU_SERIAL, Wire.MODBUS_RTU_TCP),
            default_baudrate=9600,
            # One device (Modbus unit 1) whose modules or strings are the packs.
            driver=SunSpecDriver,
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
    if spec.wire is Wire.MODBUS_RTU_SERIAL and spec.baudrate is None:
        # A serial port runs at the family's own speed unless the user chose one.
        spec = ConnectionSpec.from_dict({**spec.as_dict(), "baudrate": info.default_baudrate})
    return info.driver(open_transport(spec, timeout=timeout))
