"""Where a bank's bus is and how it is reached.

A connection spec is plain data (it is stored in the config entry) and names
one physical bus: two banks whose specs share a ``bus_key`` share the wire,
and with it the one transaction that can be in flight on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any


class Wire(StrEnum):
    """How the bank's bus reaches this host."""

    # Modbus TCP, or a gateway that turns it into Modbus RTU on RS485.
    MODBUS_TCP = "modbus_tcp"
    # Raw Modbus RTU frames carried over TCP by a transparent gateway.
    MODBUS_RTU_TCP = "modbus_rtu_tcp"
    # Modbus RTU on a serial port (a USB RS485 adapter).
    MODBUS_RTU_SERIAL = "modbus_rtu_serial"
    # A transparent RS485-to-TCP gateway carrying the Pylon ASCII protocol.
    ASCII_TCP = "ascii_tcp"
    # The Pylon ASCII protocol on a serial port.
    ASCII_SERIAL = "ascii_serial"
    # A CAN interface through python-can.
    CAN = "can"


TCP_WIRES = frozenset({Wire.MODBUS_TCP, Wire.MODBUS_RTU_TCP, Wire.ASCII_TCP})
SERIAL_WIRES = frozenset({Wire.MODBUS_RTU_SERIAL, Wire.ASCII_SERIAL})

# What gateways ship with: 502 is Modbus TCP's own port; transparent serial
# servers (Elfin EW11 and its kin) default to 8899.
DEFAULT_PORTS: dict[Wire, int] = {
    Wire.MODBUS_TCP: 502,
    Wire.MODBUS_RTU_TCP: 8899,
    Wire.ASCII_TCP: 8899,
}


@dataclass(frozen=True, kw_only=True)
class ConnectionSpec:
    """One physical bus: a gateway's host and port, a serial port, or a CAN channel."""

    wire: Wire
    host: str | None = None
    port: int | None = None
    serial_port: str | None = None  # e.g. /dev/ttyUSB0
    baudrate: int | None = None
    can_interface: str | None = None  # python-can interface: socketcan, slcan, ...
    can_channel: str | None = None  # e.g. can0, /dev/ttyACM0@115200, host:port

    @property
    def bus_key(self) -> str:
        """Return what names the physical bus, whatever protocol runs on it."""
        if self.wire in TCP_WIRES:
            return f"tcp://{(self.host or '').lower()}:{self.port}"
        if self.wire in SERIAL_WIRES:
            return f"serial://{self.serial_port}"
        return f"can://{self.can_interface}/{self.can_channel}"

    @property
    def where(self) -> str:
        """Return the bus for a message to the user."""
        if self.wire in TCP_WIRES:
            return f"{self.host}:{self.port}"
        if self.wire in SERIAL_WIRES:
            return f"{self.serial_port}"
        return f"{self.can_interface} {self.can_channel}"

    def as_dict(self) -> dict[str, Any]:
        """Return the spec as plain data, leaving out what is not set."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConnectionSpec:
        """Build a spec from stored data, ignoring keys it does not know."""
        known = {field.name for field in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["wire"] = Wire(values["wire"])
        return cls(**values)
