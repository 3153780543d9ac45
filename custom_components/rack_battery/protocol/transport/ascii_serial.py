"""Carry Pylon ASCII frames on a serial port (a USB RS485 adapter).

Finding frames in the byte stream is the same as through a TCP gateway and
lives in :mod:`.ascii_stream`; this module only opens the port. The port is
opened exclusively: a second program on the same RS485 line (another
integration, ModemManager probing a new ttyUSB) would interleave its
requests with ours and both would read each other's answers.

Opening can fail in three ways that a user fixes differently, so each gets
its own error: the port does not exist (unplugged, or renamed to ttyUSB1),
another program holds it, or this process may not open it (not in the
dialout group). The open itself runs in an executor: pyserial configures the
port with blocking system calls.
"""

from __future__ import annotations

import asyncio

import serial
import serial_asyncio_fast

from ..errors import serial_open_error
from .ascii_stream import READ_LIMIT, AsciiStreamTransport


class AsciiSerialTransport(AsciiStreamTransport):
    """One serial port, one transaction on it at a time."""

    def __init__(
        self, port: str, *, baudrate: int = 9600, timeout: float = 1.0, wire_timed: bool = False
    ) -> None:
        """Remember the port and its speed; nothing is opened until needed."""
        super().__init__(timeout=timeout, baudrate=baudrate, wire_timed=wire_timed)
        self.port = port
        self.baudrate = baudrate

    @property
    def where(self) -> str:
        """Return the port's name, for messages."""
        return self.port

    async def _open_streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader: asyncio.StreamReader
        writer: asyncio.StreamWriter
        try:
            reader, writer = await serial_asyncio_fast.open_serial_connection(
                url=self.port,
                baudrate=self.baudrate,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                exclusive=True,
                limit=READ_LIMIT,
            )
        except (OSError, serial.SerialException) as err:
            raise serial_open_error(self.port, err) from err
        return reader, writer
