"""How findings reach the user: debounce and hysteresis, notifications, options,
the bank's make-up, the event entity and the logbook."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import (
    async_capture_events,
    async_get_persistent_notifications,
)

from custom_components.rack_battery.bank.analysis import Thresholds
from custom_components.rack_battery.const import EVENT_FINDING
from custom_components.rack_battery.logbook import describe_finding
from simulator import faults
from simulator.bank import CELLS, SimBank

from .conftest import SimulatedBus, options_input, record_states
from .findings_helpers import (
    ENTRY_ID,
    MIN,
    bank_entry,
    identities,
    issue,
    poll,
    problem_entity,
    quiet_bus,  # noqa: F401 - a fixture
    repairs,
    run,
    setup_entry,
)

pytestmark = pytest.mark.freeze_time(tick=True)


def _notifications(hass: HomeAssistant) -> dict[str, Any]:
    return dict(async_get_persistent_notifications(hass))


def _heat(bank: SimBank, celsius: float) -> None:
    pack = bank.pack(4)
    pack.ambient = pack.temperature = celsius


async def test_debounce_hysteresis_and_a_critical_notification(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    quiet_bus: SimulatedBus,  # noqa: F811
) -> None:
    """A hot pack: held back by the debounce, critical with a notification, then
    down to a warning, held by the hysteresis, and cleared only after the delay."""
    bank = quiet_bus.bank
    await setup_entry(hass, bank_entry(quiet_bus))
    events = async_capture_events(hass, EVENT_FINDING)
    _heat(bank, 58.0)

    await run(hass, freezer, bank, 4 * MIN)
    assert issue(hass, "high_temperature_pack_4") is None  # not before 5 minutes
    await run(hass, freezer, bank, 3 * MIN)
    repair = issue(hass, "high_temperature_pack_4")
    assert repair is not None
    assert repair.severity is ir.IssueSeverity.CRITICAL
    assert repair.translation_placeholders == {
        "bank": "PACE bank",
        "address": "4",
        "temperature": "58",
        "limit": "55",
    }
    notification = _notifications(hass)[f"rack_battery_{ENTRY_ID}_high_temperature_pack_4"]
    assert "Pack 4 of PACE bank" in notification["title"]
    assert "58" in notification["message"]

    # 54 °C is within the 3 K hysteresis of 55: still critical.
    _heat(bank, 54.0)
    await run(hass, freezer, bank, 2 * MIN)
    assert issue(hass, "high_temperature_pack_4").severity is ir.IssueSeverity.CRITICAL  # type: ignore[union-attr]

    # 50 °C: a warning now, at once; the repair is created anew at its new
    # severity and the notification goes.
    _heat(bank, 50.0)
    await poll(hass, freezer, MIN)
    repair = issue(hass, "high_temperature_pack_4")
    assert repair is not None
    assert repair.severity is ir.IssueSeverity.WARNING
    assert (repair.translation_placeholders or {})["limit"] == "45"
    changed = [e.data for e in events if e.data["action"] == "changed"]
    assert [(e["finding_id"], e["severity"]) for e in changed] == [
        ("high_temperature_pack_4", "warning")
    ]
    assert f"rack_battery_{ENTRY_ID}_high_temperature_pack_4" not in _notifications(hass)

    # 43 °C is within the hysteresis of 45: it stays open however long it lasts.
    _heat(bank, 43.0)
    await run(hass, freezer, bank, 15 * MIN)
    assert issue(hass, "high_temperature_pack_4") is not None

    # 41 °C: gone, but only cleared once it has been gone for 10 minutes.
    _heat(bank, 41.0)
    await run(hass, freezer, bank, 9 * MIN)
    assert issue(hass, "high_temperature_pack_4") is not None
    await run(hass, freezer, bank, 3 * MIN)
    assert issue(hass, "high_temperature_pack_4") is None
    assert [e.data["action"] for e in events if e.data["rule"] == "high_temperature"] == [
        "raised",
        "changed",
        "cleared",
    ]


def _fewer_cells(bank: SimBank) -> None:
    # A 15-cell pack among 16-cell ones.
    pack = bank.pack(2)
    pack.cell_offsets = (0.0,) * (CELLS - 1)


def _more_cells(bank: SimBank) -> None:
    bank.pack(2).cell_offsets = (0.0,) * CELLS


@pytest.mark.parametrize(
    ("name", "severity"), [("mixed_models", "warning"), ("mixed_cell_count", "critical")]
)
async def test_the_banks_make_up(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    quiet_bus: SimulatedBus,  # noqa: F811
    name: str,
    severity: str,
) -> None:
    """A bank set up with a pack of another model, or of another cell count, is
    told at once; once the pack is swapped and the bank read again, it clears."""
    bank = quiet_bus.bank
    rebadge = faults.Rebadged(address=3, model="US2000C")
    if name == "mixed_models":
        rebadge.apply(bank)
    else:
        _fewer_cells(bank)
    entry = await setup_entry(hass, bank_entry(quiet_bus))
    events = async_capture_events(hass, EVENT_FINDING)
    # Raised while the bank was set up, before anything could listen:
    # the repair is there all the same.
    repair = issue(hass, name)
    assert repair is not None
    assert repair.severity is (
        ir.IssueSeverity.CRITICAL if severity == "critical" else ir.IssueSeverity.WARNING
    )
    placeholders = repair.translation_placeholders or {}
    if name == "mixed_models":
        assert placeholders["models"] == "US2000C: 3; US3000C: 1, 2, 4"
    else:
        assert placeholders["cell_counts"] == "15: 2; 16: 1, 3, 4"
    assert (f"rack_battery_{ENTRY_ID}_{name}" in _notifications(hass)) is (severity == "critical")
    assert hass.states.get(problem_entity(None)).state == STATE_ON  # type: ignore[union-attr]

    # The odd pack is swapped for one like the others, and the bank scanned again.
    rebadge.remove(bank)
    _more_cells(bank)
    hass.config_entries.async_update_entry(entry, data={**entry.data, "packs": identities(bank)})
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    await poll(hass, freezer)
    assert issue(hass, name) is None
    assert [e.data["action"] for e in events if e.data["rule"] == name] == ["cleared"]
    assert f"rack_battery_{ENTRY_ID}_{name}" not in _notifications(hass)
    assert hass.states.get(problem_entity(None)).state == STATE_OFF  # type: ignore[union-attr]


async def test_options_change_what_the_rules_judge_by(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    quiet_bus: SimulatedBus,  # noqa: F811
) -> None:
    """Saying the BMS takes only three packs raises too_many_packs at once; a
    contradiction is refused; setting the limit back clears it."""
    entry = await setup_entry(hass, bank_entry(quiet_bus))
    events = async_capture_events(hass, EVENT_FINDING)

    result: Any = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "init"

    # A critical level below the warning level would raise and never clear.
    bad = replace(Thresholds(), voltage_spread_critical=0.1)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], options_input(bad)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "inconsistent"}
    assert "voltage_spread_critical" in result["description_placeholders"]["problems"]

    result = await hass.config_entries.options.async_configure(
        result["flow_id"], options_input(replace(Thresholds(), max_packs=3))
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.options["max_packs"] == 3
    repair = issue(hass, "too_many_packs")
    assert repair is not None
    assert repair.translation_placeholders == {
        "bank": "PACE bank",
        "packs": "4",
        "max_packs": "3",
        "family": "pace_modbus",
    }

    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], options_input(Thresholds())
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    await poll(hass, freezer)
    assert issue(hass, "too_many_packs") is None
    assert [e.data["action"] for e in events] == ["raised", "cleared"]


async def test_changed_options_keep_a_finding_on_its_schedule(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    quiet_bus: SimulatedBus,  # noqa: F811
) -> None:
    """New settings apply to the running bank: a hot pack three minutes into its
    five-minute debounce is raised on time, judged by the new warning level,
    and the bank is not set up again (its entities never go away)."""
    bank = quiet_bus.bank
    entry = await setup_entry(hass, bank_entry(quiet_bus))
    _heat(bank, 50.0)
    await run(hass, freezer, bank, 3 * MIN)
    assert issue(hass, "high_temperature_pack_4") is None

    states = record_states(entry)
    result: Any = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], options_input(replace(Thresholds(), temperature_warning=48.0))
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.options["temperature_warning"] == 48.0

    # Raised once five minutes have passed since the first hot poll (minute
    # one); a reload would have started the debounce again at minute three,
    # and nothing would show before minute eight.
    await run(hass, freezer, bank, 4 * MIN)
    repair = issue(hass, "high_temperature_pack_4")
    assert repair is not None
    assert repair.severity is ir.IssueSeverity.WARNING
    assert (repair.translation_placeholders or {})["limit"] == "48"
    assert states == []


async def test_info_findings_are_events_not_repairs(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    quiet_bus: SimulatedBus,  # noqa: F811
) -> None:
    """Mixed firmware is worth knowing, not a repair: an event and the
    event entity say so, the problem sensor stays off."""
    faults.Rebadged(address=4, firmware="V2.1").apply(quiet_bus.bank)
    await setup_entry(hass, bank_entry(quiet_bus))
    assert repairs(hass) == set()
    state = hass.states.get("event.pace_bank_findings")
    assert state is not None
    assert state.attributes["event_type"] == "finding_raised"
    assert state.attributes["finding_id"] == "mixed_firmware"
    assert state.attributes["severity"] == "info"
    assert state.attributes["values"]["firmware"] == "V1.4: 1, 2, 3; V2.1: 4"
    assert hass.states.get(problem_entity(None)).state == STATE_OFF  # type: ignore[union-attr]
    problem = hass.states.get(problem_entity(None))
    assert problem is not None
    assert [item["id"] for item in problem.attributes["findings"]] == ["mixed_firmware"]


async def test_fet_and_alarm_sensors_follow_the_pack(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    quiet_bus: SimulatedBus,  # noqa: F811
) -> None:
    """A pack whose BMS opens its FETs or raises alarms shows it on its own sensors."""
    await setup_entry(hass, bank_entry(quiet_bus))
    prefix = "binary_sensor.pace_bank_pack_2"
    assert hass.states.get(f"{prefix}_charging_allowed").state == STATE_ON  # type: ignore[union-attr]
    assert hass.states.get(f"{prefix}_discharging_allowed").state == STATE_ON  # type: ignore[union-attr]
    alarm = hass.states.get(f"{prefix}_bms_alarm")
    assert alarm is not None
    assert alarm.state == STATE_OFF
    assert alarm.attributes["warnings"] == []
    assert alarm.attributes["protections"] == []

    quiet_bus.bank.pack(2).connected = False
    quiet_bus.bank.step(0.0)
    await poll(hass, freezer)
    assert hass.states.get(f"{prefix}_charging_allowed").state == STATE_OFF  # type: ignore[union-attr]
    assert hass.states.get(f"{prefix}_discharging_allowed").state == STATE_OFF  # type: ignore[union-attr]

    # The BMS warns of a high cell and has cut charging for a hot MOSFET.
    quiet_bus.bank.pack(2).warnings = {"cell_overvoltage"}
    quiet_bus.bank.pack(2).protections = {"mosfet_overtemperature"}
    await poll(hass, freezer)
    alarm = hass.states.get(f"{prefix}_bms_alarm")
    assert alarm is not None
    assert alarm.state == STATE_ON
    assert alarm.attributes["warnings"] == ["cell_overvoltage"]
    assert alarm.attributes["protections"] == ["mosfet_overtemperature"]
    assert hass.states.get("binary_sensor.pace_bank_pack_1_bms_alarm").state == STATE_OFF  # type: ignore[union-attr]
    # An alarm is the pack's state, not something to repair.
    assert repairs(hass) == set()
    assert hass.states.get("event.pace_bank_findings").state == STATE_UNKNOWN  # type: ignore[union-attr]


def test_logbook_names_the_pack_and_the_change() -> None:
    """The logbook reads like a sentence about the pack."""
    data = {
        "action": "raised",
        "finding_id": "high_resistance_pack_3",
        "rule": "high_resistance",
        "severity": "warning",
        "address": 3,
    }
    assert describe_finding(data, "Garage bank pack 3", "binary_sensor.garage_bank_pack_3") == {
        "name": "Garage bank pack 3",
        "message": "high resistance found (warning)",
        "entity_id": "binary_sensor.garage_bank_pack_3",
    }
    assert describe_finding({**data, "action": "cleared", "address": None}) == {
        "name": "Battery bank",
        "message": "high resistance cleared (was warning)",
    }
    assert describe_finding({**data, "action": "changed", "severity": "critical"})["message"] == (
        "high resistance is now critical"
    )
