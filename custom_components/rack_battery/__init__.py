"""Rack Battery Bank: 48 V rack batteries wired in parallel.

Each config entry is one bank on one bus. The packs it found while being set
up are polled as one bank; every pack is a device hanging off the bank's.
"""

from __future__ import annotations

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryNotReady
from homeassistant.helpers import device_registry as dr

from .bank.model import PackIdentity
from .buses import bus_registry
from .const import CONF_FAMILY, CONF_PACKS, DOMAIN
from .coordinator import BankCoordinator, RackBatteryConfigEntry, RackBatteryRuntimeData
from .entity import bank_device_info
from .findings import async_forget_bank, async_start_announcing
from .protocol.connection import ConnectionSpec
from .protocol.discovery import driver_on
from .protocol.errors import BusUnavailable
from .rescan import async_remove_pack_device, async_start_rescanning
from .store import BankStore

PLATFORMS: list[Platform] = [Platform.BINARY_SENSOR, Platform.EVENT, Platform.SENSOR]


async def async_setup_entry(hass: HomeAssistant, entry: RackBatteryConfigEntry) -> bool:
    """Set up a bank from a config entry.

    The driver does not open a connection of its own: it runs over the bus's
    shared transport, borrowed from the registry, so banks on one gateway or
    serial port share one connection and take turns on it.
    """
    spec = ConnectionSpec.from_dict(entry.data)
    buses = bus_registry(hass)
    bus = buses.borrow(spec, entry.entry_id)
    driver = driver_on(bus, spec, entry.data[CONF_FAMILY])
    try:
        await driver.connect()
    except BusUnavailable as err:
        await buses.give_back(bus, entry.entry_id)
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key="bus_unavailable",
            translation_placeholders={"error": str(err)},
        ) from err

    packs = {
        identity.address: identity
        for identity in (PackIdentity(**pack) for pack in entry.data[CONF_PACKS])
    }
    coordinator = BankCoordinator(hass, entry, driver, packs, bus=bus)
    try:
        await coordinator.async_config_entry_first_refresh()
    except BaseException:
        await _async_release(hass, entry.entry_id, coordinator)
        raise

    # Registered first, so that each pack's device can name it as its parent.
    bank_device = dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id, **bank_device_info(entry)
    )
    entry.runtime_data = RackBatteryRuntimeData(
        coordinator=coordinator, bank_device_id=bank_device.id
    )
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    # After the platforms, so that every finding can name its pack's device.
    await async_start_announcing(hass, entry)
    async_start_rescanning(hass, entry)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: RackBatteryConfigEntry) -> bool:
    """Unload a bank and release its bus."""
    if unloaded := await hass.config_entries.async_unload_platforms(entry, PLATFORMS):
        await _async_release(hass, entry.entry_id, entry.runtime_data.coordinator)
    return unloaded


async def _async_release(hass: HomeAssistant, holder: str, coordinator: BankCoordinator) -> None:
    """Give the bus back; the last bank on it also closes its driver.

    A driver's close() closes the transport, which other banks on the bus
    are still using, so only the last one calls it (stopping whatever the
    driver runs in the background, such as a CAN keep-alive); the registry
    then closes the bus's transports.
    """
    bus = coordinator.bus
    if bus.holders <= {holder}:
        await coordinator.driver.close()
    await bus_registry(hass).give_back(bus, holder)


async def async_remove_entry(hass: HomeAssistant, entry: RackBatteryConfigEntry) -> None:
    """Remove a bank's repairs and its stored maintenance history."""
    async_forget_bank(hass, entry.entry_id)
    await BankStore(hass, entry.entry_id).async_remove()


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: RackBatteryConfigEntry, device: dr.DeviceEntry
) -> bool:
    """Let a pack that no longer answers be removed from its device page."""
    return await async_remove_pack_device(hass, entry, device)
