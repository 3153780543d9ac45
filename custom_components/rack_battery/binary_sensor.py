"""Binary sensors: a problem flag per pack and for the bank, BMS alarms and FET states.

"Problem" is what the bank's rules found (see findings.py): on while a
finding at warning or worse is open. "BMS alarm" is what the pack's own BMS
reports: a limit approached (warning) or acted on (protection). The two are
kept apart on purpose: a BMS alarm comes and goes with the load, the rules
look at the bank over minutes and across packs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, override

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .bank.analysis import Finding, Severity
from .bank.model import PackReading, fields_read
from .coordinator import FINDINGS_MOVED, RackBatteryConfigEntry
from .entity import RackBatteryEntity, entities_for_bank

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class RackBatteryBinarySensorEntityDescription(BinarySensorEntityDescription):
    """Describes a binary sensor by what it reads.

    ``value_fn`` and ``attributes_fn`` are handed the pack's reading, or,
    for a sensor ``about_findings``, the open findings of its pack or bank.
    Such a sensor stays available while its pack is silent: a pack that
    keeps dropping off the bus is exactly when its problem must show.
    """

    value_fn: Callable[[Any], bool | None]
    attributes_fn: Callable[[Any], Mapping[str, Any]] | None = None
    about_findings: bool = False
    # For a sensor that is on below the user's low battery level: the value
    # compared with that level, which replaces value_fn.
    low_fn: Callable[[Any], float | None] | None = None


def _has_problem(findings: tuple[Finding, ...]) -> bool:
    return any(finding.severity.rank >= Severity.WARNING.rank for finding in findings)


def _findings_attributes(findings: tuple[Finding, ...]) -> dict[str, Any]:
    return {
        "findings": [
            {
                "id": finding.id,
                "rule": finding.rule,
                "severity": finding.severity.value,
                "address": finding.address,
                "since": finding.since.isoformat(),
            }
            for finding in findings
        ]
    }


def _alarm_attributes(pack: PackReading) -> dict[str, Any]:
    return {"warnings": sorted(pack.warnings), "protections": sorted(pack.protections)}


PROBLEM = RackBatteryBinarySensorEntityDescription(
    key="problem",
    device_class=BinarySensorDeviceClass.PROBLEM,
    about_findings=True,
    value_fn=_has_problem,
    attributes_fn=_findings_attributes,
)

# Home Assistant's battery triggers and conditions ("started charging", "is
# low") look for binary sensors of these two classes, on the bank and on
# every pack alike.
CHARGING = RackBatteryBinarySensorEntityDescription(
    key="charging",
    translation_key="charging",
    device_class=BinarySensorDeviceClass.BATTERY_CHARGING,
    value_fn=lambda subject: subject.charging,
)
BATTERY_LOW = RackBatteryBinarySensorEntityDescription(
    key="battery_low",
    translation_key="battery_low",
    device_class=BinarySensorDeviceClass.BATTERY,
    value_fn=lambda _subject: None,
    low_fn=lambda subject: subject.soc,
)

PACK_BINARY_SENSORS: tuple[RackBatteryBinarySensorEntityDescription, ...] = (
    PROBLEM,
    RackBatteryBinarySensorEntityDescription(
        key="bms_alarm",
        translation_key="bms_alarm",
        device_class=BinarySensorDeviceClass.PROBLEM,
        value_fn=lambda pack: bool(pack.warnings or pack.protections),
        attributes_fn=_alarm_attributes,
    ),
    RackBatteryBinarySensorEntityDescription(
        key="charge_enabled",
        translation_key="charge_enabled",
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda pack: pack.charge_enabled,
    ),
    RackBatteryBinarySensorEntityDescription(
        key="discharge_enabled",
        translation_key="discharge_enabled",
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda pack: pack.discharge_enabled,
    ),
    CHARGING,
    BATTERY_LOW,
)

# Only for packs whose BMS says whether it balances: on a bank seen through
# one summary (CAN, SunSpec) it would stay unknown forever.
BALANCING = RackBatteryBinarySensorEntityDescription(
    key="balancing",
    translation_key="balancing",
    entity_category=EntityCategory.DIAGNOSTIC,
    value_fn=lambda pack: pack.balancing,
)

BANK_BINARY_SENSORS: tuple[RackBatteryBinarySensorEntityDescription, ...] = (
    PROBLEM,
    CHARGING,
    BATTERY_LOW,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: RackBatteryConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the binary sensors of the bank and of every pack."""
    readings = entry.runtime_data.coordinator.data.snapshot.readings

    def balancing(address: int) -> tuple[RackBatteryBinarySensorEntityDescription, ...]:
        reading = readings.get(address)
        return (BALANCING,) if reading is not None and reading.balancing is not None else ()

    async_add_entities(
        entities_for_bank(
            entry,
            RackBatteryBinarySensor,
            BANK_BINARY_SENSORS,
            PACK_BINARY_SENSORS,
            per_pack=balancing,
        )
    )


class RackBatteryBinarySensor(RackBatteryEntity, BinarySensorEntity):
    """A binary sensor of the bank or of one pack."""

    entity_description: RackBatteryBinarySensorEntityDescription

    @override
    def _fields_read(self) -> frozenset[str] | None:
        """Return what of the pack the state is made of: fields of its reading, or its findings.

        A low battery sensor compares the charge with the user's level; a
        change of that level unsettles it (``BankCoordinator.apply_options``).
        """
        description = self.entity_description
        if description.about_findings:
            return frozenset({FINDINGS_MOVED})
        if description.low_fn is not None:
            return fields_read(description.low_fn)
        if description.attributes_fn is None:
            return fields_read(description.value_fn)
        return fields_read(description.value_fn, description.attributes_fn)

    def _source(self) -> Any:
        if self.entity_description.about_findings:
            return self.findings
        return self.subject

    @property
    @override
    def available(self) -> bool:
        """Return whether there is something to show."""
        if self.entity_description.about_findings:
            return self.coordinator.last_update_success
        return super().available

    @property
    @override
    def is_on(self) -> bool | None:
        """Return the state read from the pack or from the open findings."""
        if (source := self._source()) is None:
            return None
        if (low_fn := self.entity_description.low_fn) is not None:
            if (value := low_fn(source)) is None:
                return None
            return value < self.coordinator.analyzer.thresholds.battery_low_percent
        return self.entity_description.value_fn(source)

    @override
    def shown(self) -> object:
        """Return what the binary sensor shows: availability, state and attributes."""
        return (self.available, self.is_on, self.extra_state_attributes)

    @property
    @override
    def extra_state_attributes(self) -> Mapping[str, Any] | None:
        """Return the open findings, or the BMS's active alarm names."""
        attributes_fn = self.entity_description.attributes_fn
        if attributes_fn is None or (source := self._source()) is None:
            return None
        return attributes_fn(source)
