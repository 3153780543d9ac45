"""The Pylontech CAN decoders on frames written out byte by byte from the vendor table.

Every field is little-endian (the document says so once, on its bus page);
the arithmetic for each byte is in the comments.
"""

from __future__ import annotations

import pytest

from custom_components.rack_battery.protocol.drivers.pylontech_can import (
    DATABASE,
    bank_identity,
    decode_bank,
    decode_frame,
    protocol_version,
)
from custom_components.rack_battery.protocol.errors import FrameError

# A V1.2 bank of six modules, discharging, with one protection and two
# alarms raised.
V12_FRAMES = {
    # 0x351: charge voltage 53.2 V -> 532 = 0x0214 -> 14 02;
    # charge limit 150.0 A -> 1500 = 0x05DC -> DC 05;
    # discharge limit 300.0 A -> 3000 = 0x0BB8 -> B8 0B (POSITIVE on CAN);
    # discharge voltage 45.0 V -> 450 = 0x01C2 -> C2 01 (bytes 6-7, beyond the table).
    0x351: bytes.fromhex("1402DC05B80BC201"),
    # 0x355: SoC 88 % = 0x0058 -> 58 00; SoH 94 % = 0x005E -> 5E 00.
    0x355: bytes.fromhex("58005E00"),
    # 0x356: voltage 49.86 V -> 4986 = 0x137A -> 7A 13;
    # current -27.0 A -> -270 -> 0x10000 - 270 = 0xFEF2 -> F2 FE (discharging);
    # temperature 36.3 degC -> 363 = 0x016B -> 6B 01.
    0x356: bytes.fromhex("7A13F2FE6B01"),
    # 0x359: byte 0 = 0x08 (table 1 bit 3, cell over temperature);
    # byte 1 = 0x00; byte 2 = 0x04 (table 3 bit 2, cell or module low voltage);
    # byte 3 = 0x08 (table 4 bit 3, internal communication fail);
    # byte 4 = 6 modules; bytes 5-6 "P" = 0x50, "N" = 0x4E.
    0x359: bytes.fromhex("08000408") + bytes([6]) + b"PN",
    # 0x35C: byte 0 = 0xC0 = bit 7 (charge enable) + bit 6 (discharge enable).
    0x35C: bytes.fromhex("C000"),
    # 0x35E: "PYLON" and three spaces.
    0x35E: b"PYLON   ",
}

# A V1.3 bank: no 0x359 or 0x35C; 0x35A and 0x35F instead; 0x355 six bytes.
V13_FRAMES = {
    0x351: bytes.fromhex("1402DC05B80BC201"),
    # 0x355: SoC 84 % -> 54 00; SoH 96 % -> 60 00; two more bytes of zero.
    0x355: bytes.fromhex("540060000000"),
    0x356: bytes.fromhex("7A13F2FE6B01"),
    # 0x35A, two bits a condition (01 raised, 10 normal, 00 not supported):
    # byte 0 = 0b0000_0110: bits 0-1 = 10 general alarm normal,
    #   bits 2-3 = 01 high voltage ALARM raised;
    # byte 5 = 0x10: bits 4-5 of byte 5 (bits 44-45) = 01, low temperature
    #   charge WARNING raised;
    # byte 7 = 0x01: bits 0-1 of byte 7 (bits 56-57) = 01, cell imbalance WARNING.
    0x35A: bytes.fromhex("0600000000100001"),
    0x35E: b"PYLON   ",
    # 0x35F: "L" "I"; hardware 1.3; capacity 0x023C = 572 Ah -> 3C 02;
    # software 0x00AA = 170 -> AA 00.
    0x35F: bytes.fromhex("4C4901033C02AA00"),
}


def test_v12_bank_reading() -> None:
    reading, bank = decode_bank(V12_FRAMES)
    assert reading.address == 0
    assert reading.voltage == pytest.approx(49.86)
    assert reading.current == pytest.approx(-27.0)  # discharging is negative
    assert reading.temperatures == pytest.approx((36.3,))
    assert reading.soc == 88
    assert reading.soh == 94
    assert reading.charge_voltage_limit == pytest.approx(53.2)
    assert reading.charge_current_limit == pytest.approx(150.0)
    assert reading.discharge_current_limit == pytest.approx(300.0)
    assert reading.discharge_voltage_limit == pytest.approx(45.0)
    assert reading.charge_enabled is True
    assert reading.discharge_enabled is True
    # V1.2 tells no capacity: nothing is made up.
    assert reading.full_capacity is None
    assert reading.remaining_capacity is None
    # A cell temperature limit stops both directions.
    assert reading.protections == {
        "charge_overtemperature",
        "discharge_overtemperature",
        "internal_communication_fault",
    }
    assert reading.warnings == {"cell_undervoltage"}
    assert bank.protocol_version == "1.2"
    assert bank.manufacturer == "PYLON"
    assert bank.module_count == 6
    assert bank.force_charge_requested is False
    assert bank.full_charge_requested is False


