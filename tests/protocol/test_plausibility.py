"""The plausibility screen, with readings worked by hand.

Each case is a reading a 48 V pack could not report, and what must be left
of it: the impossible value unknown, the rest untouched.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from custom_components.rack_battery.bank.model import PackReading
from custom_components.rack_battery.protocol.plausibility import screen

# Sixteen LFP cells at 3.3 V: 52.8 V.
SOUND = PackReading(
    address=1,
    voltage=52.8,
    current=-40.0,
    soc=80.0,
    soh=98.0,
    remaining_capacity=80.0,
    full_capacity=100.0,
    design_capacity=100.0,
    cycles=250,
    cell_voltages=(3.3,) * 16,
    temperatures=(25.0, 26.0, 24.5, 25.5),
    mosfet_temperature=31.0,
    charge_voltage_limit=56.0,
    discharge_voltage_limit=44.8,
    charge_current_limit=100.0,
    discharge_current_limit=100.0,
)


def test_a_sound_reading_passes_untouched() -> None:
    result = screen(SOUND)
    assert result.reading is SOUND
    assert not result.suspect


def test_unknowns_are_not_suspect() -> None:
    result = screen(PackReading(address=1, cell_voltages=(None, 3.3), temperatures=(None,)))
    assert not result.suspect


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("voltage", 0.0),  # a zero filler
        ("voltage", 655.35),  # 0xFFFF in 10 mV
        ("voltage", 19.9),
        ("voltage", 70.1),
        ("current", 2000.1),
        ("current", -327.68 * 10),  # 0x8000 in 100 mA
        ("soc", 100.1),
        ("soc", -0.1),
        ("soh", 6553.5),  # 0xFFFF per mille
        ("remaining_capacity", 10_000.1),
        ("full_capacity", -1.0),
        ("design_capacity", 167772.15),  # 0xFFFFFF in 10 mAh
        ("cycles", 100_001),
        ("mosfet_temperature", -273.1),  # 0 in 0.1 K from 2731
        ("mosfet_temperature", 120.1),
        ("charge_voltage_limit", 0.0),
        ("discharge_current_limit", 3276.7),
    ],
)
def test_an_impossible_value_becomes_unknown(field: str, value: float) -> None:
    changed: dict[str, Any] = {field: value}
    result = screen(replace(SOUND, **changed))
    assert getattr(result.reading, field) is None
    assert result.rejected == (field,)
    # Nothing else changed.
    assert replace(result.reading, **{field: getattr(SOUND, field)}) == SOUND


def test_bounds_are_inclusive() -> None:
    edge = replace(
        SOUND,
        soc=100.0,
        soh=0.0,
        current=-2000.0,
        cycles=100_000,
        temperatures=(-50.0, 120.0),
        cell_voltages=(1.0, 5.0),
        voltage=None,
    )
    assert not screen(edge).suspect


def test_impossible_cells_and_temperatures_are_unknown_one_by_one() -> None:
    # A late alarm reply read as values: status bytes as millivolts, and a
    # zero in a kelvin field.
    reading = PackReading(
        address=0,
        voltage=None,
        cell_voltages=(0.0, 3.301, 6.5, 3.299),
        temperatures=(-273.1, 25.0),
    )
    result = screen(reading)
    assert result.reading.cell_voltages == (None, 3.301, None, 3.299)
    assert result.reading.temperatures == (None, 25.0)
    assert result.rejected == ("cell_voltages", "temperatures")


def test_pack_voltage_far_from_its_cells_is_unknown() -> None:
    # 16 x 3.3 V = 52.8 V; 10 % of that is 5.28 V: 47.52 V is the edge.
    assert screen(replace(SOUND, voltage=47.6)).reading.voltage == 47.6
    assert screen(replace(SOUND, voltage=58.0)).reading.voltage == 58.0
    result = screen(replace(SOUND, voltage=45.0))
    assert result.reading.voltage is None
    assert result.rejected == ("voltage",)


def test_a_few_cells_get_the_minimum_tolerance() -> None:
    # Four cells reported, 13.2 V: within 3 V, not within 10 %.
    reading = PackReading(address=1, voltage=20.0, cell_voltages=(3.3,) * 4)
    assert screen(reading).reading.voltage is None
    reading = PackReading(address=1, voltage=20.0, cell_voltages=(4.3,) * 4)  # 17.2 V
    assert screen(reading).reading.voltage == 20.0


def test_the_sum_is_only_checked_against_a_full_set_of_cells() -> None:
    # One cell impossible: the rest do not say what the pack must read.
    reading = PackReading(address=1, voltage=30.0, cell_voltages=(0.0,) + (3.3,) * 15)
    result = screen(reading)
    assert result.reading.voltage == 30.0
    assert result.rejected == ("cell_voltages",)
