"""Every rule of the bank, seen by a user of a real Home Assistant.

For each rule a fault is injected into the simulated bank; once the
condition has held past the debounce the repair is there, naming the pack
and the numbers, the ``rack_battery_finding`` event has fired with the
pack's device, and the problem binary sensor is on. Once the fault is put
right and the clear debounce has run, the repair is gone, the clear event
has fired and the sensor is off. The clock moves with the freezer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import STATE_OFF, STATE_ON
from homeassistant.core import Event, HomeAssistant
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import async_capture_events

from custom_components.rack_battery.const import EVENT_FINDING, RULES_URL
from simulator import faults
from simulator.bank import SimBank, constant_load

from .conftest import SimulatedBus
from .findings_helpers import (
    ENTRY_ID,
    MIN,
    bank_entry,
    device_id,
    issue,
    problem_entity,
    quiet_bus,  # noqa: F401 - a fixture
    repairs,
    run,
    setup_entry,
)

pytestmark = pytest.mark.freeze_time(tick=True)

type Values = Mapping[str, Any]


@dataclass(frozen=True, kw_only=True)
class Expected:
    """A finding the fault must raise, and how to check its numbers."""

    finding_id: str
    severity: str
    address: int | None
    check: Callable[[Values, SimBank], None] = lambda _values, _bank: None


@dataclass(frozen=True, kw_only=True)
class RuleCase:
    """A fault, what it raises, and how the bank is driven meanwhile."""

    fault: Callable[[], faults.Fault]
    expected: tuple[Expected, ...]
    options: dict[str, Any] = field(default_factory=dict)
    raise_for: timedelta = 7 * MIN
    clear_for: timedelta = 12 * MIN
    every: timedelta = MIN
    before_poll: Callable[[SimBank, int], None] | None = None
    idle_before_clear: timedelta = timedelta(0)


def _close(value: Any, expected: float, tolerance: float) -> None:
    assert value == pytest.approx(expected, abs=tolerance)


def _imbalance_voltage(values: Values, bank: SimBank) -> None:
    voltages = {pack.address: pack.voltage for pack in bank.packs}
    assert values["highest"] == 1
    _close(values["highest_voltage"], voltages[1], 0.01)
    _close(values["spread"], voltages[1] - min(voltages.values()), 0.02)


def _imbalance_soc(values: Values, bank: SimBank) -> None:
    assert values["highest"] == 1
    _close(values["highest_soc"], 95, 1)
    _close(values["spread"], 35, 1.5)


def _imbalance_parasitic(values: Values, bank: SimBank) -> None:
    assert values["source"] == 1
    assert values["sources"] == "1"
    assert values["sinks"] == "2, 3, 4"
    _close(values["source_current"], -bank.pack(1).current, 0.1)
    _close(values["sink_current"], max(pack.current for pack in bank.packs), 0.1)


def _swing(values: Values, bank: SimBank) -> None:
    # The loose terminal's noise is 1.2 V either way: a swing of at least a
    # volt, at most both extremes.
    assert values["swing"] >= 1.0
    assert values["swing"] <= 2.4 + 0.05
    assert values["window_minutes"] == 10.0


def _cells(values: Values, bank: SimBank) -> None:
    cells = bank.pack(2).cell_voltages
    assert values["highest_cell"] == 6
    _close(values["cell_delta"], max(cells) - min(cells), 0.003)


def _hot(values: Values, bank: SimBank) -> None:
    _close(values["temperature"], 52.0, 0.1)
    assert values["limit"] == 45.0


def _outlier(values: Values, bank: SimBank) -> None:
    # A PACE pack reports four cell sensors and its surroundings.
    others = sorted(max(*p.cell_temperatures, p.ambient) for p in bank.packs if p.address != 4)
    _close(values["difference"], 52.0 - others[1], 0.3)


def _soh(values: Values, bank: SimBank) -> None:
    assert values["soh"] == 75
    assert values["threshold"] == 80.0


def _cycles(values: Values, bank: SimBank) -> None:
    assert values["cycles"] == 3100
    assert values["rated_cycles"] == 3000


def _capacity(values: Values, bank: SimBank) -> None:
    others = sorted(p.full_capacity for p in bank.packs if p.address != 4)
    _close(values["full_capacity"], 75.0, 0.01)
    _close(values["others_median"], others[1], 0.05)
    assert values["difference_percent"] < -20


def _low_share(values: Values, bank: SimBank) -> None:
    conductance = {pack.address: 1.0 / pack.resistance for pack in bank.packs}
    expected = 100.0 * conductance[3] / sum(conductance.values())
    _close(values["current_share"], expected, 1.5)
    assert values["ratio"] < 0.7


def _resistance(values: Values, bank: SimBank) -> None:
    # The BMS measures at its own terminals: dV/dI is the pack's own resistance.
    _close(values["resistance_mohm"], 1000 * bank.pack(2).internal_resistance, 3.0)
    assert values["ratio"] > 1.5


def _dropouts(values: Values, bank: SimBank) -> None:
    assert values["dropouts"] >= 3


def _error_rate(values: Values, bank: SimBank) -> None:
    assert values["error_rate"] >= 10
    assert values["polls"] >= 5


def _load_steps(high: float) -> Callable[[SimBank, int], None]:
    """Return a hook that switches the bank's load between 0 A and ``high`` every poll."""

    def hook(bank: SimBank, index: int) -> None:
        bank.load = constant_load(high if index % 2 else 0.0)
        bank.step(0.0)

    return hook


