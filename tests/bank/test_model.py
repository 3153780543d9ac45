"""The bank's totals over the packs that answered."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from custom_components.rack_battery.bank.model import BankSnapshot, PackReading

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _bank(*readings: PackReading) -> BankSnapshot:
    return BankSnapshot(
        taken_at=NOW, readings={reading.address: reading for reading in readings}, failed={}
    )


def test_soc_is_weighted_by_capacity() -> None:
    """100 Ah at 50 % and 50 Ah at 100 % hold 100 Ah of 150: 66.7 %, not 75 %."""
    bank = _bank(
        PackReading(address=1, soc=50.0, full_capacity=100.0),
        PackReading(address=2, soc=100.0, full_capacity=50.0),
    )
    assert bank.soc == pytest.approx(66.67, abs=0.01)


def test_soc_without_capacities_is_the_plain_mean() -> None:
    """Where no pack reports a capacity, the mean is all there is."""
    assert _bank(PackReading(address=0, soc=40.0)).soc == 40.0
    assert _bank(PackReading(address=1, soc=40.0), PackReading(address=2, soc=60.0)).soc == 50.0


def test_unknown_values_stay_unknown() -> None:
    """A bank whose packs report nothing shows unknown, never zero."""
    bank = _bank(PackReading(address=1), PackReading(address=2))
    assert bank.soc is None
    assert bank.voltage is None
    assert bank.current is None
    assert bank.power is None
    assert bank.remaining_capacity is None
    assert bank.packs_online == 2


def test_power_is_positive_while_charging() -> None:
    """Power follows the BMS's sign: charge is positive."""
    bank = _bank(
        PackReading(address=1, voltage=52.0, current=10.0),
        PackReading(address=2, voltage=52.0, current=-4.0),
    )
    assert bank.power == pytest.approx(312.0)
    assert bank.current == pytest.approx(6.0)
    assert bank.voltage == pytest.approx(52.0)


def test_spreads_are_between_the_packs_that_answered() -> None:
    """52.10 V and 52.45 V: 0.35 V apart; 60 % and 81 %: 21 points apart.
    A pack that reports no voltage is not counted as 0 V."""
    bank = _bank(
        PackReading(address=1, voltage=52.10, soc=60.0),
        PackReading(address=2, voltage=52.45, soc=81.0),
        PackReading(address=3, soc=70.0),
    )
    assert bank.voltage_spread == pytest.approx(0.35)
    assert bank.soc_spread == pytest.approx(21.0)
    # One pack has nothing to differ from.
    alone = _bank(PackReading(address=1, voltage=52.1, soc=60.0))
    assert alone.voltage_spread is None
    assert alone.soc_spread is None


def test_time_to_empty_and_to_full_follow_the_current() -> None:
    """Two packs hold 60 + 90 = 150 Ah of 200 Ah. Discharging at 12 + 18 =
    30 A, that lasts 150 / 30 = 5 h; charging at 25 A, the 50 Ah missing
    take 50 / 25 = 2 h. At rest, neither is given."""

    def bank(first: float, second: float) -> BankSnapshot:
        return _bank(
            PackReading(address=1, current=first, remaining_capacity=60, full_capacity=100),
            PackReading(address=2, current=second, remaining_capacity=90, full_capacity=100),
        )

    discharging = bank(-12.0, -18.0)
    assert discharging.time_to_empty == pytest.approx(5.0)
    assert discharging.time_to_full is None
    charging = bank(10.0, 15.0)
    assert charging.time_to_full == pytest.approx(2.0)
    assert charging.time_to_empty is None
    # Parasitic currents between packs at rest: 3 A one way, 2.5 A back.
    resting = bank(3.0, -2.5)
    assert resting.time_to_empty is None
    assert resting.time_to_full is None
