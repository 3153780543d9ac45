"""The bank's event entity: every finding raised, changed or cleared.

It takes what the bus event ``rack_battery_finding`` says about its own
bank, so the entity, the logbook and automations always agree.
"""

from __future__ import annotations

from typing import Any, override

from homeassistant.components.event import EventEntity, EventEntityDescription
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import EVENT_FINDING
from .coordinator import RackBatteryConfigEntry
from .entity import RackBatteryEntity
from .findings import (
    ACTION_CHANGED,
    ACTION_CLEARED,
    ACTION_RAISED,
    ATTR_ACTION,
    ATTR_CONFIG_ENTRY_ID,
)

PARALLEL_UPDATES = 0

EVENT_TYPES = {
    ACTION_RAISED: "finding_raised",
    ACTION_CHANGED: "finding_changed",
    ACTION_CLEARED: "finding_cleared",
}

FINDING = EventEntityDescription(
    key="finding",
    translation_key="finding",
    event_types=list(EVENT_TYPES.values()),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: RackBatteryConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the bank's event entity."""
    async_add_entities([RackBatteryFindingEvent(entry, FINDING)])


class RackBatteryFindingEvent(RackBatteryEntity, EventEntity):
    """Fires with every finding of the bank that is raised, changed or cleared."""

    @override
    async def async_added_to_hass(self) -> None:
        """Follow the bank's findings on the bus."""
        await super().async_added_to_hass()
        self.async_on_remove(self.hass.bus.async_listen(EVENT_FINDING, self._handle_finding))

    @callback
    def _handle_finding(self, event: Event[dict[str, Any]]) -> None:
        data = event.data
        if data.get(ATTR_CONFIG_ENTRY_ID) != self.coordinator.config_entry.entry_id:
            return
        event_type = EVENT_TYPES.get(data.get(ATTR_ACTION, ""))
        if event_type is None:
            return
        attributes = {
            key: value
            for key, value in data.items()
            if key not in {ATTR_ACTION, ATTR_CONFIG_ENTRY_ID}
        }
        self._trigger_event(event_type, attributes)
        self.async_write_ha_state()
