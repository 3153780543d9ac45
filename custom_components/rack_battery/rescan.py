"""Packs that join a bank later, packs swapped at an address, packs gone for good.

Packs do not announce themselves: a pack added to the rack, or one whose DIP
switches were set to a free address, is only seen by asking. So every few
hours the bus is asked at the addresses no bank holds, and a pack found
there is offered as a discovery ("new pack found") that the user confirms.

The same rescan asks each of the bank's own packs who it is. Polls carry no
serial number, so a pack swapped for another at the same address would go
on being shown under the old pack's name. As core's solaredge_modbus does
for what hangs off an inverter (its meters and batteries), a swap is treated
as hardware that changed: the address is taken out of the poll at once, so
none of the newcomer's numbers are written under the old pack's device, and
the newcomer is offered as a new pack, whose confirmation reloads the bank.
A ConfigEntryError, which solaredge_modbus raises when the inverter itself
is another one, would stop every pack of the bank over one swapped pack.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Final

from homeassistant.config_entries import SOURCE_INTEGRATION_DISCOVERY
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, discovery_flow
from homeassistant.helpers.event import async_track_time_interval

from .bank.model import PackIdentity
from .buses import claimed_addresses
from .const import CONF_FAMILY, CONF_PACKS, DOMAIN, LOGGER
from .coordinator import RackBatteryConfigEntry
from .entity import pack_device_key
from .protocol.connection import ConnectionSpec
from .protocol.discovery import find_packs, read_identity
from .protocol.errors import BusUnavailable

# Slow on purpose: each address nobody holds costs a full response timeout,
# which every bank on the bus spends waiting.
RESCAN_INTERVAL: Final = timedelta(hours=4)
# What a discovery of a new pack carries.
DISCOVERY_ENTRY_ID: Final = "entry_id"
DISCOVERY_PACK: Final = "pack"
DISCOVERY_REPLACES: Final = "replaces"


def async_start_rescanning(hass: HomeAssistant, entry: RackBatteryConfigEntry) -> None:
    """Rescan the bank's bus every few hours while the entry is loaded."""
    entry.async_on_unload(
        async_track_time_interval(
            hass,
            partial(async_rescan, hass, entry),
            RESCAN_INTERVAL,
            name=f"{DOMAIN} rescan {entry.title}",
        )
    )


async def async_rescan(
    hass: HomeAssistant, entry: RackBatteryConfigEntry, _now: datetime | None = None
) -> None:
    """Check the bank's packs are who they were, and offer packs that appeared."""
    coordinator = entry.runtime_data.coordinator
    spec = ConnectionSpec.from_dict(entry.data)
    try:
        for address, known in list(coordinator.packs.items()):
            identity = await read_identity(coordinator.bus, coordinator.driver, address)
            if identity is None or not known.serial or not identity.serial:
                continue
            if identity.serial != known.serial:
                LOGGER.warning(
                    "%s: address %s now answers as serial %s, not %s; its readings are"
                    " no longer shown as pack %s until the new pack is confirmed",
                    entry.title,
                    address,
                    identity.serial,
                    known.serial,
                    known.serial,
                )
                coordinator.packs.pop(address)
                _offer(hass, entry, identity, replaces=known)
        new = await find_packs(
            coordinator.bus,
            spec,
            entry.data[CONF_FAMILY],
            skip=claimed_addresses(hass.config_entries.async_entries(DOMAIN), spec),
        )
    except BusUnavailable as err:
        LOGGER.debug("%s: rescan stopped, the bus is down: %s", entry.title, err)
        return
    for identity in new:
        LOGGER.info("%s: a new pack answers at address %s", entry.title, identity.address)
        _offer(hass, entry, identity)


def _offer(
    hass: HomeAssistant,
    entry: RackBatteryConfigEntry,
    identity: PackIdentity,
    *,
    replaces: PackIdentity | None = None,
) -> None:
    """Offer a pack to the user as a discovery of this bank."""
    data: dict[str, Any] = {DISCOVERY_ENTRY_ID: entry.entry_id, DISCOVERY_PACK: asdict(identity)}
    if replaces is not None:
        data[DISCOVERY_REPLACES] = asdict(replaces)
    discovery_flow.async_create_flow(
        hass, DOMAIN, context={"source": SOURCE_INTEGRATION_DISCOVERY}, data=data
    )


def pack_of_device(entry: RackBatteryConfigEntry, device: dr.DeviceEntry) -> PackIdentity | None:
    """Return the pack a device stands for, None for the bank's own device."""
    for pack in entry.data[CONF_PACKS]:
        identity = PackIdentity(**pack)
        if (DOMAIN, pack_device_key(entry, identity)) in device.identifiers:
            return identity
    return None


async def async_remove_pack_device(
    hass: HomeAssistant, entry: RackBatteryConfigEntry, device: dr.DeviceEntry
) -> bool:
    """Let the user remove a pack that no longer answers, and only such a pack.

    A pack that answers would come straight back on the next rescan, and the
    bank's own device goes with the bank. A pack the bank no longer holds
    (swapped for another at its address) can always go.
    """
    if (DOMAIN, entry.entry_id) in device.identifiers:
        return False
    identity = pack_of_device(entry, device)
    if identity is None:
        # A pack the bank no longer holds (one swapped for another at its
        # address): nothing polls it any more.
        return True
    data = entry.runtime_data.coordinator.data
    if data is not None and identity.address in data.snapshot.readings:
        return False
    packs = [pack for pack in entry.data[CONF_PACKS] if pack["address"] != identity.address]
    if not packs:
        # A bank of no packs polls nothing; deleting the bank is what is meant.
        return False
    # The bank's update listener reloads it without the pack.
    hass.config_entries.async_update_entry(entry, data={**entry.data, CONF_PACKS: packs})
    return True
