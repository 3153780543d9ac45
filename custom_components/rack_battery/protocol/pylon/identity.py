"""Decode what a pack says about itself: 0x51 (manufacturer info), 0x93 (serial).

The names are fixed-width ASCII fields; packs pad them with spaces or NUL
bytes, and nothing stops a firmware from leaving other junk in the padding,
so the text is cleaned rather than trusted. An empty field means the pack
did not say, which is ``None``, not an empty string.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FrameError
from .analog import InfoReader

DEVICE_NAME_BYTES = 10
SOFTWARE_VERSION_BYTES = 2
MANUFACTURER_NAME_BYTES = 20
SERIAL_BYTES = 16


@dataclass(frozen=True, slots=True)
class ManufacturerInfo:
    """The answer to 0x51."""

    device_name: str | None
    software_version: str | None
    manufacturer: str | None


def ascii_field(raw: bytes) -> str | None:
    """Return the text of a padded ASCII field, or None when it holds none.

    A NUL ends the text, as it would in the C string the firmware copied
    from; what follows it is left-over memory. Other bytes that are not
    printable ASCII are dropped, and the space padding is stripped.
    """
    raw = raw.split(b"\x00", 1)[0]
    text = "".join(chr(byte) for byte in raw if 0x20 <= byte < 0x7F).strip()
    return text or None


def decode_manufacturer_info(info: bytes) -> ManufacturerInfo:
    """Return the device name, software version and manufacturer of a 0x51 reply.

    The version is two bytes, major then minor, shown as "major.minor".
    """
    reader = InfoReader(info, "0x51")
    device_name = ascii_field(reader.take(DEVICE_NAME_BYTES, "the device name"))
    major, minor = reader.take(SOFTWARE_VERSION_BYTES, "the software version")
    manufacturer = ascii_field(reader.take(MANUFACTURER_NAME_BYTES, "the manufacturer name"))
    return ManufacturerInfo(
        device_name=device_name,
        software_version=f"{major}.{minor}",
        manufacturer=manufacturer,
    )


def decode_serial(info: bytes, *, expect_command: int | None = None) -> str | None:
    """Return the serial number in a 0x93 reply, or None if the pack sent a blank one.

    The reply echoes the command byte (the pack's address) before the
    sixteen serial characters; an echo of another address is someone else's
    answer and raises FrameError.
    """
    reader = InfoReader(info, "0x93")
    command = reader.unsigned(1, "the command byte")
    if expect_command is not None and command != expect_command:
        raise FrameError(f"0x93 reply is for command 0x{command:02X}, asked 0x{expect_command:02X}")
    return ascii_field(reader.take(SERIAL_BYTES, "the serial number"))
