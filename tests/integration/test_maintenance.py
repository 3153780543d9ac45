"""The maintenance schedule: due work becomes a repair, fixed by saying it was done;
the schedule survives restarts, and a damaged store loses only what is damaged."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.repairs import repairs_flow_manager
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import async_capture_events

from custom_components.rack_battery.bank.analysis import MaintenanceTask
from custom_components.rack_battery.const import DOMAIN, EVENT_FINDING
from custom_components.rack_battery.coordinator import BankCoordinator
from custom_components.rack_battery.store import STORAGE_VERSION, storage_key

from .conftest import SimulatedBus
from .findings_helpers import (
    ENTRY_ID,
    bank_entry,
    issue,
    poll,
    quiet_bus,  # noqa: F401 - a fixture
    repairs,
    setup_entry,
)

pytestmark = pytest.mark.freeze_time(tick=True)

KEY = storage_key(ENTRY_ID)


def _coordinator(hass: HomeAssistant) -> BankCoordinator:
    entry = hass.config_entries.async_get_entry(ENTRY_ID)
    assert entry is not None
    coordinator: BankCoordinator = entry.runtime_data.coordinator
    return coordinator


def _seed(hass_storage: dict[str, Any], data: object) -> None:
    hass_storage[KEY] = {"version": STORAGE_VERSION, "minor_version": 1, "key": KEY, "data": data}


async def _fix(hass: HomeAssistant, finding_id: str, user_input: dict[str, Any]) -> Any:
    """Open a repair's fix flow and submit it."""
    manager = repairs_flow_manager(hass)
    assert manager is not None
    result: Any = await manager.async_init(DOMAIN, data={"issue_id": f"{ENTRY_ID}_{finding_id}"})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "init"
    # Opened as the frontend opens it, the form asks; it does not complain.
    assert result["errors"] == {}
    result = await manager.async_configure(result["flow_id"], user_input)
    await hass.async_block_till_done()
    return result


