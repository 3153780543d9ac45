"""Carry Modbus RTU: on a serial port, or as raw RTU frames over TCP.

A USB RS485 adapter puts the host on the packs' own line; a cheap Ethernet
or Wi-Fi serial server (Elfin EW11 and its kin) forwards the bytes of that
line over TCP without turning them into Modbus TCP. Both carry RTU frames:
a unit byte, the PDU and a CRC, with no transaction id, so a reply is only
known by answering the request in flight (``protocol/modbus.py``,
:class:`~..modbus.RtuReceiver`). The transaction logic, error mapping and
timing are :class:`ModbusTransport`'s; these classes only say how the
stream is opened.

A serial port fails in ways a user can fix, so they are told apart: a port
that does not exist, one held by another program, one this process may not
open (``errors.serial_open_error``). The port is opened in an executor, as
pyserial configures it with blocking system calls.
"""

from __future__ import annotations

import asyncio

import serial
import serial_asyncio_fast

from ..errors import serial_open_error
from ..modbus import RtuReceiver
from .modbus_tcp import ModbusLink, ModbusTcpTransport, ModbusTransport, Receiver


class ModbusRtuTcpTransport(ModbusTcpTransport):
    """Raw Modbus RTU frames through a transparent TCP-to-RS485 gateway.

    Cheap Ethernet and Wi-Fi RS485 gateways forward bytes as they are, so the
    stream carries RTU frames with their CRC instead of Modbus TCP headers.
    """

    def _new_receiver(self) -> Receiver:
        return RtuReceiver(self.stats)


class ModbusSerialTransport(ModbusTransport):
    """Modbus RTU on a serial port, 8 data bits, no parity, one stop bit.

    The port is opened for this process alone (an exclusive lock), as two
    masters on one RS485 line garble each other's frames.
    """

    def __init__(
        self,
        port: str,
        *,
        baudrate: int,
        timeout: float = 1.0,
        frame_gap: float | None = None,
        wire_timed: bool = False,
    ) -> None:
        """Remember the port and its speed; nothing is opened until needed."""
        super().__init__(
            timeout=timeout, frame_gap=frame_gap, baudrate=baudrate, wire_timed=wire_timed
        )
        self.port = port
        self.baudrate = baudrate

    @property
    def where(self) -> str:
        """Return the port's path, for messages."""
        return self.port

    def _new_receiver(self) -> Receiver:
        return RtuReceiver(self.stats)

    async def _open_link(self, link: ModbusLink) -> None:
        try:
            # connection_made comes one loop turn later; keep the transport now.
            link.transport, _ = await serial_asyncio_fast.create_serial_connection(
                asyncio.get_running_loop(),
                lambda: link,
                self.port,
                baudrate=self.baudrate,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                exclusive=True,
            )
        except (OSError, ValueError) as err:
            raise serial_open_error(self.port, err) from err
