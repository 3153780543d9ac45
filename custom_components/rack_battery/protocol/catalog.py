"""Which BMS families exist, which wires they speak on, and how to open one.

This is the one place that ties a family to its driver, so the layers above
ask for "PACE over Modbus TCP at this address" and get a driver without
knowing a register or a byte. Adding a family is one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
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


class Switch(StrEnum):
    """What a family's switch does physically."""

    NONE = "none"  # nothing can be switched remotely
    FET = "fet"  # the BMS's charge or discharge MOSFETs
    CONTACTOR = "contactor"  # a string's contactor, both ways at once
    LIMIT = "limit"  # a current limit the BMS is sent and passes on to the inverter


class Undo(StrEnum):
    """How a change is taken back."""

    NONE = "none"
    SWITCH_BACK = "switch_back"  # the opposite command closes the path again
    LAPSES = "lapses"  # the BMS returns to its own values unless the command is repeated


@dataclass(frozen=True, kw_only=True)
class ControlCapabilities:
    """What a family's BMS lets a caller change, and how it is undone.

    Callers ask this, never the family's name. A path offered here can be
    both opened and closed again remotely: a command with no way back (a
    Seplos V3's discharge FETs off) is not offered at all.
    """

    switch: Switch = Switch.NONE
    # The charge path, and the discharge path, can be opened and closed.
    charge_path: bool = False
    discharge_path: bool = False
    # The two paths switch only together ("isolate" and "reconnect" only).
    paths_together: bool = False
    # Per-pack charge and discharge current limits can be set (a throttle).
    throttle: bool = False
    undo: Undo = Undo.NONE
    # A throttle lapses this many seconds after it was last sent.
    hold_seconds: float | None = None
    # What the BMS can do remotely but cannot take back, and is not offered.
    not_offered: tuple[str, ...] = ()
    # Pack addresses no write may go to: Modbus unit 0 is the broadcast
    # address, and a write there would reach every pack on the line.
    unwritable: frozenset[int] = frozenset()

    def writable(self, address: int) -> bool:
        """Return whether a write may go to the pack at ``address``."""
        return self.can_write and address not in self.unwritable

    @property
    def can_write(self) -> bool:
        """Return whether the family has any write path."""
        return self.charge_path or self.discharge_path or self.throttle

    @property
    def can_isolate(self) -> bool:
        """Return whether a pack can be taken out of the bank both ways."""
        return self.charge_path and self.discharge_path


NO_CONTROL = ControlCapabilities()
MODBUS_BROADCAST = frozenset({0})


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
    # What its BMS lets a caller change. A bank read by listening (a
    # master already polls the bus) writes nothing, whatever this says.
    control: ControlCapabilities = field(default=NO_CONTROL)


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
            # SCA 0x1511 charge FETs off, 0x1515 on; 0x1510 turns the
            # discharge FETs off with no register to turn them on again.
            control=ControlCapabilities(
                switch=Switch.FET,
                charge_path=True,
                undo=Undo.SWITCH_BACK,
                not_offered=("discharge_off",),
                unwritable=MODBUS_BROADCAST,
            ),
        ),
        Family(
            key="jk_pb",
            name="JK-PB inverter BMS (Modbus)",
            manufacturer="JK",
            wires=(Wire.MODBUS_RTU_SERIAL, Wire.MODBUS_RTU_TCP, Wire.MODBUS_TCP),
            default_baudrate=115200,
            listen_only=True,
            driver=JkPbDriver,
            # Settings 0x1070 charge switch, 0x1074 discharge switch (u32).
            control=ControlCapabilities(
                switch=Switch.FET,
                charge_path=True,
                discharge_path=True,
                undo=Undo.SWITCH_BACK,
                unwritable=MODBUS_BROADCAST,
            ),
        ),
        Family(
            key="pylontech_rs485",
            name="Pylontech (RS485)",
            manufacturer="Pylontech",
            wires=(Wire.ASCII_TCP, Wire.ASCII_SERIAL),
            default_baudrate=115200,
            driver=PylontechRs485Driver,
            # 0x94 sends limits; 0 A asks the inverter to stop that way.
            control=ControlCapabilities(
                switch=Switch.LIMIT,
                charge_path=True,
                discharge_path=True,
                throttle=True,
                undo=Undo.LAPSES,
                hold_seconds=10.0,
            ),
        ),
        Family(
            key="pace_ascii",
            name="PACE (RS485 ASCII)",
            manufacturer="PACE",
            wires=(Wire.ASCII_SERIAL, Wire.ASCII_TCP),
            default_baudrate=9600,
            driver=PaceAsciiDriver,
            # 0x9A charge FET, 0x9B discharge FET.
            control=ControlCapabilities(
                switch=Switch.FET, charge_path=True, discharge_path=True, undo=Undo.SWITCH_BACK
            ),
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
            # 802 SetOp, 803 StrSetCon, 804 SetCon: a contactor, both ways
            # at once, where the device implements the point.
            control=ControlCapabilities(
                switch=Switch.CONTACTOR,
                charge_path=True,
                discharge_path=True,
                paths_together=True,
                undo=Undo.SWITCH_BACK,
            ),
        ),
    )
}


def control_of(family: str) -> ControlCapabilities:
    """Return what a family lets a caller change (nothing for a family not listed)."""
    info = FAMILIES.get(family)
    return NO_CONTROL if info is None else info.control


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
