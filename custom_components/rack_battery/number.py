"""Numbers that throttle a pack: its charge and discharge current limits (README "Control").

Created only for a bank whose user turned control on in its options, and
only where the family's BMS takes limits (the catalog's ``throttle``). A
number shows the limit the BMS reports, read back after each write, never
what was asked. Setting one goes through the guard (controller.py), as the
``set_current_limit`` action does: a limit the rest of the bank cannot make
up for is refused with the guard's numbers. It runs from 0 A (the path
open) to the pack's own limit; set to its own limit, the throttle is
released and the pack follows its BMS's own limits again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import override

from homeassistant.components.number import (
    NumberDeviceClass,
    NumberEntity,
    NumberEntityDescription,
)
from homeassistant.const import EntityCategory, UnitOfElectricCurrent
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .bank.control import Change, Direction
from .bank.model import PackReading
from .coordinator import RackBatteryConfigEntry
from .entity import RackBatteryEntity, control_entities
from .protocol.catalog import ControlCapabilities

# One write at a time: each goes through the bus in a turn of its own.
PARALLEL_UPDATES = 1


@dataclass(frozen=True, kw_only=True)
class RackBatteryNumberEntityDescription(NumberEntityDescription):
    """Describes a pack's current limit by what the BMS reports and what setting it asks."""

    direction: Direction
    value_fn: Callable[[PackReading], float | None]
    # The change that throttles the path to a value (A) at an address.
    change_fn: Callable[[int, float], Change]
    # The change that gives the path back its own limit, where the family
    # can close the path (else the own limit is held as a throttle).
    release_fn: Callable[[int], Change]
    # Whether the family lets the path be closed again (release_fn offered).
    offered_fn: Callable[[ControlCapabilities], bool]


def _limit(
    direction: Direction,
    value_fn: Callable[[PackReading], float | None],
    change_fn: Callable[[int, float], Change],
    release_fn: Callable[[int], Change],
    offered_fn: Callable[[ControlCapabilities], bool],
) -> RackBatteryNumberEntityDescription:
    key = f"max_{direction.value}_current"
    return RackBatteryNumberEntityDescription(
        key=key,
        translation_key=key,
        device_class=NumberDeviceClass.CURRENT,
        native_unit_of_measurement=UnitOfElectricCurrent.AMPERE,
        native_min_value=0.0,
        # 0x94 sends 100 mA counts.
        native_step=0.1,
        entity_category=EntityCategory.CONFIG,
        direction=direction,
        value_fn=value_fn,
        change_fn=change_fn,
        release_fn=release_fn,
        offered_fn=offered_fn,
    )


MAX_CHARGE_CURRENT = _limit(
    Direction.CHARGE,
    value_fn=lambda reading: reading.charge_current_limit,
    change_fn=lambda address, amps: Change(address=address, charge_limit=amps),
    release_fn=lambda address: Change(address=address, charge=True),
    offered_fn=lambda caps: caps.charge_path,
)
MAX_DISCHARGE_CURRENT = _limit(
    Direction.DISCHARGE,
    value_fn=lambda reading: reading.discharge_current_limit,
    change_fn=lambda address, amps: Change(address=address, discharge_limit=amps),
    release_fn=lambda address: Change(address=address, discharge=True),
    offered_fn=lambda caps: caps.discharge_path,
)


def number_descriptions(
    caps: ControlCapabilities,
) -> tuple[RackBatteryNumberEntityDescription, ...]:
    """Return the numbers a family offers: both current limits where its BMS takes them."""
    if not caps.throttle:
        return ()
    return (MAX_CHARGE_CURRENT, MAX_DISCHARGE_CURRENT)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: RackBatteryConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up each pack's current limits, if control is on (the platform is set up only then)."""
    async_add_entities(control_entities(entry, RackBatteryNumber, number_descriptions))


class RackBatteryNumber(RackBatteryEntity, NumberEntity):
    """A current limit of one pack, as its BMS reports it."""

    entity_description: RackBatteryNumberEntityDescription

    @property
    def _reading(self) -> PackReading | None:
        reading = self.subject
        return reading if isinstance(reading, PackReading) else None

    @property
    @override
    def available(self) -> bool:
        """Return whether the pack answered and reports this limit."""
        reading = self._reading
        return (
            super().available
            and reading is not None
            and self.entity_description.value_fn(reading) is not None
        )

    @property
    @override
    def native_value(self) -> float | None:
        """Return the limit the BMS last reported."""
        reading = self._reading
        return None if reading is None else self.entity_description.value_fn(reading)

    @override
    def shown(self) -> object:
        """Return what the number shows: availability, the limit and how far it may go."""
        return (self.available, self.native_value, self.native_max_value)

    @property
    @override
    def native_max_value(self) -> float:
        """Return the pack's own limit: the most a throttle may ask of it."""
        return self._ceiling() or 0.0

    def _ceiling(self) -> float | None:
        assert self.address is not None
        state = self.coordinator.controller.pack_state(self.address)
        return None if state is None else state.ceiling(self.entity_description.direction)

    async def async_set_native_value(self, value: float) -> None:
        """Throttle the path to ``value`` A, or release it at the pack's own limit."""
        assert self.address is not None
        description = self.entity_description
        controller = self.coordinator.controller
        ceiling = self._ceiling()
        if (
            ceiling is not None
            and value >= ceiling
            and description.offered_fn(controller.capabilities)
        ):
            change = description.release_fn(self.address)
        else:
            change = description.change_fn(self.address, value)
        await controller.async_change(change, context=self._context)
