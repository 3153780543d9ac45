"""Sentinels in the Pylon families are unknown; a 0x42 answer is known by its shape.

INFO strings are laid out by hand from the vendors' tables: Seplos V2's
ten user-defined items, PACE's three, Pylontech's 0x92.
"""

from __future__ import annotations

from hypothesis import given, strategies as st
import pytest

from custom_components.rack_battery.protocol.errors import FrameError
from custom_components.rack_battery.protocol.pylon.analog import (
    check_analog_shape,
    decode_analog,
    is_analog_shaped,
)
from custom_components.rack_battery.protocol.pylon.management import decode_charge_management
from custom_components.rack_battery.protocol.pylon.profiles import (
    PACE,
    PYLONTECH,
    SEPLOS_V2,
    VendorProfile,
)

# One cell, one temperature, -5.00 A, 53.20 V, residual 50.00 Ah (Seplos units).
_SEPLOS_HEAD = "0001010CE4010BAAFE0C14C81388"


def test_seplos_v2_items_not_measured_are_unknown() -> None:
    info = bytes.fromhex(
        _SEPLOS_HEAD + "0A"
        "FFFF"  # battery capacity
        "FFFF"  # SoC
        "FFFF"  # rated capacity
        "FFFF"  # cycles
        "FFFF"  # SoH
        "FFFF"  # port voltage
        "0000" "0000" "0000" "0000"
    )  # fmt: skip
    reading = decode_analog(info, address=1, profile=SEPLOS_V2)
    assert (reading.full_capacity, reading.design_capacity) == (None, None)
    assert (reading.soc, reading.soh, reading.cycles) == (None, None, None)
    assert reading.remaining_capacity == 50.0  # what was measured stays
    check_analog_shape(info, SEPLOS_V2)


def test_pace_items_not_measured_are_unknown() -> None:
    info = bytes.fromhex(
        "0001" "01" "0CE4" "01" "0BAA"
        "8000"  # current not measured
        "FFFF"  # pack voltage not measured
        "FFFF"  # remaining not measured
        "03" "FFFF" "FFFF" "FFFF"  # full, cycles, design
    )  # fmt: skip
    reading = decode_analog(info, address=1, profile=PACE)
    assert (reading.current, reading.voltage, reading.remaining_capacity) == (None, None, None)
    assert (reading.full_capacity, reading.cycles, reading.design_capacity) == (None, None, None)
    assert reading.soc is None


def test_pylontech_limits_not_set_are_unknown() -> None:
    # 0x92: command 02, charge and discharge voltage 0xFFFF, currents 0x8000.
    limits = decode_charge_management(bytes.fromhex("02FFFFFFFF80008000C0"), expect_command=2)
    assert limits.charge_voltage_limit is None
    assert limits.discharge_voltage_limit is None
    assert limits.charge_current_limit is None
    assert limits.discharge_current_limit is None
    assert (limits.charge_allowed, limits.discharge_allowed) == (True, True)


# Pylontech, count 2: full 50000 mAh, 400 cycles; one cell, no temperatures.
_PYLONTECH = "1102010CE40000000CE4C35002C3500190"


def test_a_pylontech_answer_has_the_shape_of_one() -> None:
    check_analog_shape(bytes.fromhex(_PYLONTECH), PYLONTECH)


@pytest.mark.parametrize(
    ("info_hex", "message"),
    [
        # A Seplos 0x44 answer (cells' and sensors' status bytes, twenty
        # event bytes) read as 0x42: its last event byte is the item count.
        (
            "000110" + "00" * 16 + "06" + "00" * 6 + "000014" + "00" * 6 + "03" + "00" * 13,
            "0 user-defined items, seplos_v2 sends at least 10",
        ),
        (_PYLONTECH + "00", "runs 1 bytes past its last user-defined item"),
        ("1102010CE40000000CE4C35001C350", "sends at least 2"),
        ("1102010CE4", "ends inside the temperature count"),
    ],
)
def test_what_is_not_shaped_as_a_0x42_answer(info_hex: str, message: str) -> None:
    profile = SEPLOS_V2 if info_hex.startswith("0001") else PYLONTECH
    with pytest.raises(FrameError, match=message):
        check_analog_shape(bytes.fromhex(info_hex), profile)
    assert not is_analog_shaped(bytes.fromhex(info_hex), profile)


def test_items_past_those_known_are_tolerated() -> None:
    # Count 6 on a profile that knows four: the rest of INFO is not judged.
    info = bytes.fromhex(
        "1102" "00" "00" "0000" "C350" "FFFF" "06" "FFFF" "0005" "00C350" "0186A0" "ABCD" "EF"
    )  # fmt: skip
    assert is_analog_shaped(info, PYLONTECH)


@given(st.binary(max_size=400), st.sampled_from((PYLONTECH, PACE, SEPLOS_V2)))
def test_the_shape_check_on_arbitrary_info(info: bytes, profile: VendorProfile) -> None:
    if is_analog_shaped(info, profile):
        # What passes as a 0x42 answer decodes as one.
        decode_analog(info, address=info[1], profile=profile, expect_command=info[1])
