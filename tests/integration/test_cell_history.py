"""A year of cell history as hourly statistics, and no state rows for it."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder import history
from homeassistant.components.recorder.statistics import (
    list_statistic_ids,
    statistics_during_period,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.helpers.recorder import get_instance
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from custom_components.rack_battery import async_remove_config_entry_device
from custom_components.rack_battery.bank.hourly import hour_of
from custom_components.rack_battery.const import DOMAIN

from .conftest import SimulatedBus, setup_bank

pytestmark = pytest.mark.freeze_time("2026-03-02 09:41:00+00:00", tick=True)

# Polls ten minutes apart: six samples an hour keep the test short; the
# hourly statistics do not care how often the bank is read.
POLL_EVERY = timedelta(minutes=10)


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(recorder_mock: Any, enable_custom_integrations: None) -> None:
    """Run with the recorder, set up before Home Assistant starts."""


async def _poll(hass: HomeAssistant, freezer: FrozenDateTimeFactory, bus: SimulatedBus) -> None:
    bus.bank.step(POLL_EVERY.total_seconds(), resolution=60)
    freezer.tick(POLL_EVERY)
    async_fire_time_changed(hass)
    for entry in hass.config_entries.async_loaded_entries(DOMAIN):
        await entry.runtime_data.coordinator.async_refresh()
    await hass.async_block_till_done(wait_background_tasks=True)


class Seen:
    """What the simulated pack 1 showed at each poll, by hour."""

    def __init__(self) -> None:
        self.cell_3: dict[datetime, list[float]] = defaultdict(list)
        self.probe_2: dict[datetime, list[float]] = defaultdict(list)
        self.spread: dict[datetime, list[float]] = defaultdict(list)

    def take(self, bus: SimulatedBus) -> None:
        pack = bus.bank.pack(1)
        hour = hour_of(dt_util.utcnow())
        self.cell_3[hour].append(pack.cell_voltages[2])
        self.probe_2[hour].append(pack.cell_temperatures[1])
        cells = pack.cell_voltages
        self.spread[hour].append((max(cells) - min(cells)) * 1000)


async def _rows(hass: HomeAssistant, start: datetime, ids: set[str]) -> dict[str, list[Any]]:
    result: dict[str, list[Any]] = await get_instance(hass).async_add_executor_job(
        statistics_during_period,
        hass,
        start,
        None,
        ids,
        "hour",
        None,
        {"mean", "min", "max"},
    )
    return result


def _check(rows: list[Any], seen: dict[datetime, list[float]], tolerance: float) -> None:
    """One row per closed hour, with that hour's mean, lowest and highest."""
    closed = sorted(seen)[:-1]  # the last hour is still open
    starts = [dt_util.utc_from_timestamp(row["start"]) for row in rows]
    assert starts == closed
    for row in rows:
        values = seen[dt_util.utc_from_timestamp(row["start"])]
        assert row["mean"] == pytest.approx(sum(values) / len(values), abs=tolerance)
        assert row["min"] == pytest.approx(min(values), abs=tolerance)
        assert row["max"] == pytest.approx(max(values), abs=tolerance)


