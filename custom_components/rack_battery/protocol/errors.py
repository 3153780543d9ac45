"""The errors of the protocol layer.

Everything that goes wrong on a wire ends as one of these, so the layers
above can tell a pack that is silent from a bus that is down.
"""


class ProtocolError(Exception):
    """Base of every error the protocol layer raises."""


class FrameError(ProtocolError):
    """A frame arrived but is malformed: framing, checksum, length or content."""


class PackNotResponding(ProtocolError):
    """One pack did not answer; the bus itself is up."""


class BusUnavailable(ProtocolError):
    """The bus cannot be reached at all: nothing on it can answer."""


class SerialPortMissing(BusUnavailable):
    """The serial port does not exist: unplugged, or another name (ttyUSB1)."""


class SerialPortBusy(BusUnavailable):
    """Another program holds the serial port (a second integration, ModemManager)."""


class SerialPortDenied(BusUnavailable):
    """The serial port exists but may not be opened here (not in the dialout group)."""