def _settle(bank: SimBank, _index: int) -> None:
    # A loose terminal's voltage jumps anew each time the bank settles.
    bank.step(0.0)


def _link_drops(bank: SimBank, index: int) -> None:
    # Pack 3 answers every other poll.
    bank.pack(3).online = index % 2 == 0


# Load-step rules judge a handful of steps instead of twenty, and hold a
# minute instead of fifteen: the same rule, quicker to watch.
FAST_STEPS = {
    "raise_after_minutes": 1,
    "clear_after_minutes": 1,
    "current_share_min_steps": 2,
    "current_share_raise_after_minutes": 1,
}

CASES = {
    "charge_imbalance": RuleCase(
        fault=lambda: faults.SocImbalance(address=1, soc=0.95),
        expected=(
            Expected(
                finding_id="voltage_spread",
                severity="warning",
                address=None,
                check=_imbalance_voltage,
            ),
            Expected(
                finding_id="soc_spread", severity="warning", address=None, check=_imbalance_soc
            ),
            Expected(
                finding_id="parasitic_current",
                severity="warning",
                address=None,
                check=_imbalance_parasitic,
            ),
        ),
    ),
    "loose_terminal_swing": RuleCase(
        fault=lambda: faults.LooseTerminal(address=3, seed=4),
        expected=(
            Expected(
                finding_id="voltage_swing_pack_3", severity="critical", address=3, check=_swing
            ),
        ),
        before_poll=_settle,
        # The noise is drawn anew at every poll: a few polls pass before two
        # draws lie a volt apart, then the debounce runs.
        raise_for=10 * MIN,
        # The noisy samples must leave the 10-minute window first.
        clear_for=24 * MIN,
    ),
    "cell_imbalance": RuleCase(
        fault=lambda: faults.CellImbalance(address=2, cell=5, offset=0.15),
        expected=(
            Expected(
                finding_id="cell_imbalance_pack_2", severity="warning", address=2, check=_cells
            ),
        ),
    ),
    "hot_pack": RuleCase(
        fault=lambda: faults.HotPack(address=4, ambient=52.0),
        expected=(
            Expected(
                finding_id="high_temperature_pack_4", severity="warning", address=4, check=_hot
            ),
            Expected(
                finding_id="temperature_outlier_pack_4",
                severity="warning",
                address=4,
                check=_outlier,
            ),
        ),
    ),
    "aged_pack": RuleCase(
        fault=lambda: faults.Aging(
            address=4, capacity_fade=0.25, resistance_growth=0.0, cycles=3100
        ),
        expected=(
            Expected(
                finding_id="low_state_of_health_pack_4", severity="warning", address=4, check=_soh
            ),
            Expected(finding_id="cycle_life_pack_4", severity="warning", address=4, check=_cycles),
            Expected(
                finding_id="capacity_mismatch_pack_4",
                severity="warning",
                address=4,
                check=_capacity,
            ),
        ),
    ),
    "poor_connection_takes_less_current": RuleCase(
        fault=lambda: faults.LooseTerminal(address=3, noise=0.0),
        expected=(
            Expected(
                finding_id="low_current_share_pack_3",
                severity="warning",
                address=3,
                check=_low_share,
            ),
        ),
        options=FAST_STEPS,
        before_poll=_load_steps(50.0),
        raise_for=4 * MIN,
        clear_for=8 * MIN,
        every=timedelta(seconds=30),
    ),
    "worn_cells_raise_resistance": RuleCase(
        fault=lambda: faults.Aging(
            address=2, resistance_growth=1.5, capacity_fade=0.0, cycles=None
        ),
        expected=(
            Expected(
                finding_id="high_resistance_pack_2",
                severity="warning",
                address=2,
                check=_resistance,
            ),
        ),
        options=FAST_STEPS,
        before_poll=_load_steps(80.0),
        raise_for=4 * MIN,
        clear_for=10 * MIN,
        every=timedelta(seconds=30),
    ),
    "flaky_link": RuleCase(
        fault=lambda: faults.FlakyLink(address=3, failure_rate=0.0),
        expected=(
            Expected(
                finding_id="pack_dropouts_pack_3", severity="warning", address=3, check=_dropouts
            ),
            Expected(
                finding_id="pack_error_rate_pack_3",
                severity="warning",
                address=3,
                check=_error_rate,
            ),
        ),
        options={"error_rate_min_polls": 5},
        before_poll=_link_drops,
        raise_for=8 * MIN,
        # Past the drop-off window (24 h), then enough polls to judge the rate.
        idle_before_clear=timedelta(hours=25),
        clear_for=6 * MIN,
    ),
}


