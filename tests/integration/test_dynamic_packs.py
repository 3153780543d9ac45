"""Packs that join later, packs swapped at an address, and packs gone for good."""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr

from custom_components.rack_battery import async_remove_config_entry_device
from custom_components.rack_battery.const import DOMAIN
from custom_components.rack_battery.rescan import async_rescan

from .conftest import ONE_RELOAD, SimulatedBus, finish_scan, record_states


async def _bank_of(hass: HomeAssistant, bus: SimulatedBus, addresses: list[int]) -> ConfigEntry:
    """Set up a PACE bank of some of the simulated packs through the flow."""
    result: Any = await hass.config_entries.flow.async_init(DOMAIN, context={"source": "user"})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "modbus_tcp"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"host": bus.host, "port": bus.port, "family": "pace_modbus"}
    )
    result = await finish_scan(hass, result)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"packs": [str(address) for address in addresses]}
    )
    await hass.async_block_till_done()
    entry: ConfigEntry = result["result"]
    return entry


async def _rescan(hass: HomeAssistant, entry: ConfigEntry) -> list[Any]:
    """Run the bank's periodic rescan now; return the offers made so far.

    Called directly rather than by moving the clock four hours: whether the
    interval's timer fires depends on how the loop's clock lines up with a
    frozen one (see test_bank), and this is about what the rescan does.
    """
    await async_rescan(hass, entry)
    await hass.async_block_till_done()
    return hass.config_entries.flow.async_progress_by_handler(DOMAIN)


def _pack_devices(hass: HomeAssistant, entry: ConfigEntry) -> dict[str, dr.DeviceEntry]:
    registry = dr.async_get(hass)
    return {
        identifier: device
        for device in dr.async_entries_for_config_entry(registry, entry.entry_id)
        for (_, identifier) in device.identifiers
        if identifier != entry.entry_id
    }


async def test_a_pack_that_appears_is_offered_and_added(
    hass: HomeAssistant, pace_bus: SimulatedBus
) -> None:
    """A pack no bank holds is found by the rescan; confirming adds it as a device."""
    entry = await _bank_of(hass, pace_bus, [1, 2, 3])
    assert hass.states.get("sensor.pace_bank_pack_4_voltage") is None

    offers = await _rescan(hass, entry)
    assert len(offers) == 1
    offer = offers[0]
    assert offer["step_id"] == "add_pack"
    assert offer["context"]["title_placeholders"] == {"bank": "PACE bank", "address": "4"}

    # A second rescan before the user looks does not offer it twice.
    assert len(await _rescan(hass, entry)) == 1

    states = record_states(entry)
    result = await hass.config_entries.flow.async_configure(offer["flow_id"], {})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "pack_added"
    await hass.async_block_till_done()
    assert states == ONE_RELOAD
    assert [pack["address"] for pack in entry.data["packs"]] == [1, 2, 3, 4]
    assert entry.state is ConfigEntryState.LOADED
    assert f"pace_modbus_{pace_bus.bank.pack(4).serial}" in _pack_devices(hass, entry)
    assert hass.states.get("sensor.pace_bank_pack_4_voltage") is not None
    assert not hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_swapped_pack_is_not_shown_under_the_old_name(
    hass: HomeAssistant, pace_bus: SimulatedBus
) -> None:
    """An address that answers with another serial stops feeding the old pack."""
    entry = await _bank_of(hass, pace_bus, [1, 2, 3, 4])
    old_serial = pace_bus.bank.pack(2).serial
    pace_bus.bank.pack(2).serial = "SWAP000002"

    offers = await _rescan(hass, entry)
    assert [offer["step_id"] for offer in offers] == ["replace_pack"]
    await entry.runtime_data.coordinator.async_refresh()
    await hass.async_block_till_done()
    assert hass.states.get("sensor.pace_bank_pack_2_voltage").state == STATE_UNAVAILABLE  # type: ignore[union-attr]
    assert hass.states.get("sensor.pace_bank_pack_1_voltage").state != STATE_UNAVAILABLE  # type: ignore[union-attr]

    result = await hass.config_entries.flow.async_configure(offers[0]["flow_id"], {})
    assert result["reason"] == "pack_added"
    await hass.async_block_till_done()
    serials = {pack["address"]: pack["serial"] for pack in entry.data["packs"]}
    assert serials[2] == "SWAP000002"
    devices = _pack_devices(hass, entry)
    assert "pace_modbus_SWAP000002" in devices
    # The old pack's device stays until the user removes it; the bank no
    # longer holds it, so it may be removed.
    old_device = devices[f"pace_modbus_{old_serial}"]
    assert await async_remove_config_entry_device(hass, entry, old_device) is True
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_only_a_silent_pack_can_be_removed(
    hass: HomeAssistant, pace_bus: SimulatedBus
) -> None:
    """A pack gone for good can be removed; one that answers, or the bank, cannot."""
    entry = await _bank_of(hass, pace_bus, [1, 2, 3, 4])
    pace_bus.bank.take_off_bus(3)
    await entry.runtime_data.coordinator.async_refresh()
    devices = _pack_devices(hass, entry)
    silent = devices[f"pace_modbus_{pace_bus.bank.pack(3).serial}"]
    answering = devices[f"pace_modbus_{pace_bus.bank.pack(1).serial}"]
    bank = next(
        device
        for device in dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
        if (DOMAIN, entry.entry_id) in device.identifiers
    )

    assert await async_remove_config_entry_device(hass, entry, answering) is False
    assert await async_remove_config_entry_device(hass, entry, bank) is False
    states = record_states(entry)
    assert await async_remove_config_entry_device(hass, entry, silent) is True
    await hass.async_block_till_done()
    assert states == ONE_RELOAD
    assert [pack["address"] for pack in entry.data["packs"]] == [1, 2, 4]
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)
