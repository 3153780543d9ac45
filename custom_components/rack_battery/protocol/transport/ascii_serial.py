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
import errno
from typing import Final

import serial
import serial_asyncio_fast

from ..errors import BusUnavailable, SerialPortBusy, SerialPortDenied, SerialPortMissing
from .ascii_stream import READ_LIMIT, AsciiStreamTransport

_MISSING: Final = frozenset({errno.ENOENT, errno.ENODEV, errno.ENXIO})
_DENIED: Final = frozenset({errno.EACCES, errno.EPERM})
_BUSY: Final = frozenset({errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK})


def serial_open_error(port: str, err: OSError | serial.SerialException) -> BusUnavailable:
    """Return the error that says why ``port`` could not be opened."""
    code = getattr(err, "errno", None)
    if code in _MISSING:
        return SerialPortMissing(f"serial port {port} does not exist")
    if code in _DENIED:
        return SerialPortDenied(f"no permission to open serial port {port}")
    if code in _BUSY:
        return SerialPortBusy(f"serial port {port} is in use by another program")
    return BusUnavailable(f"cannot open serial port {port}: {err}")


class AsciiSerialTransport(AsciiStreamTransport):
    """One serial port, one transaction on it at a time."""

    def __init__(self, port: str, *, baudrate: int = 9600, timeout: float = 1.0) -> None:
        """Remember the port and its speed; nothing is opened until needed."""
        super().__init__(timeout=timeout)
        self.port = port
        self.baudrate = baudrate

    @property
    def where(self) -> str:
        """Return the port's name, for messages."""
        return self.port

    async def _open_streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await serial_asyncio_fast.open_serial_connection(
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
