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
from .const import CONF_FAMILY, CONF_PACKS, DOMAIN, RESPONSE_TIMEOUT
from .coordinator import BankCoordinator, RackBatteryConfigEntry, RackBatteryRuntimeData
from .entity import bank_device_info
from .protocol.catalog import open_driver
from .protocol.connection import ConnectionSpec
from .protocol.errors import BusUnavailable

PLATFORMS: list[Platform] = [Platform.SENSOR]


async def async_setup_entry(hass: HomeAssistant, entry: RackBatteryConfigEntry) -> bool:
    """Set up a bank from a config entry."""
    driver = open_driver(
        ConnectionSpec.from_dict(entry.data), entry.data[CONF_FAMILY], timeout=RESPONSE_TIMEOUT
    )
    try:
        await driver.connect()
    except BusUnavailable as err:
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key="bus_unavailable",
            translation_placeholders={"error": str(err)},
        ) from err

    packs = {
        identity.address: identity
        for identity in (PackIdentity(**pack) for pack in entry.data[CONF_PACKS])
    }
    coordinator = BankCoordinator(hass, entry, driver, packs)
    try:
        await coordinator.async_config_entry_first_refresh()
    except ConfigEntryNotReady:
        await driver.close()
        raise

    # Registered first, so that each pack's device can name it as its parent.
    bank_device = dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id, **bank_device_info(entry)
    )
    entry.runtime_data = RackBatteryRuntimeData(
        coordinator=coordinator, bank_device_id=bank_device.id
    )
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: RackBatteryConfigEntry) -> bool:
    """Unload a bank and release its bus."""
    if unloaded := await hass.config_entries.async_unload_platforms(entry, PLATFORMS):
        await entry.runtime_data.coordinator.driver.close()
    return unloaded
