"""Energy in and out of the bank, integrated from its power between polls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, strategies as st
import pytest

from custom_components.rack_battery.bank.energy import EnergyMeter
from custom_components.rack_battery.bank.model import BankSnapshot, PackReading

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def test_steady_charge_and_discharge() -> None:
    """2,400 W for 30 min is 1.2 kWh in; then 1,200 W out for 15 min is 0.3 kWh."""
    meter = EnergyMeter()
    for step in range(181):  # every 10 s for 30 min
        meter.add(T0 + step * 10 * SECOND, 2400.0)
    assert meter.charged == pytest.approx(1.2)
    assert meter.discharged == 0.0
    start = T0 + timedelta(hours=1)
    for step in range(91):  # every 10 s for 15 min
        meter.add(start + step * 10 * SECOND, -1200.0)
    # The hour between the two runs was a gap: not counted.
    assert meter.charged == pytest.approx(1.2)
    assert meter.discharged == pytest.approx(0.3)


def test_a_ramp_is_counted_by_its_area() -> None:
    """From 0 W to 3,600 W in 60 s: a triangle of 3,600 x 60 / 2 = 108,000 Ws,
    which is 0.03 kWh."""
    meter = EnergyMeter()
    meter.add(T0, 0.0)
    meter.add(T0 + 60 * SECOND, 3600.0)
    assert meter.charged == pytest.approx(0.03)
    assert meter.discharged == 0.0


def test_a_turn_between_two_polls_is_split_at_the_crossing() -> None:
    """+1,000 W to -3,000 W in 40 s crosses zero after 40 x 1000 / 4000 = 10 s:
    1,000 x 10 / 2 = 5,000 Ws in, 3,000 x 30 / 2 = 45,000 Ws out."""
    meter = EnergyMeter()
    meter.add(T0, 1000.0)
    meter.add(T0 + 40 * SECOND, -3000.0)
    assert meter.charged == pytest.approx(5000 / 3_600_000)
    assert meter.discharged == pytest.approx(45000 / 3_600_000)
    # And the other way round.
    meter = EnergyMeter()
    meter.add(T0, -3000.0)
    meter.add(T0 + 40 * SECOND, 1000.0)
    assert meter.charged == pytest.approx(5000 / 3_600_000)
    assert meter.discharged == pytest.approx(45000 / 3_600_000)


def test_nothing_is_guessed_across_a_gap_or_an_unknown_power() -> None:
    meter = EnergyMeter(max_gap=timedelta(minutes=5))
    meter.add(T0, 5000.0)
    meter.add(T0 + timedelta(minutes=6), 5000.0)  # longer than the gap
    assert meter.charged == 0.0
    meter.add(T0 + timedelta(minutes=6, seconds=10), None)  # no pack reported power
    meter.add(T0 + timedelta(minutes=6, seconds=20), 5000.0)
    assert meter.charged == 0.0
    meter.add(T0 + timedelta(minutes=6, seconds=30), 5000.0)
    assert meter.charged == pytest.approx(5000 * 10 / 3_600_000)
    # A clock going back (a restore, a moved clock) adds nothing.
    meter.add(T0, 5000.0)
    assert meter.charged == pytest.approx(5000 * 10 / 3_600_000)


def test_update_takes_the_bank_power_from_a_snapshot() -> None:
    """Two packs at 52 V: +20 A and -5 A make 780 W in; for 10 s, 7,800 Ws."""

    def snapshot(when: datetime) -> BankSnapshot:
        return BankSnapshot(
            taken_at=when,
            readings={
                1: PackReading(address=1, voltage=52.0, current=20.0),
                2: PackReading(address=2, voltage=52.0, current=-5.0),
            },
            failed={},
        )

    meter = EnergyMeter()
    meter.update(snapshot(T0))
    meter.update(snapshot(T0 + 10 * SECOND))
    assert meter.charged == pytest.approx(7800 / 3_600_000)
    assert meter.discharged == 0.0


def test_totals_survive_storage_and_a_damaged_total_loses_only_itself() -> None:
    meter = EnergyMeter(charged=12.5, discharged=9.25)
    restored, dropped = EnergyMeter.from_dict(meter.to_dict())
    assert (restored.charged, restored.discharged) == (12.5, 9.25)
    assert dropped == []
    restored, dropped = EnergyMeter.from_dict({"charged": "lots", "discharged": 9.25})
    assert (restored.charged, restored.discharged) == (0.0, 9.25)
    assert dropped == ["charged: 'lots' unreadable, counted from zero"]
    restored, dropped = EnergyMeter.from_dict([1, 2])
    assert (restored.charged, restored.discharged) == (0.0, 0.0)
    assert dropped == ["not a mapping (list), counted from zero"]
    assert EnergyMeter.from_dict(None)[1] == []


@given(
    powers=st.lists(
        st.one_of(st.none(), st.floats(min_value=-20_000, max_value=20_000)), max_size=40
    ),
    steps=st.lists(st.integers(min_value=-30, max_value=600), min_size=40, max_size=40),
)
def test_totals_never_go_down(powers: list[float | None], steps: list[int]) -> None:
    """An energy dashboard cannot take a counter back: whatever the bank and
    the clock do, neither total ever decreases."""
    meter = EnergyMeter()
    when = T0
    for power, step in zip(powers, steps, strict=False):
        before = (meter.charged, meter.discharged)
        when += step * SECOND
        meter.add(when, power)
        assert meter.charged >= before[0]
        assert meter.discharged >= before[1]
