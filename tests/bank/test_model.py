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
