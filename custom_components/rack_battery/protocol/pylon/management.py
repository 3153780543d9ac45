"""Decode Pylontech's limits and versions: 0x47 (system parameters), 0x92, 0x96.

0x47 says where the pack's alarm and protection thresholds sit; 0x92 says
what the pack asks of the inverter right now (the limits an inverter obeys
on the CAN port too). Both send the discharge current limit as a negative
number -- discharge is negative on this wire -- where every other wire sends
it as a positive magnitude, so the magnitude is what is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FrameError
from .analog import InfoReader
from .profiles import PYLONTECH, VendorProfile

_UNSET_16 = 0xFFFF
_MIN_S16 = 0x8000


def _signed16(raw: int) -> int:
    return raw - 0x10000 if raw & 0x8000 else raw


def _millivolts(raw: int) -> float | None:
    return None if raw == _UNSET_16 else round(raw / 1000.0, 3)


def _amps_magnitude(raw: int) -> float | None:
    # One count is 100 mA, as for 0x42's current; the sign only says which way.
    if raw == _MIN_S16:
        return None
    return round(abs(_signed16(raw)) / 10.0, 1)


def _celsius(raw: int, profile: VendorProfile) -> float | None:
    if raw in (_UNSET_16, _MIN_S16):
        return None
    return round((raw - profile.temperature_offset) / 10.0, 1)


def _check_command(reader: InfoReader, what: str, expect_command: int | None) -> None:
    command = reader.unsigned(1, "the command byte")
    if expect_command is not None and command != expect_command:
        raise FrameError(
            f"{what} reply is for command 0x{command:02X}, asked 0x{expect_command:02X}"
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class SystemParameters:
    """The thresholds of 0x47, in V, degC and A (currents as magnitudes)."""

    cell_high_voltage: float | None
    cell_low_voltage: float | None  # alarm
    cell_under_voltage: float | None  # protection
    charge_high_temperature: float | None
    charge_low_temperature: float | None
    charge_current_limit: float | None
    pack_high_voltage: float | None
    pack_low_voltage: float | None  # alarm
    pack_under_voltage: float | None  # protection
    discharge_high_temperature: float | None
    discharge_low_temperature: float | None
    discharge_current_limit: float | None


def decode_system_parameters(
    info: bytes, *, profile: VendorProfile = PYLONTECH
) -> SystemParameters:
    """Return the thresholds in a 0x47 reply (a flag byte, then twelve 16-bit values)."""
    reader = InfoReader(info, "0x47")
    reader.unsigned(1, "the flag byte")

    def word(name: str) -> int:
        return reader.unsigned(2, name)

    return SystemParameters(
        cell_high_voltage=_millivolts(word("the cell high voltage limit")),
        cell_low_voltage=_millivolts(word("the cell low voltage limit")),
        cell_under_voltage=_millivolts(word("the cell under voltage limit")),
        charge_high_temperature=_celsius(word("the charge high temperature"), profile),
        charge_low_temperature=_celsius(word("the charge low temperature"), profile),
        charge_current_limit=_amps_magnitude(word("the charge current limit")),
        pack_high_voltage=_millivolts(word("the module high voltage limit")),
        pack_low_voltage=_millivolts(word("the module low voltage limit")),
        pack_under_voltage=_millivolts(word("the module under voltage limit")),
        discharge_high_temperature=_celsius(word("the discharge high temperature"), profile),
        discharge_low_temperature=_celsius(word("the discharge low temperature"), profile),
        discharge_current_limit=_amps_magnitude(word("the discharge current limit")),
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class ChargeManagement:
    """What 0x92 asks of the inverter now, in V and A (currents as magnitudes)."""

    charge_voltage_limit: float | None
    discharge_voltage_limit: float | None
    charge_current_limit: float | None
    discharge_current_limit: float | None
    charge_allowed: bool
    discharge_allowed: bool
    # "Charge immediately" at two state-of-charge bands, and the monthly
    # request for a full charge that recalibrates the pack's SoC.
    force_charge: bool
    full_charge_request: bool


def decode_charge_management(info: bytes, *, expect_command: int | None = None) -> ChargeManagement:
    """Return the limits and flags in a 0x92 reply (no flag byte: command first)."""
    reader = InfoReader(info, "0x92")
    _check_command(reader, "0x92", expect_command)
    charge_voltage = _millivolts(reader.unsigned(2, "the charge voltage limit"))
    discharge_voltage = _millivolts(reader.unsigned(2, "the discharge voltage limit"))
    charge_current = _amps_magnitude(reader.unsigned(2, "the charge current limit"))
    discharge_current = _amps_magnitude(reader.unsigned(2, "the discharge current limit"))
    status = reader.unsigned(1, "the charge and discharge status")
    return ChargeManagement(
        charge_voltage_limit=charge_voltage,
        discharge_voltage_limit=discharge_voltage,
        charge_current_limit=charge_current,
        discharge_current_limit=discharge_current,
        charge_allowed=bool(status & 0x80),
        discharge_allowed=bool(status & 0x40),
        force_charge=bool(status & 0x30),
        full_charge_request=bool(status & 0x08),
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class FirmwareVersion:
    """The two versions 0x96 reports: the vendor's own and the main line."""

    manufacturer: str
    main_line: str

    def __str__(self) -> str:
        """Return the main line version, the one Pylontech's tools show first."""
        return self.main_line


def decode_firmware(info: bytes, *, expect_command: int | None = None) -> FirmwareVersion:
    """Return the versions in a 0x96 reply: two bytes, then three, one number each."""
    reader = InfoReader(info, "0x96")
    _check_command(reader, "0x96", expect_command)
    manufacturer = reader.take(2, "the manufacturer version")
    main_line = reader.take(3, "the main line version")
    return FirmwareVersion(
        manufacturer=".".join(str(part) for part in manufacturer),
        main_line=".".join(str(part) for part in main_line),
    )


# The limits a 0x94 command may carry, as the wire's fields allow.
_MAX_VOLTS = 0xFFFE / 1000.0
_MAX_AMPS = 0x7FFF / 10.0


def encode_charge_management_command(
    command: int,
    *,
    charge_voltage: float,
    discharge_voltage: float,
    charge_current: float,
    discharge_current: float,
) -> bytes:
    """Return the INFO of a 0x94 request: the command byte, then four 16-bit limits.

    The layout is 0x92's without the status byte: voltages in mV, currents
    in 100 mA counts with the discharge limit negative, as 0x92 and 0x47
    send it on this wire. Currents are magnitudes here; 0 A asks the
    inverter to stop that way.
    """
    for name, value, most in (
        ("charge voltage", charge_voltage, _MAX_VOLTS),
        ("discharge voltage", discharge_voltage, _MAX_VOLTS),
        ("charge current", charge_current, _MAX_AMPS),
        ("discharge current", discharge_current, _MAX_AMPS),
    ):
        if not 0 <= value <= most:
            raise ValueError(f"the {name} limit {value} is outside 0..{most}")
    return (
        bytes((command,))
        + round(charge_voltage * 1000).to_bytes(2, "big")
        + round(discharge_voltage * 1000).to_bytes(2, "big")
        + round(charge_current * 10).to_bytes(2, "big", signed=True)
        + (-round(discharge_current * 10)).to_bytes(2, "big", signed=True)
    )
