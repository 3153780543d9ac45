"""What the user reads: device makers and models, sorted cells, logbook lines."""

from __future__ import annotations

from collections.abc import Callable

from homeassistant.core import Event, HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest

from custom_components.rack_battery.const import DOMAIN, EVENT_FINDING
from custom_components.rack_battery.entity import pack_device_key
from custom_components.rack_battery.logbook import async_describe_events

from .conftest import SimulatedBus, setup_bank

pytestmark = pytest.mark.freeze_time(tick=True)


async def test_a_pace_bank_is_made_by_pace_and_its_packs_say_so(
    hass: HomeAssistant, pace_bus: SimulatedBus
) -> None:
    """The simulator's PACE packs carry a PACE model, and bank and packs one maker."""
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
    assert {device.manufacturer for device in devices} == {"PACE"}
    packs = [device for device in devices if device.via_device_id is not None]
    assert len(packs) == 4
    assert {device.model for device in packs} == {"P16S100A"}
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_pylontech_bank_spells_its_maker_one_way(
    hass: HomeAssistant, pylontech_bus: SimulatedBus
) -> None:
    """A Pylontech BMS calls its maker "PYLON"; the devices say Pylontech,
    and no pack offers a state of health it never reports."""
    entry = await setup_bank(hass, pylontech_bus, wire="ascii_tcp")
    devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
    assert {device.manufacturer for device in devices} == {"Pylontech"}
    registry = er.async_get(hass)
    keys = {
        entity.unique_id.rsplit("_", 1)[-1]
        for entity in er.async_entries_for_config_entry(registry, entry.entry_id)
    }
    assert "soh" not in keys
    assert hass.states.get("sensor.pylontech_bank_pack_2_state_of_health") is None
    assert hass.states.get("sensor.pylontech_bank_pack_2_voltage") is not None

    # Left behind by an earlier version, they would show "unavailable" for
    # good: the next start removes them.
    pack = pack_device_key(entry, entry.runtime_data.coordinator.packs[2])
    leftovers = [
        registry.async_get_or_create(
            "sensor", DOMAIN, unique_id, config_entry=entry, suggested_object_id=object_id
        ).entity_id
        for unique_id, object_id in (
            (f"{pack}_soh", "pylontech_bank_pack_2_state_of_health"),
            (f"{entry.entry_id}_time_to_empty", "pylontech_bank_time_to_empty"),
        )
    ]
    assert all(registry.async_get(entity_id) for entity_id in leftovers)
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert [registry.async_get(entity_id) for entity_id in leftovers] == [None, None]
    assert registry.async_get("sensor.pylontech_bank_pack_2_voltage") is not None
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_cells_sort_by_number(hass: HomeAssistant, pace_bus: SimulatedBus) -> None:
    """Listed by name, cell 2 comes before cell 10, as on the pack."""
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    registry = er.async_get(hass)
    cells = [
        entity.entity_id
        for entity in er.async_entries_for_config_entry(registry, entry.entry_id)
        if entity.entity_id.startswith("sensor.pace_bank_pack_1_cell_")
        and entity.entity_id.endswith("_voltage")
        and "spread" not in entity.entity_id
    ]
    assert len(cells) == 16
    by_number = sorted(cells, key=lambda entity_id: int(entity_id.split("_")[-2]))
    assert sorted(cells) == by_number
    assert by_number[0] == "sensor.pace_bank_pack_1_cell_01_voltage"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_logbook_line_names_the_pack_device_and_links_to_it(
    hass: HomeAssistant, pace_bus: SimulatedBus
) -> None:
    """With two banks, "pack 4" alone would not say which: the line carries
    the pack's device name as the user sees it (renamed, too), and a link."""
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    devices = dr.async_get(hass)
    pack = next(
        device
        for device in dr.async_entries_for_config_entry(devices, entry.entry_id)
        if device.name == "PACE bank pack 4"
    )
    described: dict[str, Callable[[Event], dict[str, str]]] = {}

    def capture(domain: str, event_type: str, describe: Callable[[Event], dict[str, str]]) -> None:
        assert domain == DOMAIN
        described[event_type] = describe

    async_describe_events(hass, capture)
    data = {
        "action": "raised",
        "rule": "capacity_mismatch",
        "severity": "warning",
        "address": 4,
        "config_entry_id": entry.entry_id,
        "device_id": pack.id,
    }
    line = described[EVENT_FINDING](Event(EVENT_FINDING, data))
    assert line["name"] == "PACE bank pack 4"
    assert line["message"] == "capacity mismatch found (warning)"
    assert line["entity_id"] == "binary_sensor.pace_bank_pack_4_problem"

    devices.async_update_device(pack.id, name_by_user="Garage pack 4")
    line = described[EVENT_FINDING](Event(EVENT_FINDING, data))
    assert line["name"] == "Garage pack 4"
    assert await hass.config_entries.async_unload(entry.entry_id)
