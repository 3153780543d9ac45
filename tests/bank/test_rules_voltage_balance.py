"""Voltage consistency, SoC spread, parasitic currents and cell balance, from the simulator."""

from __future__ import annotations

from datetime import timedelta

import pytest

from custom_components.rack_battery.bank.analysis import BankAnalyzer, Severity, Thresholds
from simulator import faults
from simulator.bank import constant_load, step_load
from simulator.readings import snapshot_of

from .sim import START, Scenario, identities_of, quiet_bank, snap

MIN = timedelta(minutes=1)


def test_a_healthy_bank_raises_nothing() -> None:
    bank = quiet_bank(4)
    bank.load = step_load([(120, 10.0), (120, 50.0), (120, -30.0), (300, 0.0)])
    scenario = Scenario(bank)
    scenario.run(timedelta(hours=3))
    assert scenario.raised == []


def test_a_full_pack_added_to_a_half_empty_bank_feeds_the_others() -> None:
    bank = quiet_bank(4, soc=0.5)
    scenario = Scenario(bank)
    fault = faults.SocImbalance(address=1, soc=0.95)
    fault.apply(bank)
    scenario.run(4 * MIN)
    assert scenario.open_ids() == set()  # not before the debounce
    scenario.run(2 * MIN)
    assert scenario.open_ids() == {"parasitic_current", "soc_spread", "voltage_spread"}

    parasitic = scenario.open("parasitic_current")
    assert parasitic is not None
    assert parasitic.severity is Severity.WARNING
    pack1, pack2 = bank.pack(1), bank.pack(2)
    assert parasitic.values["source"] == 1
    assert parasitic.values["sources"] == "1"
    assert parasitic.values["sinks"] == "2, 3, 4"
    assert parasitic.values["source_current"] == pytest.approx(-pack1.current, abs=0.1)
    assert parasitic.values["sink_current"] == pytest.approx(
        max(p.current for p in bank.packs), abs=0.1
    )
    assert parasitic.values["source_soc"] == pytest.approx(100 * pack1.soc, abs=0.1)
    assert abs(parasitic.values["bank_current"]) < 0.1  # type: ignore[arg-type]

    spread = scenario.open("soc_spread")
    assert spread is not None
    assert spread.values["highest"] == 1
    assert spread.values["highest_soc"] == pytest.approx(100 * pack1.soc, abs=0.1)
    assert spread.values["spread"] > 30  # type: ignore[operator]

    voltage = scenario.open("voltage_spread")
    assert voltage is not None
    assert voltage.severity is Severity.WARNING
    assert voltage.values["highest"] == 1
    assert voltage.values["highest_voltage"] == pytest.approx(pack1.voltage, abs=0.01)
    assert pack2.voltage > voltage.values["lowest_voltage"] - 0.01  # type: ignore[operator]

    fault.remove(bank)
    scenario.run(9 * MIN)
    assert scenario.open_ids() == {"parasitic_current", "soc_spread", "voltage_spread"}
    scenario.run(2 * MIN)
    assert scenario.open_ids() == set()


def test_parasitic_current_is_only_judged_at_rest() -> None:
    bank = quiet_bank(4, soc=0.5)
    scenario = Scenario(bank, Thresholds(raise_after_minutes=0, clear_after_minutes=0))
    faults.SocImbalance(address=2, soc=0.9).apply(bank)
    scenario.step()
    assert scenario.open("parasitic_current") is not None
    # Under a 60 A load every pack discharges: the rule cannot tell, the finding stays.
    bank.load = constant_load(60.0)
    scenario.run(10 * MIN)
    assert all(pack.current < 0 for pack in bank.packs)
    assert scenario.open("parasitic_current") is not None
    assert not [f for f in scenario.cleared if f.rule == "parasitic_current"]