async def test_due_work_is_a_repair_fixed_by_recording_it(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    quiet_bus: SimulatedBus,  # noqa: F811
    hass_storage: dict[str, Any],
) -> None:
    """Half a year on, the capacity test and the terminal check are due; the
    fix flow records the test, and its next date counts from today. It all
    survives unloading and setting the bank up again.

    The bank is set up at 23:00 in California in November, so the fix lands
    just after midnight in May, in summer time: the next due date must
    still be 182 calendar days on, not the evening before."""
    freezer.move_to("2026-11-26T07:00:30+00:00")
    assert await async_setup_component(hass, "repairs", {})
    entry = await setup_entry(hass, bank_entry(quiet_bus))
    assert repairs(hass) == set()
    events = async_capture_events(hass, EVENT_FINDING)

    await poll(hass, freezer, timedelta(days=183))
    # The monthly voltage check took itself from this quiet bank.
    voltage_check = _coordinator(hass).maintenance.last(MaintenanceTask.VOLTAGE_CHECK)
    assert voltage_check is not None
    assert voltage_check.automatic
    assert voltage_check.result["passed"] == "yes"
    assert repairs(hass) == {"maintenance_capacity_test", "maintenance_terminal_check"}
    repair = issue(hass, "maintenance_capacity_test")
    assert repair is not None
    assert repair.is_fixable
    assert repair.severity is ir.IssueSeverity.WARNING
    placeholders = repair.translation_placeholders or {}
    assert placeholders["last_done"] == "—"
    assert placeholders["interval_days"] == "182"
    assert int(placeholders["overdue_days"]) <= 1
    assert {e.data["finding_id"] for e in events if e.data["action"] == "raised"} == {
        "maintenance_capacity_test",
        "maintenance_terminal_check",
    }

    # A date in the future is refused.
    manager = repairs_flow_manager(hass)
    assert manager is not None
    result: Any = await manager.async_init(
        DOMAIN, data={"issue_id": f"{ENTRY_ID}_maintenance_capacity_test"}
    )
    tomorrow = (dt_util.now() + timedelta(days=1)).date().isoformat()
    result = await manager.async_configure(result["flow_id"], {"done_on": tomorrow})
    assert result["errors"] == {"done_on": "date_in_future"}
    manager.async_abort(result["flow_id"])

    today = dt_util.now().date()
    result = await _fix(
        hass,
        "maintenance_capacity_test",
        {"done_on": today.isoformat(), "measured_capacity": 97.5, "note": "all four packs"},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert issue(hass, "maintenance_capacity_test") is None
    assert issue(hass, "maintenance_terminal_check") is not None
    schedule = _coordinator(hass).maintenance
    record = schedule.last(MaintenanceTask.CAPACITY_TEST)
    assert record is not None
    assert dict(record.result) == {"measured_capacity": 97.5, "note": "all four packs"}
    next_due = schedule.next_due(MaintenanceTask.CAPACITY_TEST)
    assert dt_util.as_local(next_due).date() == today + timedelta(days=182)
    assert [
        e.data["action"] for e in events if e.data["finding_id"] == "maintenance_capacity_test"
    ] == ["raised", "cleared"]

    # Home Assistant restarts: the record and the open repair are still there,
    # and nothing is announced again.
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert hass_storage[KEY]["data"]["maintenance"]["history"]
    events.clear()
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    schedule = _coordinator(hass).maintenance
    assert schedule.next_due(MaintenanceTask.CAPACITY_TEST) == next_due
    assert issue(hass, "maintenance_terminal_check") is not None
    assert issue(hass, "maintenance_capacity_test") is None
    await poll(hass, freezer)
    assert events == []

    # An earlier day may be given: the next date counts from that day.
    result = await _fix(
        hass, "maintenance_terminal_check", {"done_on": (today - timedelta(days=2)).isoformat()}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    record = _coordinator(hass).maintenance.last(MaintenanceTask.TERMINAL_CHECK)
    assert record is not None
    assert dt_util.as_local(record.when).date() == today - timedelta(days=2)
    assert repairs(hass) == set()


async def test_a_seeded_store_is_read_back(
    hass: HomeAssistant,
    quiet_bus: SimulatedBus,  # noqa: F811
    hass_storage: dict[str, Any],
) -> None:
    """A bank set up 200 days ago whose terminals were checked 10 days ago:
    only the capacity test is due, and a stored open finding is open again."""
    now = dt_util.utcnow()
    _seed(
        hass_storage,
        {
            "maintenance": {
                "version": 1,
                "created": (now - timedelta(days=200)).isoformat(),
                "history": [
                    {
                        "task": "terminal_check",
                        "when": (now - timedelta(days=10)).isoformat(),
                        "result": {"note": "torqued to 12 Nm"},
                    },
                    {
                        "task": "voltage_check",
                        "when": (now - timedelta(days=3)).isoformat(),
                        "result": {"spread": 0.04},
                        "automatic": True,
                    },
                ],
            },
            "analysis": {
                "version": 1,
                "open": [
                    {
                        "id": "cell_imbalance_pack_2",
                        "rule": "cell_imbalance",
                        "severity": "warning",
                        "address": 2,
                        "values": {"cell_delta": 0.12, "highest_cell": 4},
                        "since": (now - timedelta(hours=2)).isoformat(),
                    }
                ],
            },
        },
    )
    await setup_entry(hass, bank_entry(quiet_bus))
    assert repairs(hass) == {"maintenance_capacity_test", "cell_imbalance_pack_2"}
    schedule = _coordinator(hass).maintenance
    terminal = schedule.last(MaintenanceTask.TERMINAL_CHECK)
    assert terminal is not None
    assert terminal.result["note"] == "torqued to 12 Nm"
    assert schedule.created == (now - timedelta(days=200)).replace(microsecond=now.microsecond)


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param(
            {
                "maintenance": {
                    "version": 1,
                    "created": "yesterday-ish",
                    "history": [
                        "garbage",
                        {"task": "polish_the_rack", "when": "2025-01-01T00:00:00+00:00"},
                        {"task": "capacity_test", "when": "never"},
                        {"task": "terminal_check", "when": "TERMINAL_DONE", "result": [1, 2]},
                    ],
                },
                "analysis": ["not", "a", "mapping"],
            },
            id="damaged_parts",
        ),
        pytest.param(["a", "list", "instead", "of", "a", "mapping"], id="damaged_whole"),
        pytest.param({"maintenance": 42, "analysis": {"open": "no"}}, id="wrong_types"),
    ],
)
async def test_a_corrupt_store_loses_nothing_else(
    hass: HomeAssistant,
    quiet_bus: SimulatedBus,  # noqa: F811
    hass_storage: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    stored: Any,
) -> None:
    """The bank sets up; what can be read is kept; the loss is logged once."""
    done = (dt_util.utcnow() - timedelta(days=5)).isoformat()
    if isinstance(stored, dict) and isinstance(stored.get("maintenance"), dict):
        history = stored["maintenance"]["history"]
        history[-1] = {**history[-1], "when": done}
    _seed(hass_storage, stored)
    entry = await setup_entry(hass, bank_entry(quiet_bus))
    assert entry.state is ConfigEntryState.LOADED
    assert hass.states.get("sensor.pace_bank_pack_1_voltage") is not None
    assert caplog.text.count("could not be read and was left out") == 1
    schedule = _coordinator(hass).maintenance
    if isinstance(stored, dict) and isinstance(stored.get("maintenance"), dict):
        # The one readable record is kept, without its unreadable result.
        terminal = schedule.last(MaintenanceTask.TERMINAL_CHECK)
        assert terminal is not None
        assert terminal.when.isoformat() == done
        assert "polish_the_rack" in caplog.text
    assert repairs(hass) == set()
