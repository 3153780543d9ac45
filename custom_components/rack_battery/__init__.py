"""Rack Battery Bank: 48 V rack batteries wired in parallel.

Each config entry is one bank on one bus. The packs it found while being set
up are polled as one bank; every pack is a device hanging off the bank's.
"""

from __future__ import annotations

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv, device_registry as dr
from homeassistant.helpers.typing import ConfigType

from .bank.model import PackIdentity
from .buses import CONF_LISTEN_ONLY, bus_registry
from .cell_history import async_start_cell_history
from .const import CONF_FAMILY, CONF_PACKS, DOMAIN
from .controller import async_forget_control_repairs, control_enabled
from .coordinator import BankCoordinator, RackBatteryConfigEntry, RackBatteryRuntimeData
from .entity import bank_device_info
from .findings import async_forget_bank, async_start_announcing
from .protocol.connection import ConnectionSpec
from .protocol.discovery import driver_on
from .protocol.drivers.base import BmsDriver
from .protocol.errors import BusUnavailable
from .protocol.listen import BusListener, open_listener
from .rescan import async_remove_pack_device, async_start_rescanning
from .services import async_register_services
from .store import BankStore

PLATFORMS: list[Platform] = [
    Platform.BINARY_SENSOR,
    Platform.EVENT,
    Platform.IMAGE,
    Platform.SENSOR,
]
# Created only for a bank whose user turned control on (README "Control").
CONTROL_PLATFORMS: list[Platform] = [Platform.NUMBER, Platform.SWITCH]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)
# How long setup listens for a listen-only bank's packs before its first poll.
FIRST_HEARD_WAIT = 10.0


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the actions, which reach any loaded bank's packs."""
    async_register_services(hass)
    return True


def _platforms(entry: RackBatteryConfigEntry) -> list[Platform]:
    """Return the platforms of a bank: the switches and numbers only while control is on."""
    return [*PLATFORMS, *CONTROL_PLATFORMS] if control_enabled(entry) else PLATFORMS


async def async_setup_entry(hass: HomeAssistant, entry: RackBatteryConfigEntry) -> bool:
    """Set up a bank from a config entry.

    The driver does not open a connection of its own: it runs over the bus's
    shared transport, borrowed from the registry, so banks on one gateway or
    serial port share one connection and take turns on it. A listen-only
    bank instead reads the line through a source of its own (it never sends,
    so it needs no turn), and keeps the bus only for its bookkeeping.
    """
    spec = ConnectionSpec.from_dict(entry.data)
    buses = bus_registry(hass)
    bus = buses.borrow(spec, entry.entry_id)
    packs = {
        identity.address: identity
        for identity in (PackIdentity(**pack) for pack in entry.data[CONF_PACKS])
    }
    listening = bool(entry.data.get(CONF_LISTEN_ONLY))
    if listening:
        driver: BmsDriver = open_listener(spec, entry.data[CONF_FAMILY])
    else:
        driver = driver_on(bus, spec, entry.data[CONF_FAMILY])
    try:
        await driver.connect()
        if isinstance(driver, BusListener):
            # The master polls at its own pace: give it time to ask each pack.
            await driver.hear(within=FIRST_HEARD_WAIT, addresses=packs)
    except BusUnavailable as err:
        await buses.give_back(bus, entry.entry_id)
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key="bus_unavailable",
            translation_placeholders={"error": str(err)},
        ) from err

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
        coordinator=coordinator, bank_device_id=bank_device.id, platforms=_platforms(entry)
    )
    await hass.config_entries.async_forward_entry_setups(entry, entry.runtime_data.platforms)
    # After the platforms, so that every finding can name its pack's device.
    await async_start_announcing(hass, entry)
    async_start_cell_history(hass, entry)
    if not listening:
        # A rescan asks the bus, which a listen-only bank must never do.
        async_start_rescanning(hass, entry)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: RackBatteryConfigEntry) -> bool:
    """Unload a bank, stop holding any limit on its packs, and release its bus."""
    platforms = entry.runtime_data.platforms
    if unloaded := await hass.config_entries.async_unload_platforms(entry, platforms):
        entry.runtime_data.coordinator.controller.release()
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
    if bus.holders <= {holder} or isinstance(coordinator.driver, BusListener):
        # A listener's source is its own, whoever else is on the bus.
        await coordinator.driver.close()
    await bus_registry(hass).give_back(bus, holder)


async def async_remove_entry(hass: HomeAssistant, entry: RackBatteryConfigEntry) -> None:
    """Remove a bank's repairs and its stored maintenance history."""
    async_forget_bank(hass, entry.entry_id)
    async_forget_control_repairs(hass, entry.entry_id)
    await BankStore(hass, entry.entry_id).async_remove()


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: RackBatteryConfigEntry, device: dr.DeviceEntry
) -> bool:
    """Let a pack that no longer answers be removed from its device page."""
    return await async_remove_pack_device(hass, entry, device)