def test_small_parasitic_current_is_info() -> None:
    t = Thresholds(raise_after_minutes=0)
    analyzer = BankAnalyzer(t)
    packs = {1: {"current": -2.5, "soc": 70.0}, 2: {"current": 2.4, "soc": 60.0}}
    result = analyzer.update(snap(START, packs), {}, START)
    (finding,) = result.open
    assert finding.rule == "parasitic_current"
    assert finding.severity is Severity.INFO
    assert finding.values["source"] == 1
    assert finding.values["sink"] == 2
    assert finding.values["circulating_current"] == 2.4


def test_a_loose_terminal_swings_one_pack_by_volts() -> None:
    bank = quiet_bank(4)
    bank.load = step_load([(120, 10.0), (120, 50.0), (120, -30.0)])
    scenario = Scenario(bank)
    scenario.run(30 * MIN)
    fault = faults.LooseTerminal(address=3, seed=4)
    fault.apply(bank)
    scenario.run(6 * MIN)
    swing = scenario.open("voltage_swing_pack_3")
    assert swing is not None
    assert swing.severity is Severity.CRITICAL
    assert swing.address == 3
    assert swing.values["swing"] >= 1.0  # type: ignore[operator]
    assert swing.values["window_minutes"] == 10.0
    assert not {f.id for f in scenario.raised if f.rule == "voltage_swing"} - {
        "voltage_swing_pack_3"
    }

    fault.remove(bank)
    # The noisy samples leave the 10-minute window, then the clear debounce runs.
    scenario.run(10 * MIN)
    assert scenario.open("voltage_swing_pack_3") is not None
    scenario.run(12 * MIN)
    assert scenario.open("voltage_swing_pack_3") is None
    assert "voltage_swing_pack_3" in {f.id for f in scenario.cleared}


def test_swing_is_measured_against_the_bank_not_the_bus() -> None:
    # The whole bank moves by 1.5 V (a charge reaching the top): no pack swings.
    analyzer = BankAnalyzer(Thresholds(raise_after_minutes=0))
    for minute in range(10):
        now = START + minute * MIN
        shift = 1.5 * (minute % 2)
        packs = {a: {"voltage": 52.0 + shift + 0.01 * a} for a in (1, 2, 3)}
        result = analyzer.update(snap(now, packs), {}, now)
    assert result.open == ()


def test_with_two_packs_both_are_named() -> None:
    analyzer = BankAnalyzer(Thresholds(raise_after_minutes=0))
    for minute in range(4):
        now = START + minute * MIN
        packs = {1: {"voltage": 52.0}, 2: {"voltage": 52.0 + 1.2 * (minute % 2)}}
        result = analyzer.update(snap(now, packs), {}, now)
    assert {f.id for f in result.open if f.rule == "voltage_swing"} == {
        "voltage_swing_pack_1",
        "voltage_swing_pack_2",
    }


def test_an_unbalanced_cell_is_named() -> None:
    bank = quiet_bank(4)
    scenario = Scenario(bank)
    fault = faults.CellImbalance(address=2, cell=5, offset=0.15)
    fault.apply(bank)
    scenario.run(6 * MIN)
    assert scenario.open_ids() == {"cell_imbalance_pack_2"}
    finding = scenario.open("cell_imbalance_pack_2")
    assert finding is not None
    assert finding.values["highest_cell"] == 6
    assert finding.values["cell_delta"] == pytest.approx(0.16, abs=0.001)
    fault.remove(bank)
    scenario.run(11 * MIN)
    assert scenario.open_ids() == set()


def test_snapshot_of_reports_packs_off_the_bus_as_failed() -> None:
    bank = quiet_bank(3)
    bank.take_off_bus(2)
    snapshot = snapshot_of(bank, START)
    assert set(snapshot.readings) == {1, 3}
    assert set(snapshot.failed) == {2}
    reading = snapshot.readings[1]
    pack = bank.pack(1)
    assert reading.soc == pytest.approx(100 * pack.soc)
    assert reading.current == pack.current
    assert len(reading.cell_voltages) == 16
    assert identities_of(bank)[2].serial == bank.pack(2).serial
