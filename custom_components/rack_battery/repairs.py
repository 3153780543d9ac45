"""Fix flows: a maintenance repair is fixed by saying the work was done.

The flow asks when the work was done and what it found, and records it in
the bank's maintenance schedule; the task's next due date counts from that
day. Other repairs are not fixable: they clear when the bank is put right.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from homeassistant import data_entry_flow
from homeassistant.components.repairs import RepairsFlow
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers.selector import (
    DateSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    TextSelector,
)
from homeassistant.util import dt as dt_util
import voluptuous as vol

from .bank.analysis import MaintenanceTask, Value
from .const import DOMAIN
from .coordinator import RackBatteryConfigEntry

CONF_DONE_ON = "done_on"
CONF_MEASURED_CAPACITY = "measured_capacity"
CONF_NOTE = "note"

# Tasks whose result is a capacity the user measured.
_MEASURES_CAPACITY = frozenset({MaintenanceTask.CAPACITY_TEST, MaintenanceTask.FULL_CAPACITY_TEST})


class MaintenanceRepairFlow(RepairsFlow):
    """Record a maintenance task as done."""

    def __init__(self, entry_id: str, task: MaintenanceTask) -> None:
        """Fix the repair of one task of one bank."""
        self.entry_id = entry_id
        self.task = task

    async def async_step_init(
        self, user_input: dict[str, Any] | None = None
    ) -> data_entry_flow.FlowResult:
        """Ask when the work was done and what it found, then record it."""
        entry: RackBatteryConfigEntry | None = self.hass.config_entries.async_get_entry(
            self.entry_id
        )
        if entry is None or entry.state is not ConfigEntryState.LOADED:
            return self.async_abort(reason="bank_not_loaded")
        coordinator = entry.runtime_data.coordinator
        today = dt_util.now().date()
        errors: dict[str, str] = {}
        if user_input is not None and CONF_DONE_ON not in user_input:
            # Home Assistant opens a fix flow with the issue's id as this
            # step's input; only the form sent back is an answer.
            user_input = None
        if user_input is not None:
            done_on = _parse_date(user_input.get(CONF_DONE_ON))
            if done_on is None:
                errors[CONF_DONE_ON] = "invalid_date"
            elif done_on > today:
                errors[CONF_DONE_ON] = "date_in_future"
            else:
                await coordinator.async_record_maintenance(
                    self.task, _when(done_on, today), _result(user_input)
                )
                return self.async_create_entry(data={})

        fields: dict[Any, Any] = {
            vol.Required(CONF_DONE_ON, default=today.isoformat()): DateSelector(),
        }
        if self.task in _MEASURES_CAPACITY:
            fields[vol.Optional(CONF_MEASURED_CAPACITY)] = NumberSelector(
                NumberSelectorConfig(
                    min=0, max=2000, step=0.1, unit_of_measurement="Ah", mode=NumberSelectorMode.BOX
                )
            )
        fields[vol.Optional(CONF_NOTE)] = TextSelector()
        schedule = coordinator.maintenance
        last = schedule.last(self.task)
        return self.async_show_form(
            step_id="init",
            data_schema=vol.Schema(fields),
            errors=errors,
            description_placeholders={
                "bank": entry.title,
                "last_done": schedule.local_date(last.when).isoformat() if last else "-",
                "due": schedule.local_date(schedule.next_due(self.task)).isoformat(),
            },
        )


def _parse_date(raw: object) -> date | None:
    if isinstance(raw, date):
        return raw
    if not isinstance(raw, str):
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


def _when(done_on: date, today: date) -> datetime:
    """Return the time to record: now for today, local noon for an earlier day.

    The next due date counts from it; noon keeps a day's record on its day in
    every time zone the user might later look at it from.
    """
    if done_on == today:
        return dt_util.utcnow()
    local = datetime.combine(done_on, time(12), tzinfo=dt_util.get_default_time_zone())
    return dt_util.as_utc(local)


def _result(user_input: dict[str, Any]) -> dict[str, Value]:
    result: dict[str, Value] = {}
    capacity = user_input.get(CONF_MEASURED_CAPACITY)
    if isinstance(capacity, int | float) and not isinstance(capacity, bool):
        result[CONF_MEASURED_CAPACITY] = float(capacity)
    note = user_input.get(CONF_NOTE)
    if isinstance(note, str) and note.strip():
        result[CONF_NOTE] = note.strip()
    return result


async def async_create_fix_flow(
    hass: HomeAssistant,
    issue_id: str,
    data: dict[str, str | int | float | None] | None,
) -> RepairsFlow:
    """Create the fix flow of a maintenance repair."""
    data = data or {}
    try:
        task = MaintenanceTask(str(data.get("task")))
    except ValueError as err:
        raise data_entry_flow.UnknownHandler(f"{DOMAIN}: {issue_id} has no fix flow") from err
    return MaintenanceRepairFlow(str(data.get("entry_id")), task)