async def test_hourly_cell_statistics_across_a_restart(
    hass: HomeAssistant, pace_bus: SimulatedBus, freezer: FrozenDateTimeFactory
) -> None:
    """Four hours of a discharging bank give one row per hour for every cell,
    probe and spread of every pack, with that hour's mean, lowest and
    highest; a restart in the middle of an hour neither loses it nor writes
    any hour twice; and the disabled cell entities leave no state row."""
    pace_bus.bank.load = lambda _t: 25.0
    started = dt_util.utcnow()
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    seen = Seen()
    seen.take(pace_bus)
    for _ in range(14):
        await _poll(hass, freezer, pace_bus)
        seen.take(pace_bus)

    # Home Assistant restarts the bank mid-hour.
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    seen.take(pace_bus)  # the reload polls once
    for _ in range(12):
        await _poll(hass, freezer, pace_bus)
        seen.take(pace_bus)
    await async_wait_recording_done(hass)

    stem = f"{DOMAIN}:pace_modbus_{pace_bus.bank.pack(1).serial.lower()}"
    ids = {f"{stem}_cell_3_voltage", f"{stem}_temperature_2", f"{stem}_cell_spread"}
    rows = await _rows(hass, hour_of(started), ids)
    assert len(seen.cell_3) >= 5  # 09:41 to past 14:00: four hours closed
    _check(rows[f"{stem}_cell_3_voltage"], seen.cell_3, 0.0011)
    _check(rows[f"{stem}_temperature_2"], seen.probe_2, 0.11)
    _check(rows[f"{stem}_cell_spread"], seen.spread, 2.1)

    # Every cell and probe of every pack (PACE reports five probes: four
    # cell groups and the environment), and each pack's spread.
    listed = await get_instance(hass).async_add_executor_job(list_statistic_ids, hass, None, None)
    ours = {item["statistic_id"]: item for item in listed if item["source"] == DOMAIN}
    assert len(ours) == 4 * (16 + 5 + 1)
    cell = ours[f"{stem}_cell_3_voltage"]
    assert cell["statistics_unit_of_measurement"] == "V"
    assert cell["name"] == "PACE bank pack 1 cell 3 voltage"
    assert cell.get("mean_type", 1) == 1  # arithmetic, where the release says

    # The cell and probe entities stay disabled: no state, no row in the
    # states table, while the enabled ones beside them have rows.
    registry = er.async_get(hass)
    disabled = [
        entity.entity_id
        for entity in er.async_entries_for_config_entry(registry, entry.entry_id)
        if entity.disabled_by is not None
    ]
    assert "sensor.pace_bank_pack_1_cell_03_voltage" in disabled
    assert "sensor.pace_bank_pack_1_temperature_2" in disabled
    assert all(hass.states.get(entity_id) is None for entity_id in disabled)
    recorded = await get_instance(hass).async_add_executor_job(
        history.get_significant_states,
        hass,
        started - timedelta(hours=1),
        dt_util.utcnow(),
        [*disabled, "sensor.pace_bank_pack_1_lowest_cell_voltage"],
    )
    assert list(recorded) == ["sensor.pace_bank_pack_1_lowest_cell_voltage"]
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_statistics_stop_for_a_removed_pack(
    hass: HomeAssistant, pace_bus: SimulatedBus, freezer: FrozenDateTimeFactory
) -> None:
    """A pack gone from the bus and removed by the user gets no more hours;
    the packs still in the bank carry on, and the removed pack's history stays."""
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    started = dt_util.utcnow()
    for _ in range(3):  # past 10:00: the 09:00 hour is written for every pack
        await _poll(hass, freezer, pace_bus)
    pace_bus.bank.take_off_bus(3)
    await _poll(hass, freezer, pace_bus)
    wanted = (DOMAIN, f"pace_modbus_{pace_bus.bank.pack(3).serial}")
    [device] = [
        device
        for device in dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
        if wanted in device.identifiers
    ]
    assert await async_remove_config_entry_device(hass, entry, device) is True
    await hass.async_block_till_done()
    for _ in range(12):  # two more hours
        await _poll(hass, freezer, pace_bus)
    await async_wait_recording_done(hass)

    def stem(address: int) -> str:
        return f"{DOMAIN}:pace_modbus_{pace_bus.bank.pack(address).serial.lower()}_cell_1_voltage"

    rows = await _rows(hass, hour_of(started), {stem(2), stem(3)})
    kept = [dt_util.utc_from_timestamp(row["start"]) for row in rows[stem(2)]]
    removed = [dt_util.utc_from_timestamp(row["start"]) for row in rows[stem(3)]]
    assert len(kept) == 3
    # Its last hour is the last one closed before it was removed; what the
    # hour still open held of it (it answered at 10:11) is dropped.
    assert removed == kept[:1]
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_an_enabled_cell_is_live_and_its_long_term_history_is_the_cell_history(
    hass: HomeAssistant, pace_bus: SimulatedBus
) -> None:
    """A user who enables a cell's entity sees the cell live. Its long-term
    history is the bank's cell history, so the recorder offers no second
    statistic for the entity (it would work the same hourly figures out
    again every 5 minutes), while the pack's lowest cell keeps its own."""
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    cell = "sensor.pace_bank_pack_1_cell_03_voltage"
    er.async_get(hass).async_update_entity(cell, disabled_by=None)
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()

    state = hass.states.get(cell)
    assert state is not None
    assert float(state.state) == pytest.approx(pace_bus.bank.pack(1).cell_voltages[2], abs=0.0011)
    assert state.attributes["unit_of_measurement"] == "V"
    assert "state_class" not in state.attributes
    listed = await get_instance(hass).async_add_executor_job(list_statistic_ids, hass, None, None)
    offered = {item["statistic_id"] for item in listed}
    assert cell not in offered
    assert "sensor.pace_bank_pack_1_lowest_cell_voltage" in offered
    assert await hass.config_entries.async_unload(entry.entry_id)
