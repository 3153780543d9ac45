"""Health, composition and communication, from the simulator."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from custom_components.rack_battery.bank.analysis import (
    BankAnalyzer,
    Severity,
    Thresholds,
)
from custom_components.rack_battery.bank.model import PackIdentity
from simulator import faults

from .sim import START, Scenario, quiet_bank, snap

MIN = timedelta(minutes=1)


def test_an_aged_pack_is_due_for_replacement() -> None:
    bank = quiet_bank(4)
    scenario = Scenario(bank)
    fault = faults.Aging(address=4, capacity_fade=0.25, resistance_growth=0.0, cycles=2800)
    fault.apply(bank)
    scenario.step()
    # Cycles are a count, not a measurement: raised at once.
    assert scenario.open_ids() == {"cycle_life_pack_4"}
    scenario.run(5 * MIN)
    assert scenario.open_ids() == {
        "low_state_of_health_pack_4",
        "capacity_mismatch_pack_4",
        "cycle_life_pack_4",
    }
    soh = scenario.open("low_state_of_health_pack_4")
    assert soh is not None
    assert soh.severity is Severity.WARNING
    assert soh.values == {"soh": 75.0, "threshold": 80.0}

    cycles = scenario.open("cycle_life_pack_4")
    assert cycles is not None
    assert cycles.severity is Severity.INFO  # near, not past
    assert cycles.values == {"cycles": 2800, "rated_cycles": 3000, "percent_of_rated": 93.3}

    mismatch = scenario.open("capacity_mismatch_pack_4")
    assert mismatch is not None
    others = sorted(p.full_capacity for p in bank.packs if p.address != 4)
    assert mismatch.values["full_capacity"] == 75.0
    assert mismatch.values["others_median"] == pytest.approx(others[1], abs=0.05)
    assert mismatch.values["difference_percent"] < -20  # type: ignore[operator]

    fault.remove(bank)
    scenario.run(11 * MIN)
    assert scenario.open_ids() == set()


def test_past_rated_life_is_a_warning() -> None:
    bank = quiet_bank(2)
    bank.pack(1).cycles = 3100
    scenario = Scenario(bank)
    scenario.step()
    finding = scenario.open("cycle_life_pack_1")
    assert finding is not None
    assert finding.severity is Severity.WARNING


def test_soh_at_exactly_80_is_replacement_and_clears_only_above_82() -> None:
    analyzer = BankAnalyzer(Thresholds(raise_after_minutes=0, clear_after_minutes=0))

    def at(minute: int, soh: float) -> set[str]:
        now = START + minute * MIN
        result = analyzer.update(snap(now, {1: {"soh": soh}}), {}, now)
        return {f.id for f in result.open}

    assert at(0, 80.0) == {"low_state_of_health_pack_1"}
    assert at(1, 81.9) == {"low_state_of_health_pack_1"}
    assert at(2, 82.1) == set()
    assert at(3, 81.0) == set()


def test_soh_falls_back_to_full_over_design_capacity() -> None:
    analyzer = BankAnalyzer(Thresholds(raise_after_minutes=0))
    packs = {1: {"full_capacity": 78.0, "design_capacity": 100.0}}
    result = analyzer.update(snap(START, packs), {}, START)
    assert [f.values["soh"] for f in result.open if f.rule == "low_state_of_health"] == [78.0]


def test_with_two_packs_only_the_smaller_capacity_is_named() -> None:
    analyzer = BankAnalyzer(Thresholds(raise_after_minutes=0))
    packs = {1: {"full_capacity": 100.0}, 2: {"full_capacity": 90.0}}
    result = analyzer.update(snap(START, packs), {}, START)
    assert [f.id for f in result.open] == ["capacity_mismatch_pack_2"]
    assert result.open[0].values["difference_percent"] == -10.0


def test_mixed_models_and_firmware_are_named_at_once() -> None:
    bank = quiet_bank(4)
    scenario = Scenario(bank)
    faults.Rebadged(address=3, model="US2000C").apply(bank)
    fault = faults.Rebadged(address=4, firmware="V2.1")
    fault.apply(bank)
    scenario.step()
    assert scenario.open_ids() == {"mixed_models", "mixed_firmware"}
    models = scenario.open("mixed_models")
    firmware = scenario.open("mixed_firmware")
    assert models is not None
    assert firmware is not None
    assert models.severity is Severity.WARNING
    assert models.values == {"models": "US2000C: 3; US3000C: 1, 2, 4", "count": 2}
    assert firmware.severity is Severity.INFO
    assert firmware.values == {"firmware": "V1.4: 1, 2, 3; V2.1: 4", "count": 2}
    fault.remove(bank)
    scenario.step()
    assert scenario.open_ids() == {"mixed_models"}


def test_mixed_cell_counts_are_critical() -> None:
    analyzer = BankAnalyzer()
    identities = {
        1: PackIdentity(address=1, family="pace_modbus", cell_count=16),
        2: PackIdentity(address=2, family="pace_modbus", cell_count=15),
    }
    result = analyzer.update(snap(START, {1: {}, 2: {}}), identities, START)
    (finding,) = result.open
    assert finding.id == "mixed_cell_count"
    assert finding.severity is Severity.CRITICAL
    assert finding.values == {"cell_counts": "15: 2; 16: 1", "count": 2}


def test_cell_count_falls_back_to_the_cells_a_pack_reports() -> None:
    analyzer = BankAnalyzer()
    packs: dict[int, dict[str, Any]] = {
        1: {"cell_voltages": (3.3,) * 16},
        2: {"cell_voltages": (3.5,) * 15},
    }
    result = analyzer.update(snap(START, packs), {}, START)
    assert {f.id for f in result.open} == {"mixed_cell_count"}
    assert result.open[0].values["cell_counts"] == "15: 2; 16: 1"


@pytest.mark.parametrize(
    ("family", "setting", "packs", "expected_max"),
    [
        ("pylontech_rs485", 0, 17, 16),
        ("pace_modbus", 0, 17, 16),
        ("some_new_family", 0, 9, 8),
        ("pylontech_rs485", 8, 9, 8),
    ],
)
def test_too_many_packs(family: str, setting: int, packs: int, expected_max: int) -> None:
    analyzer = BankAnalyzer(Thresholds(max_packs=setting))
    identities = {a: PackIdentity(address=a, family=family) for a in range(1, packs + 1)}
    result = analyzer.update(snap(START, {1: {}}, failed=range(2, packs + 1)), identities, START)
    finding = next(f for f in result.open if f.rule == "too_many_packs")
    assert finding.values == {"packs": packs, "max_packs": expected_max, "family": family}
    fewer = {a: identities[a] for a in range(1, expected_max + 1)}
    later = START + MIN
    result = analyzer.update(snap(later, {1: {}}), fewer, later)
    assert "too_many_packs" in {f.id for f in result.cleared}


def test_a_pack_that_keeps_dropping_off_the_bus() -> None:
    bank = quiet_bank(3)
    scenario = Scenario(bank, poll=timedelta(minutes=1))
    scenario.run(10 * MIN)
    for _ in range(3):
        bank.take_off_bus(2)
        scenario.run(2 * MIN)
        bank.put_on_bus(2)
        scenario.run(2 * timedelta(hours=1))
    finding = scenario.open("pack_dropouts_pack_2")
    assert finding is not None
    assert finding.severity is Severity.WARNING
    assert finding.values["dropouts"] == 3
    assert finding.values["window_hours"] == 24.0
    assert scenario.open_ids() == {"pack_dropouts_pack_2"}
    # Quiet for a day: the first drop-offs leave the window and it clears.
    took = scenario.run_until(
        lambda result: "pack_dropouts_pack_2" in {f.id for f in result.cleared},
        limit=timedelta(hours=25),
    )
    assert took < timedelta(hours=21)


def test_a_flaky_link_raises_the_error_rate() -> None:
    bank = quiet_bank(3)
    link = faults.FlakyLink(address=3, failure_rate=0.3, seed=2)
    scenario = Scenario(bank, poll=timedelta(seconds=30))
    scenario.before_poll.append(link.tick)
    link.apply(bank)
    scenario.run(timedelta(minutes=20))
    finding = scenario.open("pack_error_rate_pack_3")
    assert finding is not None
    assert finding.severity is Severity.WARNING
    assert 15 <= finding.values["error_rate"] <= 45  # type: ignore[operator]
    assert finding.values["polls"] == 40
    assert finding.values["window_minutes"] == 60.0
    assert {f.rule for f in scenario.last.open} <= {"pack_error_rate", "pack_dropouts"}

    link.remove(bank)
    took = scenario.run_until(
        lambda result: "pack_error_rate_pack_3" in {f.id for f in result.cleared},
        limit=timedelta(hours=2),
    )
    assert took <= timedelta(hours=1)
