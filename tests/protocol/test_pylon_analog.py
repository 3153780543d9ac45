"""The 0x42, 0x51 and 0x93 decoders on INFO written out byte by byte."""

from __future__ import annotations

import pytest

from custom_components.rack_battery.protocol.errors import FrameError
from custom_components.rack_battery.protocol.pylon.analog import decode_analog
from custom_components.rack_battery.protocol.pylon.identity import (
    ascii_field,
    decode_manufacturer_info,
    decode_serial,
)
from custom_components.rack_battery.protocol.pylon.profiles import PACE, SEPLOS_V2

# A 16-cell pack at ADR 3 with six temperatures, discharging at 4 A, written
# out field by field.
SIX_SENSOR_PACK = bytes.fromhex(
    "11"  # INFOFLAG
    "03"  # command = ADR 3
    "10"  # 16 cells
    + "0CE4"
    * 16  # 3300 mV each
    + "06"  # six temperatures
    "0BAA"  # board: 2986 -> 25.5 degC (the spec's own example)
    "0A2F"  # cells 1-4: 2607 -> -12.4 degC (the spec's own example)
    "0AAB"  # cells 5-8: 2731 -> 0.0 degC
    "0BAB"  # cells 9-12: 2987 -> 25.6 degC
    "0BA0"  # cells 13-16: 2976 -> 24.5 degC
    "0BC3"  # MOSFET: 3011 -> 28.0 degC
    "FFD8"  # current -40 counts of 100 mA = -4.0 A (the spec's own example)
    "D0DC"  # 53468 mV
    "C350"  # remaining 50000 mAh
    "02"  # two user-defined items
    "C350"  # total 50000 mAh
    "0190"  # 400 cycles
)


def test_six_sensor_pack() -> None:
    reading = decode_analog(SIX_SENSOR_PACK, address=3, expect_command=3)
    assert reading.cell_voltages == (3.3,) * 16
    assert reading.temperatures == (25.5, -12.4, 0.0, 25.6, 24.5)
    assert reading.mosfet_temperature == 28.0
    assert reading.current == -4.0  # discharging is negative
    assert reading.voltage == 53.468
    assert reading.remaining_capacity == 50.0
    assert reading.full_capacity == 50.0
    assert reading.soc == 100.0
    assert reading.cycles == 400


def test_reply_for_another_pack_is_refused() -> None:
    with pytest.raises(FrameError, match="0x42 reply is for command 0x03, asked 0x04"):
        decode_analog(SIX_SENSOR_PACK, address=4, expect_command=4)


def test_unimplemented_sentinels_become_unknown() -> None:
    info = bytes.fromhex(
        "11" "02"
        "02" "FFFF" "8000"  # two cells, neither measured
        "02" "FFFF" "8000"  # two temperatures, neither measured
        "8000"  # current not measured
        "FFFF"  # voltage not measured
        "FFFF"  # remaining not sent in 16 bits
        "04"
        "FFFF"  # total not sent in 16 bits
        "FFFF"  # cycles not counted
        "FFFFFF"  # remaining not sent in 24 bits either
        "FFFFFF"  # total neither
    )  # fmt: skip
    reading = decode_analog(info, address=2)
    assert reading.cell_voltages == (None, None)
    assert reading.temperatures == (None, None)
    assert reading.current is None
    assert reading.voltage is None
    assert reading.remaining_capacity is None
    assert reading.full_capacity is None
    assert reading.cycles is None
    assert reading.soc is None
    assert reading.power is None


def test_current_of_minus_a_tenth_is_a_value_not_a_sentinel() -> None:
    # 0xFFFF as a current is -1 count = -0.1 A, a real (small) discharge.
    info = bytes.fromhex("11020000FFFFC350C35000")
    reading = decode_analog(info, address=2)
    assert reading.current == -0.1
    assert reading.full_capacity is None  # no user-defined items at all
    assert reading.soc is None


def test_state_of_charge_is_capped_when_remaining_exceeds_total() -> None:
    info = bytes.fromhex("110200000000C350C41802C3500001")
    assert decode_analog(info, address=2).soc == 100.0


def test_zero_total_capacity_gives_no_state_of_charge() -> None:
    info = bytes.fromhex("110200000000C35000000200000001")
    assert decode_analog(info, address=2).soc is None


def test_trailing_items_beyond_the_profile_are_ignored() -> None:
    # Count 6 on a Pylontech profile that knows four items.
    info = bytes.fromhex(
        "1102" "00" "00" "0000" "C350" "FFFF" "06" "FFFF" "0005" "00C350" "0186A0" "ABCD" "EF"
    )  # fmt: skip
    reading = decode_analog(info, address=2)
    assert reading.remaining_capacity == 50.0
    assert reading.full_capacity == 100.0
    assert reading.soc == 50.0


