"""Sensors of the bank and of each pack.

Power and current are positive while the bank charges, as every supported
BMS reports them; Home Assistant's energy dashboard takes a battery's power
the other way round, so pick "power is positive when charging" where it asks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, override

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import (
    PERCENTAGE,
    EntityCategory,
    UnitOfElectricCurrent,
    UnitOfElectricPotential,
    UnitOfPower,
    UnitOfTemperature,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.typing import StateType

from .bank.model import BankSnapshot, PackReading
from .coordinator import RackBatteryConfigEntry
from .entity import RackBatteryEntity, entities_for_bank

PARALLEL_UPDATES = 0

# Home Assistant has no unit of electric charge; Ah is what every pack's
# label and BMS speaks.
AMPERE_HOURS = "Ah"


@dataclass(frozen=True, kw_only=True)
class RackBatterySensorEntityDescription[SubjectT](SensorEntityDescription):
    """Describes a sensor by how it reads its value from the bank or a pack."""

    value_fn: Callable[[SubjectT], StateType]


# Measured on every pack and summed or averaged over the bank: one
# description serves both, reading the attribute of the same name.
_SHARED: dict[str, dict[str, Any]] = {
    "voltage": {
        "device_class": SensorDeviceClass.VOLTAGE,
        "native_unit_of_measurement": UnitOfElectricPotential.VOLT,
        "suggested_display_precision": 2,
    },
    "current": {
        "device_class": SensorDeviceClass.CURRENT,
        "native_unit_of_measurement": UnitOfElectricCurrent.AMPERE,
        "suggested_display_precision": 2,
    },
    "power": {
        "device_class": SensorDeviceClass.POWER,
        "native_unit_of_measurement": UnitOfPower.WATT,
        "suggested_display_precision": 0,
    },
    "soc": {
        "translation_key": "soc",
        "device_class": SensorDeviceClass.BATTERY,
        "native_unit_of_measurement": PERCENTAGE,
        "suggested_display_precision": 0,
    },
    "remaining_capacity": {
        "translation_key": "remaining_capacity",
        "native_unit_of_measurement": AMPERE_HOURS,
        "suggested_display_precision": 1,
    },
}


def _shared() -> tuple[RackBatterySensorEntityDescription[Any], ...]:
    return tuple(
        RackBatterySensorEntityDescription(
            key=key,
            state_class=SensorStateClass.MEASUREMENT,
            value_fn=attrgetter(key),
            **options,
        )
        for key, options in _SHARED.items()
    )


PACK_SENSORS: tuple[RackBatterySensorEntityDescription[PackReading], ...] = (
    *_shared(),
    RackBatterySensorEntityDescription(
        key="soh",
        translation_key="soh",
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=PERCENTAGE,
        suggested_display_precision=0,
        value_fn=lambda pack: pack.soh,
    ),
    RackBatterySensorEntityDescription(
        key="full_capacity",
        translation_key="full_capacity",
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=AMPERE_HOURS,
        suggested_display_precision=1,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda pack: pack.full_capacity,
    ),
    RackBatterySensorEntityDescription(
        key="cycles",
        translation_key="cycles",
        state_class=SensorStateClass.TOTAL_INCREASING,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda pack: pack.cycles,
    ),
    RackBatterySensorEntityDescription(
        key="cell_min",
        translation_key="cell_min",
        device_class=SensorDeviceClass.VOLTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        suggested_display_precision=3,
        value_fn=lambda pack: pack.cell_min,
    ),
    RackBatterySensorEntityDescription(
        key="cell_max",
        translation_key="cell_max",
        device_class=SensorDeviceClass.VOLTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        suggested_display_precision=3,
        value_fn=lambda pack: pack.cell_max,
    ),
    RackBatterySensorEntityDescription(
        key="cell_delta",
        translation_key="cell_delta",
        device_class=SensorDeviceClass.VOLTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfElectricPotential.MILLIVOLT,
        suggested_display_precision=0,
        value_fn=lambda pack: None if pack.cell_delta is None else pack.cell_delta * 1000,
    ),
    RackBatterySensorEntityDescription(
        key="temperature_max",
        translation_key="temperature_max",
        device_class=SensorDeviceClass.TEMPERATURE,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfTemperature.CELSIUS,
        suggested_display_precision=1,
        value_fn=lambda pack: pack.temperature_max,
    ),
)

BANK_SENSORS: tuple[RackBatterySensorEntityDescription[BankSnapshot], ...] = (
    *_shared(),
    RackBatterySensorEntityDescription(
        key="packs_online",
        translation_key="packs_online",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda bank: bank.packs_online,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: RackBatteryConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the sensors of the bank and of every pack."""
    async_add_entities(entities_for_bank(entry, RackBatterySensor, BANK_SENSORS, PACK_SENSORS))


class RackBatterySensor(RackBatteryEntity, SensorEntity):
    """A sensor of the bank or of one pack."""

    entity_description: RackBatterySensorEntityDescription[Any]

    @property
    @override
    def native_value(self) -> StateType:
        """Return the value read from this sensor's bank or pack."""
        if (subject := self.subject) is None:
            return None
        return self.entity_description.value_fn(subject)
