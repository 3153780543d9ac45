"""The errors of the protocol layer.

Everything that goes wrong on a wire ends as one of these, so the layers
above can tell a pack that is silent from a bus that is down.
"""

from __future__ import annotations

import errno
from typing import Final

_MISSING: Final = frozenset({errno.ENOENT, errno.ENODEV, errno.ENXIO})
_DENIED: Final = frozenset({errno.EACCES, errno.EPERM})
_BUSY: Final = frozenset({errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK})


class ProtocolError(Exception):
    """Base of every error the protocol layer raises."""


class FrameError(ProtocolError):
    """A frame arrived but is malformed: framing, checksum, length or content."""


class PackNotResponding(ProtocolError):
    """One pack did not answer; the bus itself is up."""


class ControlNotSupported(ProtocolError):
    """The pack's BMS, or this wire, offers no way to make the change asked for."""


class WriteRefused(ProtocolError):
    """The BMS answered a write, and the answer says it did not take it."""


class BusUnavailable(ProtocolError):
    """The bus cannot be reached at all: nothing on it can answer."""


class SerialPortMissing(BusUnavailable):
    """The serial port does not exist: unplugged, or another name (ttyUSB1)."""


class SerialPortBusy(BusUnavailable):
    """Another program holds the serial port (a second integration, ModemManager)."""


class SerialPortDenied(BusUnavailable):
    """The serial port exists but may not be opened here (not in the dialout group)."""


def serial_open_error(port: str, err: OSError | ValueError) -> BusUnavailable:
    """Return the error that says why opening a serial port failed.

    pyserial reports a failed open and a failed exclusive lock as
    SerialException (an OSError) carrying the errno of the system call; it
    reports a malformed setting as ValueError, which carries none.
    """
    code = err.errno if isinstance(err, OSError) else None
    if code in _MISSING:
        return SerialPortMissing(f"serial port {port} does not exist")
    if code in _DENIED:
        return SerialPortDenied(f"no permission to open serial port {port}")
    if code in _BUSY:
        return SerialPortBusy(f"serial port {port} is in use by another program")
    return BusUnavailable(f"cannot open serial port {port}: {err}")
