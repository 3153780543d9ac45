"""Open the transport that a connection spec names."""

from __future__ import annotations

from ..connection import ConnectionSpec, Wire
from .ascii_serial import AsciiSerialTransport
from .ascii_tcp import AsciiTcpTransport
from .can import DEFAULT_BITRATE, CanTransport
from .modbus_rtu import ModbusRtuTcpTransport, ModbusSerialTransport
from .modbus_tcp import ModbusTcpTransport

type Transport = (
    ModbusTcpTransport
    | ModbusRtuTcpTransport
    | ModbusSerialTransport
    | AsciiTcpTransport
    | AsciiSerialTransport
    | CanTransport
)

# What a serial wire runs at when the spec does not say (the common default
# of RS485 BMS ports; families override it with their own).
DEFAULT_SERIAL_BAUDRATE = 9600


def open_transport(spec: ConnectionSpec, *, timeout: float, wire_timed: bool = False) -> Transport:
    """Return a transport for the spec, not yet connected.

    With ``wire_timed`` a request on a line of known speed (a serial port, or
    a gateway whose serial speed the spec gives) waits what its wire time
    and its family need, then what the pack has been seen to need
    (``protocol/timing.py``); otherwise, and where the speed is not known,
    it waits ``timeout``.
    """
    if spec.wire is Wire.MODBUS_TCP and spec.host and spec.port:
        return ModbusTcpTransport(
            spec.host, spec.port, timeout=timeout, baudrate=spec.baudrate, wire_timed=wire_timed
        )
    if spec.wire is Wire.MODBUS_RTU_TCP and spec.host and spec.port:
        return ModbusRtuTcpTransport(
            spec.host, spec.port, timeout=timeout, baudrate=spec.baudrate, wire_timed=wire_timed
        )
    if spec.wire is Wire.MODBUS_RTU_SERIAL and spec.serial_port:
        return ModbusSerialTransport(
            spec.serial_port,
            baudrate=spec.baudrate or DEFAULT_SERIAL_BAUDRATE,
            timeout=timeout,
            wire_timed=wire_timed,
        )
    if spec.wire is Wire.ASCII_TCP and spec.host and spec.port:
        return AsciiTcpTransport(
            spec.host, spec.port, timeout=timeout, baudrate=spec.baudrate, wire_timed=wire_timed
        )
    if spec.wire is Wire.ASCII_SERIAL and spec.serial_port:
        return AsciiSerialTransport(
            spec.serial_port,
            baudrate=spec.baudrate or DEFAULT_SERIAL_BAUDRATE,
            timeout=timeout,
            wire_timed=wire_timed,
        )
    if spec.wire is Wire.CAN and spec.can_interface and spec.can_channel:
        # ``baudrate`` is the CAN bit rate here (500 kbit/s for the batteries).
        return CanTransport(
            spec.can_interface,
            spec.can_channel,
            bitrate=spec.baudrate or DEFAULT_BITRATE,
            timeout=timeout,
        )
    raise ValueError(f"no transport for {spec.wire} at {spec.where}")
