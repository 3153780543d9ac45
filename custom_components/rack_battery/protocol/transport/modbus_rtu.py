"""Carry Modbus RTU: on a serial port, or as raw RTU frames over TCP.

A USB RS485 adapter puts the host on the packs' own line; a cheap Ethernet
or Wi-Fi serial server (Elfin EW11 and its kin) forwards the bytes of that
line over TCP without turning them into Modbus TCP. Both carry RTU frames:
a unit byte, the PDU and a CRC, with no transaction id, so a reply is only
known by arriving while its request is the one in flight. The transaction
logic, error mapping and timing are :class:`ModbusTransport`'s; these
classes only say which pymodbus client to open.

A serial port fails in ways a user can fix, so they are told apart: a port
that does not exist, one held by another program, one this process may not
open. pymodbus reports all three as "could not connect", so the port is
opened once more, in a worker thread, to learn which.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from pymodbus.client import AsyncModbusSerialClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.framer import FramerType
import serial

from ..errors import BusUnavailable, serial_open_error
from .modbus_tcp import ModbusTcpTransport, ModbusTransport


class ModbusRtuTcpTransport(ModbusTcpTransport):
    """Raw Modbus RTU frames through a transparent TCP-to-RS485 gateway.

    Cheap Ethernet and Wi-Fi RS485 gateways forward bytes as they are, so the
    stream carries RTU frames with their CRC instead of Modbus TCP headers.
    """

    framer: ClassVar[FramerType] = FramerType.RTU


class ModbusSerialTransport(ModbusTransport):
    """Modbus RTU on a serial port, 8 data bits, no parity, one stop bit.

    The port is opened for this process alone (an exclusive lock), as two
    masters on one RS485 line garble each other's frames.
    """

    def __init__(
        self, port: str, *, baudrate: int, timeout: float = 1.0, frame_gap: float = 0.0
    ) -> None:
        """Remember the port and its speed; nothing is opened until needed."""
        super().__init__(timeout=timeout, frame_gap=frame_gap)
        self.port = port
        self.baudrate = baudrate

    @property
    def where(self) -> str:
        """Return the port's path, for messages."""
        return self.port

    def _new_client(self) -> ModbusBaseClient:
        return AsyncModbusSerialClient(
            self.port,
            framer=FramerType.RTU,
            baudrate=self.baudrate,
            timeout=self.timeout,
            retries=0,
            reconnect_delay=0,
        )

    async def _cannot_connect(self) -> BusUnavailable:
        return await asyncio.to_thread(serial_port_error, self.port)


def serial_port_error(port: str) -> BusUnavailable:
    """Open a serial port once to learn why it cannot be used (blocking: run in a thread).

    Returns the error to raise; a port that opens fine here failed for a
    reason of the moment, reported as the bus being unavailable.
    """
    try:
        handle = serial.Serial(port, exclusive=True)
    except (OSError, ValueError) as err:
        return serial_open_error(port, err)
    handle.close()
    return BusUnavailable(f"cannot open serial port {port}")
