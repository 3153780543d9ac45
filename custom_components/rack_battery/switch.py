"""Switches that take a pack out of the bank and put it back (README "Control").

Created only for a bank whose user turned control on in its options, and
only for the paths the family's BMS can switch and switch back (the family
catalog): a charge and a discharge switch where the two are separate, one
"Connected" switch where the BMS switches both together. A switch shows what
the BMS reports after the write, never what was asked; turning one goes
through the guard (controller.py), which may refuse it with its numbers.

While a reconnect asked "when matched" waits, the switches it would turn on
say so in their attributes: waiting to rejoin, how many volts apart, the
limit, and when it gives up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, override

from homeassistant.components.switch import SwitchEntity, SwitchEntityDescription
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .bank.control import Change, HeldRejoin, Reason
from .bank.model import PackReading
from .coordinator import RackBatteryConfigEntry
from .entity import RackBatteryEntity, control_entities
from .protocol.catalog import ControlCapabilities

# One write at a time: each goes through the bus in a turn of its own.
PARALLEL_UPDATES = 1


@dataclass(frozen=True, kw_only=True)
class RackBatterySwitchEntityDescription(SwitchEntityDescription):
    """Describes a switch by what the BMS reports and what turning it asks."""

    value_fn: Callable[[PackReading], bool | None]
    # The change that turns the switch on (True) or off (False) at an address.
    change_fn: Callable[[int, bool], Change]
    # Whether a change turns the switch on.
    closes_fn: Callable[[Change], bool]


def _both(reading: PackReading) -> bool | None:
    if reading.charge_enabled is None or reading.discharge_enabled is None:
        return None
    return reading.charge_enabled and reading.discharge_enabled


CONNECTED = RackBatterySwitchEntityDescription(
    key="connected",
    translation_key="connected",
    value_fn=_both,
    change_fn=lambda address, on: Change(address=address, charge=on, discharge=on),
    closes_fn=lambda change: change.charge is True or change.discharge is True,
)
CHARGE_PATH = RackBatterySwitchEntityDescription(
    key="charge_path",
    translation_key="charge_path",
    value_fn=lambda reading: reading.charge_enabled,
    change_fn=lambda address, on: Change(address=address, charge=on),
    closes_fn=lambda change: change.charge is True,
)
DISCHARGE_PATH = RackBatterySwitchEntityDescription(
    key="discharge_path",
    translation_key="discharge_path",
    value_fn=lambda reading: reading.discharge_enabled,
    change_fn=lambda address, on: Change(address=address, discharge=on),
    closes_fn=lambda change: change.discharge is True,
)


REJOIN_WAITING = "waiting"


def rejoin_attributes(held: HeldRejoin) -> dict[str, object]:
    """Return what a switch shows of a reconnect waiting for the voltages to match."""
    values = held.values
    attributes: dict[str, object] = {"rejoin": REJOIN_WAITING}
    if "delta" in values:
        attributes["voltage_apart"] = values["delta"]
    if held.reason is Reason.VOLTAGE_APART:
        attributes["join_limit"] = values.get("limit")
    else:
        attributes["inrush"] = values.get("inrush")
        attributes["inrush_limit"] = values.get("limit")
    attributes["gives_up_at"] = held.give_up_at.isoformat()
    return attributes


def switch_descriptions(
    caps: ControlCapabilities,
) -> tuple[RackBatterySwitchEntityDescription, ...]:
    """Return the switches a family offers: one where its paths go together, else one per path."""
    if caps.paths_together:
        return (CONNECTED,) if caps.can_isolate else ()
    descriptions: list[RackBatterySwitchEntityDescription] = []
    if caps.charge_path:
        descriptions.append(CHARGE_PATH)
    if caps.discharge_path:
        descriptions.append(DISCHARGE_PATH)
    return tuple(descriptions)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: RackBatteryConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up each pack's switches, if control is on (the platform is set up only then)."""
    async_add_entities(control_entities(entry, RackBatterySwitch, switch_descriptions))


class RackBatterySwitch(RackBatteryEntity, SwitchEntity):
    """A path of one pack, as its BMS reports it."""

    entity_description: RackBatterySwitchEntityDescription
    # The held reconnect last shown, and its attributes: made again only
    # when the request or its numbers change, not at every poll.
    _held_shown: HeldRejoin | None = None
    _held_attributes: dict[str, object] | None = None

    @property
    @override
    def extra_state_attributes(self) -> Mapping[str, object] | None:
        """Return the reconnect waiting to turn this switch on, if one does."""
        held = None if self.address is None else self.coordinator.controller.held.get(self.address)
        if held is not None and not self.entity_description.closes_fn(held.change):
            held = None
        if held is not self._held_shown:
            self._held_shown = held
            self._held_attributes = None if held is None else rejoin_attributes(held)
        return self._held_attributes

    @property
    @override
    def is_on(self) -> bool | None:
        """Return what the BMS last reported; unknown where it reports nothing."""
        reading = self.subject
        if not isinstance(reading, PackReading):
            return None
        return self.entity_description.value_fn(reading)

    @override
    def shown(self) -> object:
        """Return what the switch shows: availability, state, and a reconnect waiting on it."""
        return (self.available, self.is_on, self.extra_state_attributes)

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Close the path, if the guard allows it."""
        await self._change(on=True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Open the path, if the guard allows it."""
        await self._change(on=False)

    async def _change(self, *, on: bool) -> None:
        assert self.address is not None
        await self.coordinator.controller.async_change(
            self.entity_description.change_fn(self.address, on), context=self._context
        )
