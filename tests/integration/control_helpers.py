"""What a user could do to a bank whose control is off, or that only listens.

Shared by the control and listen-only tests: every action on every pack,
each way, and every switch and number control would create, aimed at by
the entity ids it would give them. The tests then ask the wire whether any
of it got through.
"""

from __future__ import annotations

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import ATTR_DEVICE_ID, ATTR_ENTITY_ID
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
import pytest

from custom_components.rack_battery.const import DOMAIN

# Each pack's switches and numbers, by the end of the entity ids control
# would give them.
CONTROL_ENTITIES = (
    ("switch", "charging_allowed"),
    ("switch", "discharging_allowed"),
    ("switch", "connected"),
    ("number", "max_charge_current"),
    ("number", "max_discharge_current"),
)

# Every action, each way.
ACTIONS: tuple[tuple[str, dict[str, float]], ...] = (
    ("isolate_pack", {}),
    ("reconnect_pack", {}),
    ("set_current_limit", {"charge_limit": 0.0}),
    ("set_current_limit", {"discharge_limit": 0.0}),
    ("set_current_limit", {"charge_limit": 10.0, "discharge_limit": 10.0}),
)


def assert_no_control_entities(hass: HomeAssistant, entry: ConfigEntry) -> None:
    """No switch and no number, neither as a state nor in the registry."""
    assert hass.states.async_entity_ids(("switch", "number")) == []
    registered = er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    assert [e.entity_id for e in registered if e.domain in ("switch", "number")] == []


async def try_every_control(hass: HomeAssistant, entry: ConfigEntry, prefix: str) -> None:
    """Call every action on every pack and toggle every control a user could reach.

    Each action must be refused as control being off. The switch and number
    platforms are loaded as other integrations load them in a real Home
    Assistant, so their services exist; the entities they are aimed at
    (``<domain>.<prefix>_pack_<address>_<key>``) do not.
    """
    for domain in ("switch", "number"):
        assert await async_setup_component(hass, domain, {})
    controller = entry.runtime_data.coordinator.controller
    for address in entry.runtime_data.coordinator.packs:
        device_id = controller.pack_device_id(address)
        assert device_id is not None
        for service, data in ACTIONS:
            with pytest.raises(ServiceValidationError) as refused:
                await hass.services.async_call(
                    DOMAIN, service, {ATTR_DEVICE_ID: device_id, **data}, blocking=True
                )
            assert refused.value.translation_key == "control_disabled"
        for domain, key in CONTROL_ENTITIES:
            target = {ATTR_ENTITY_ID: f"{domain}.{prefix}_pack_{address}_{key}"}
            if domain == "switch":
                for turn in ("turn_off", "turn_on", "toggle"):
                    await hass.services.async_call(domain, turn, target, blocking=True)
            else:
                await hass.services.async_call(
                    domain, "set_value", {**target, "value": 0}, blocking=True
                )
    await hass.async_block_till_done()