def _events(events: list[Event[dict[str, Any]]], action: str) -> dict[str, dict[str, Any]]:
    return {
        event.data["finding_id"]: event.data for event in events if event.data["action"] == action
    }


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_rule_raises_and_clears(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    quiet_bus: SimulatedBus,  # noqa: F811 - the fixture
    case: RuleCase,
) -> None:
    """The fault raises its repair, event and problem sensor; mended, they clear."""
    bank = quiet_bus.bank
    await setup_entry(hass, bank_entry(quiet_bus, case.options))
    events = async_capture_events(hass, EVENT_FINDING)
    assert repairs(hass) == set()

    fault = case.fault()
    fault.apply(bank)
    await run(hass, freezer, bank, case.raise_for, every=case.every, before_poll=case.before_poll)

    raised = _events(events, "raised")
    for expected in case.expected:
        repair = issue(hass, expected.finding_id)
        assert repair is not None, (expected.finding_id, repairs(hass))
        assert repair.severity == (
            ir.IssueSeverity.CRITICAL
            if expected.severity == "critical"
            else ir.IssueSeverity.WARNING
        )
        assert repair.learn_more_url == f"{RULES_URL}#{repair.translation_key}"
        assert not repair.is_fixable
        placeholders = repair.translation_placeholders or {}
        assert placeholders["bank"] == "PACE bank"
        if expected.address is not None:
            assert placeholders["address"] == str(expected.address)

        event = raised[expected.finding_id]
        assert event["severity"] == expected.severity
        assert event["address"] == expected.address
        assert event["config_entry_id"] == ENTRY_ID
        assert event["device_id"] == device_id(hass, bank, expected.address)
        expected.check(event["values"], bank)

        state = hass.states.get(problem_entity(expected.address))
        assert state is not None
        assert state.state == STATE_ON
        assert expected.finding_id in {item["id"] for item in state.attributes["findings"]}
        assert hass.states.get(problem_entity(None)).state == STATE_ON  # type: ignore[union-attr]

    # A pack-level rule names only the pack at fault.
    pack_findings = {e.finding_id for e in case.expected if e.address is not None}
    rules = {finding_id.split("_pack_")[0] for finding_id in pack_findings}
    named = {f for f in repairs(hass) if f.split("_pack_")[0] in rules}
    assert named == pack_findings

    fault.remove(bank)
    freezer.tick(case.idle_before_clear)
    await run(hass, freezer, bank, case.clear_for, every=case.every, before_poll=_keep(case))

    cleared = _events(events, "cleared")
    for expected in case.expected:
        assert issue(hass, expected.finding_id) is None
        assert expected.finding_id in cleared
        assert cleared[expected.finding_id]["device_id"] == device_id(hass, bank, expected.address)
    assert repairs(hass) == set()
    for address in (None, 1, 2, 3, 4):
        assert hass.states.get(problem_entity(address)).state == STATE_OFF  # type: ignore[union-attr]


def _keep(case: RuleCase) -> Callable[[SimBank, int], None] | None:
    """Keep driving load steps while the rules clear; noise and drops are over."""
    if case.before_poll in (_settle, _link_drops):
        return None
    return case.before_poll
