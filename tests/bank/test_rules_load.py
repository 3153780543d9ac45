"""Current sharing, internal resistance and temperature, from the simulator."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from custom_components.rack_battery.bank.analysis import (
    AnalysisResult,
    BankAnalyzer,
    Severity,
    Thresholds,
)
from simulator import faults
from simulator.bank import constant_load, make_bank, step_load

from .sim import START, Scenario, quiet_bank, snap

MIN = timedelta(minutes=1)
STEPS = step_load([(120, 10.0), (120, 50.0), (120, -30.0)])


def test_a_pack_behind_a_loose_terminal_takes_less_than_its_share() -> None:
    bank = quiet_bank(4)
    bank.load = STEPS
    scenario = Scenario(bank)
    scenario.run(20 * MIN)
    fault = faults.LooseTerminal(address=3, noise=0.0)  # resistance only
    fault.apply(bank)
    # "Persistently": the median of the last 20 load steps must turn (about 10
    # steps, 20 minutes here), then stay low for 15 minutes before it is raised.
    took = scenario.run_until(
        lambda result: "low_current_share_pack_3" in {f.id for f in result.raised},
        limit=timedelta(hours=2),
    )
    assert 30 * MIN <= took <= 50 * MIN
    finding = scenario.open("low_current_share_pack_3")
    assert finding is not None
    assert finding.severity is Severity.WARNING
    assert finding.address == 3
    # Its share of the load follows its share of the bank's conductance.
    conductance = {p.address: 1.0 / p.resistance for p in bank.packs}
    expected = 100.0 * conductance[3] / sum(conductance.values())
    assert finding.values["current_share"] == pytest.approx(expected, abs=1.0)
    capacity = {p.address: p.full_capacity for p in bank.packs}
    assert finding.values["capacity_share"] == pytest.approx(
        100.0 * capacity[3] / sum(capacity.values()), abs=0.1
    )
    assert finding.values["ratio"] < 0.5  # type: ignore[operator]
    assert [f.id for f in scenario.raised if f.rule == "low_current_share"] == [
        "low_current_share_pack_3"
    ]

    fault.remove(bank)
    scenario.run(60 * MIN)
    assert scenario.open("low_current_share_pack_3") is None


def test_an_emptier_pack_is_not_taken_for_a_bad_connection() -> None:
    # make_bank's packs are 55-65 % charged: at a steady load the emptier
    # ones carry visibly less, but their share of every load step is fair.
    bank = make_bank(4, seed=1, load=STEPS)
    scenario = Scenario(bank)
    scenario.run(2 * timedelta(hours=1))
    assert not [f for f in scenario.raised if f.rule == "low_current_share"]
    shares = {a: scenario.analyzer._sharing.shares(a)[-1] for a in (1, 2, 3, 4)}
    assert sum(shares.values()) == pytest.approx(1.0)


def test_shares_need_load_steps() -> None:
    bank = quiet_bank(4)
    bank.load = constant_load(40.0)
    scenario = Scenario(bank)
    faults.LooseTerminal(address=3, noise=0.0).apply(bank)
    scenario.run(timedelta(hours=2))
    assert scenario.analyzer._sharing.shares(3) == []
    assert scenario.open("low_current_share_pack_3") is None


def test_an_aged_pack_shows_high_internal_resistance() -> None:
    bank = quiet_bank(4)
    bank.load = STEPS
    scenario = Scenario(bank)
    fault = faults.Aging(address=2, resistance_growth=1.5, capacity_fade=0.0, cycles=None)
    fault.apply(bank)
    scenario.run(timedelta(hours=1))
    # A pack whose own resistance grew also takes less of the load; a bad
    # connection (above) shows only the second.
    assert scenario.open_ids() == {"high_resistance_pack_2", "low_current_share_pack_2"}
    finding = scenario.open("high_resistance_pack_2")
    assert finding is not None
    pack = bank.pack(2)
    # The BMS measures at its own terminals: dV/dI is the pack's internal resistance.
    assert finding.values["resistance_mohm"] == pytest.approx(
        1000 * pack.internal_resistance, rel=0.05
    )
    others = sorted(p.internal_resistance for p in bank.packs if p.address != 2)
    assert finding.values["ratio"] > 1.5  # type: ignore[operator]
    assert finding.values["bank_median_mohm"] > 1000 * others[0]  # type: ignore[operator]

    estimates = scenario.analyzer.resistance_estimates()
    assert set(estimates) == {1, 2, 3, 4}
    for address, estimate in estimates.items():
        assert estimate.ohms == pytest.approx(bank.pack(address).internal_resistance, rel=0.05)

    fault.remove(bank)
    scenario.run(timedelta(hours=1))
    assert scenario.open_ids() == set()


def test_resistance_trend_is_daily_bounded_and_survives_a_restart() -> None:
    analyzer = BankAnalyzer(Thresholds(raise_after_minutes=0))
    now = START
    for day in range(400):
        for step in range(4):
            now = START + timedelta(days=day, seconds=30 * step)
            current = -10.0 if step % 2 else -40.0
            packs = {
                1: {"voltage": 52.0 + current * 0.012, "current": current},
                2: {"voltage": 52.0 + current * (0.012 + day * 1e-5), "current": current},
            }
            analyzer.update(snap(now, packs), {}, now)
    trend = analyzer.resistance_estimates()[2].trend
    assert len(trend) == 365  # a year, the oldest dropped
    assert trend[-1][1] > trend[0][1]  # it grew

    stored = analyzer.resistance.trend_to_dict()
    other = BankAnalyzer()
    assert other.resistance.restore_trend(stored) == 0
    assert other.resistance.trend_to_dict() == stored
    assert other.resistance.restore_trend({"x": [], "3": "bad", "4": [["?", 1], []]}) == 4
    assert other.resistance.restore_trend(None) == 0
    assert other.resistance.restore_trend("corrupt") == 1


def test_a_hot_pack_is_named_against_limit_and_against_the_others() -> None:
    bank = quiet_bank(4)
    bank.load = constant_load(40.0)
    scenario = Scenario(bank)
    fault = faults.HotPack(address=4, ambient=52.0)
    fault.apply(bank)
    scenario.run(6 * MIN)
    assert scenario.open_ids() == {"high_temperature_pack_4", "temperature_outlier_pack_4"}
    high = scenario.open("high_temperature_pack_4")
    outlier = scenario.open("temperature_outlier_pack_4")
    assert high is not None
    assert outlier is not None
    assert high.severity is Severity.WARNING
    assert high.values["limit"] == 45.0
    assert high.values["temperature"] == pytest.approx(bank.pack(4).temperature, abs=0.1)
    assert outlier.values["difference"] > 20  # type: ignore[operator]
    # Same load: its current is about the others'.
    assert outlier.values["current"] == pytest.approx(outlier.values["others_current"], abs=2)

    fault.remove(bank)
    scenario.run(11 * MIN)
    assert scenario.open_ids() == set()


def test_a_very_hot_pack_is_critical_and_cools_through_the_hysteresis() -> None:
    analyzer = BankAnalyzer(Thresholds(raise_after_minutes=0, clear_after_minutes=0))

    def at(minute: int, temperature: float) -> AnalysisResult:
        now = START + minute * MIN
        packs: dict[int, dict[str, Any]] = {
            1: {"temperatures": (temperature, 30.0)},
            2: {"temperatures": (temperature,)},
        }
        return analyzer.update(snap(now, packs), {}, now)

    result = at(0, 56.0)
    assert {f.severity for f in result.open} == {Severity.CRITICAL}
    assert result.open[0].values["limit"] == 55.0
    result = at(1, 53.0)  # within 3 K of 55: held
    assert {f.severity for f in result.open} == {Severity.CRITICAL}
    result = at(2, 50.0)
    assert {f.severity for f in result.open} == {Severity.WARNING}
    assert len(result.changed) == 2
    assert at(3, 43.0).open  # within 3 K of 45
    assert not at(4, 41.9).open


def test_mosfet_temperature_is_judged_only_without_cell_sensors() -> None:
    analyzer = BankAnalyzer(Thresholds(raise_after_minutes=0))
    packs = {
        1: {"temperatures": (30.0,), "mosfet_temperature": 70.0},
        2: {"temperatures": (), "mosfet_temperature": 47.0},
    }
    result = analyzer.update(snap(START, packs), {}, START)
    assert {f.id for f in result.open if f.rule == "high_temperature"} == {
        "high_temperature_pack_2"
    }