def test_v13_bank_reading() -> None:
    reading, bank = decode_bank(V13_FRAMES)
    assert reading.soc == 84
    assert reading.soh == 96
    assert reading.protections == {"pack_overvoltage"}
    assert reading.warnings == {"charge_undertemperature", "cell_imbalance"}
    # 0x35C is gone in V1.3: the FET states are unknown, not "off".
    assert reading.charge_enabled is None
    assert reading.discharge_enabled is None
    assert reading.full_capacity == 572.0
    assert reading.remaining_capacity == pytest.approx(480.5)  # 572 Ah x 84 % = 480.48
    assert bank.protocol_version == "1.3"
    assert bank.module_count is None
    assert bank.chemistry == "LI"
    assert bank.hardware_version == "1.3"
    assert bank.software_version == 170
    identity = bank_identity(bank)
    assert identity.manufacturer == "PYLON"
    assert identity.model is not None
    assert "V1.3" in identity.model
    assert identity.key == "slot_0"


def test_v12_identity_names_the_module_count() -> None:
    _, bank = decode_bank(V12_FRAMES)
    identity = bank_identity(bank)
    assert identity.family == "pylontech_can"
    assert identity.model == "Bank (6 modules, CAN protocol V1.2)"


def test_a_negative_discharge_limit_is_still_a_magnitude() -> None:
    # A clone that follows the RS485 habit: -100.0 A -> -1000 -> 0xFC18 -> 18 FC.
    frames = {**V12_FRAMES, 0x351: bytes.fromhex("1402DC0518FCC201")}
    reading, _ = decode_bank(frames)
    assert reading.discharge_current_limit == pytest.approx(100.0)


def test_the_2018_table_has_no_discharge_voltage() -> None:
    frames = {**V12_FRAMES, 0x351: bytes.fromhex("1402DC05B80B")}
    reading, _ = decode_bank(frames)
    assert reading.discharge_voltage_limit is None
    assert reading.discharge_current_limit == pytest.approx(300.0)


def test_version_is_told_by_the_frames() -> None:
    assert protocol_version(V12_FRAMES) == "1.2"
    assert protocol_version(V13_FRAMES) == "1.3"
    # A six-byte 0x355 alone is enough to tell V1.3.
    assert protocol_version({0x355: bytes(6)}) == "1.3"


def test_an_impossible_state_of_charge_is_unknown() -> None:
    # 0x00FF = 255 % is no reading.
    frames = {**V12_FRAMES, 0x355: bytes.fromhex("FF005E00")}
    reading, _ = decode_bank(frames)
    assert reading.soc is None
    assert reading.soh == 94


def test_missing_frames_leave_fields_unknown() -> None:
    reading, bank = decode_bank({0x356: V12_FRAMES[0x356]})
    assert reading.voltage == pytest.approx(49.86)
    assert reading.soc is None
    assert reading.charge_voltage_limit is None
    assert reading.warnings == frozenset()
    assert bank.manufacturer is None


@pytest.mark.parametrize(
    ("arbitration_id", "data"),
    [
        (0x356, bytes.fromhex("7A13F2FE")),  # temperature cut off
        (0x355, bytes.fromhex("5800")),  # SoH cut off
        (0x351, bytes(9)),  # longer than a classic CAN frame
        (0x359, bytes(4)),  # module count cut off
        (0x123, bytes(8)),  # not a Pylontech frame
    ],
)
def test_malformed_frames_raise_frame_error(arbitration_id: int, data: bytes) -> None:
    with pytest.raises(FrameError):
        decode_frame(arbitration_id, data)


def test_the_dbc_keeps_every_field_where_the_vendor_table_puts_it() -> None:
    """Start bits and scales of the DBC, against the document's byte table."""
    limits = DATABASE.get_message_by_frame_id(0x351)
    fields = {
        signal.name: (signal.start, signal.length, signal.scale, signal.is_signed)
        for signal in limits.signals
    }
    assert fields["ChargeVoltage"] == (0, 16, 0.1, False)
    assert fields["ChargeCurrentLimit"] == (16, 16, 0.1, True)
    assert fields["DischargeCurrentLimit"] == (32, 16, 0.1, True)
    measured = DATABASE.get_message_by_frame_id(0x356)
    assert {signal.name: signal.scale for signal in measured.signals} == {
        "Voltage": 0.01,
        "Current": 0.1,
        "Temperature": 0.1,
    }
    assert all(
        signal.byte_order == "little_endian"
        for message in DATABASE.messages
        for signal in message.signals
    )
