"""Open the transport that a connection spec names."""

from __future__ import annotations

from ..connection import ConnectionSpec, Wire
from .ascii_tcp import AsciiTcpTransport
from .modbus_tcp import ModbusTcpTransport

type Transport = ModbusTcpTransport | AsciiTcpTransport


def open_transport(spec: ConnectionSpec, *, timeout: float) -> Transport:
    """Return a transport for the spec, not yet connected."""
    if spec.wire is Wire.MODBUS_TCP and spec.host and spec.port:
        return ModbusTcpTransport(spec.host, spec.port, timeout=timeout)
    if spec.wire is Wire.ASCII_TCP and spec.host and spec.port:
        return AsciiTcpTransport(spec.host, spec.port, timeout=timeout)
    raise ValueError(f"no transport for {spec.wire} at {spec.where}")