@pytest.mark.parametrize(
    ("info_hex", "message"),
    [
        ("", "ends inside the flag byte"),
        ("11", "ends inside the command byte"),
        ("1102", "ends inside the cell count"),
        ("110210" + "0CE4" * 15, "ends inside cell 16 voltage"),
        ("11020100", "ends inside cell 1 voltage"),
        ("1102010CE405" + "0BAA" * 4, "ends inside temperature 5"),
        ("1102000000", "ends inside the current"),
        ("110200000000C350", "ends inside the remaining capacity"),
        ("110200000000C350C350", "ends inside the user-defined item count"),
        ("110200000000C350C35004FFFF0001", "ends inside user-defined item remaining_capacity"),
    ],
)
def test_short_info_raises_frame_error(info_hex: str, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        decode_analog(bytes.fromhex(info_hex), address=2)


def test_pace_profile_units() -> None:
    # The PACE document's example, from the flag byte on (its ADR/command
    # bytes are 00): 16 cells, 6 temperatures (the fifth is the MOSFET),
    # current in 10 mA, capacities in 10 mAh, temperatures offset by 2730.
    info = bytes.fromhex(
        "0000" "10"
        "0D370CE50D080CED0D060CE70D1D0CEB0CF80CFA0CFB0D070CE10CF10CC20D06"
        "06" "0BAA0BAC0BA60BA70BA90BB2"
        "0000" "CF94" "06D6" "03" "1388" "0000" "1388"
    )  # fmt: skip
    reading = decode_analog(info, address=0, profile=PACE, expect_command=0)
    assert reading.cell_voltages[0] == 3.383
    assert reading.temperatures == (25.6, 25.8, 25.2, 25.3, 26.4)
    assert reading.mosfet_temperature == 25.5
    assert reading.voltage == 53.14
    assert reading.remaining_capacity == 17.5
    assert reading.full_capacity == 50.0
    assert reading.design_capacity == 50.0
    assert reading.soc == 35.0


def test_seplos_profile_reads_its_own_state_of_charge() -> None:
    info = bytes.fromhex(
        "0001" "01" "0CE4" "01" "0BAA"
        "FE0C"  # -500 counts of 10 mA = -5.00 A
        "14C8"  # 5320 x 10 mV = 53.20 V
        "1388"  # 50.00 Ah
        "0A"
        "2710" "01F4" "2710" "0010" "03E8" "14C8" "0000" "0000" "0000" "0000"
    )  # fmt: skip
    reading = decode_analog(info, address=1, profile=SEPLOS_V2)
    assert reading.current == -5.0
    assert reading.voltage == 53.2
    assert reading.full_capacity == 100.0
    assert reading.soc == 50.0  # sent as 500 per mille, not derived
    assert reading.design_capacity == 100.0
    assert reading.cycles == 16
    assert reading.soh == 100.0


# ---------------------------------------------------------------------------
# 0x51 and 0x93


def test_manufacturer_info() -> None:
    info = (
        b"US3000C\x00\x00\x00"  # device name, NUL-padded to 10
        b"\x01\x04"  # software version 1.4
        b"PYLON               "  # manufacturer, space-padded to 20
    )
    maker = decode_manufacturer_info(info)
    assert maker.device_name == "US3000C"
    assert maker.software_version == "1.4"
    assert maker.manufacturer == "PYLON"


def test_manufacturer_info_too_short() -> None:
    with pytest.raises(FrameError, match="0x51 INFO ends inside the manufacturer name"):
        decode_manufacturer_info(b"US3000C   \x01\x04PYLON")


def test_serial_number() -> None:
    assert decode_serial(b"\x02PPTBH02012345678", expect_command=2) == "PPTBH02012345678"
    assert decode_serial(b"\x02" + b" " * 16) is None
    with pytest.raises(FrameError, match="0x93 reply is for command 0x02, asked 0x03"):
        decode_serial(b"\x02PPTBH02012345678", expect_command=3)
    with pytest.raises(FrameError, match="ends inside the serial number"):
        decode_serial(b"\x02PPTBH", expect_command=2)


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"US2000B   ", "US2000B"),
        (b"US2000B\x00\xff\xfe", "US2000B"),  # what follows a NUL is left-over memory
        (b"\x00\x00\x00", None),
        (b"US\x075000", "US5000"),  # a stray control byte is dropped
        (b"          ", None),
    ],
)
def test_ascii_field(raw: bytes, text: str | None) -> None:
    assert ascii_field(raw) == text
