"""The buses of this Home Assistant, shared by the banks on them.

The registry lives in ``hass.data`` under the domain rather than in a module
global: it holds asyncio locks and open sockets, which belong to one event
loop and one Home Assistant instance, and a module global would outlive
both (tests start a fresh Home Assistant, on a fresh loop, for every test).
"""

from __future__ import annotations

from collections.abc import Iterable

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.util.hass_dict import HassKey

from .const import CONF_PACKS, DOMAIN, RESPONSE_TIMEOUT
from .protocol.bus import BusRegistry
from .protocol.connection import ConnectionSpec

BUSES: HassKey[BusRegistry] = HassKey(DOMAIN)
# Entry data key: the bank is read by listening to its master pack's polls.
CONF_LISTEN_ONLY = "listen_only"


def bus_registry(hass: HomeAssistant) -> BusRegistry:
    """Return the registry of buses, creating it on first use."""
    if (registry := hass.data.get(BUSES)) is None:
        registry = hass.data[BUSES] = BusRegistry(timeout=RESPONSE_TIMEOUT, wire_timed=True)
    return registry


def claimed_addresses(entries: Iterable[ConfigEntry], spec: ConnectionSpec) -> set[int]:
    """Return the addresses that banks already set up on a bus hold.

    Entries without a bus (one the user chose to ignore) hold nothing.
    """
    return {
        pack["address"]
        for entry in entries
        if "wire" in entry.data and ConnectionSpec.from_dict(entry.data).bus_key == spec.bus_key
        for pack in entry.data.get(CONF_PACKS, [])
    }
