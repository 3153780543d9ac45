"""Sensors of the bank and of each pack.

Power and current are positive while the bank charges, as every supported
BMS reports them. Home Assistant's energy dashboard takes a battery's power
the other way round (positive while discharging), so the bank also has a
"Net discharge power" of that sign. The bank's "Energy charged" and "Energy
discharged" are the battery's "energy going in" and "energy going out" in
that dashboard; "Stored energy" and "Usable capacity" are its state of charge
in kWh and the capacity it asks for (README, "Energy dashboard").

A pack's single cells and temperature probes are entities of their own, but
disabled until the user wants them: 16 cells and 4 probes on 8 packs are
160 entities that most banks never need next to the lowest and highest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    Platform,
    UnitOfElectricCurrent,
    UnitOfElectricPotential,
    UnitOfEnergy,
    UnitOfPower,
    UnitOfTemperature,
    UnitOfTime,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.typing import StateType

from .bank.control import SafeLimits
from .bank.model import Activity, BankSnapshot, PackReading, fields_read
from .coordinator import BankCoordinator, RackBatteryConfigEntry
from .entity import RackBatteryEntity, entities_for_bank, pack_device_key

PARALLEL_UPDATES = 0

# Home Assistant has no unit of electric charge; Ah is what every pack's
# label and BMS speaks.
AMPERE_HOURS = "Ah"


@dataclass(frozen=True, kw_only=True)
class RackBatterySensorEntityDescription[SubjectT](SensorEntityDescription):
    """Describes a sensor by how it reads its value from the bank or a pack."""

    value_fn: Callable[[SubjectT], StateType]
    # Whether the bank has this at all, judged on its first poll; None: always.
    has_fn: Callable[[SubjectT], bool] | None = None
    # A value the integration computes (a product, a sum or mean over the
    # packs, an integral) rather than one the BMS reports: its state is
    # rounded to its display precision, so that digits below it, which move
    # at every poll and carry no news, write no state (see RackBatterySensor).
    computed: bool = False
    # A value of the bank that takes more than its latest poll (the safe
    # limits weigh the analyzer's resistance estimates): ``value_fn`` reads
    # it from the coordinator rather than from the snapshot.
    of_coordinator: bool = False
    # The fields of a pack's reading that ``value_fn`` reads, where working
    # them out from the whole field is too coarse (one cell of the 16);
    # None: worked out by trying ``value_fn`` (see RackBatteryEntity).
    reads: frozenset[str] | None = None


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
        "suggested_display_precision": 1,
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
}


def _shared(*, bank: bool) -> tuple[RackBatterySensorEntityDescription[Any], ...]:
    """Describe the shared sensors; every bank value is computed, a pack's power too."""
    descriptions: list[RackBatterySensorEntityDescription[Any]] = []
    for key, shared in _SHARED.items():
        options = dict(shared)
        descriptions.append(
            RackBatterySensorEntityDescription(
                key=key,
                state_class=SensorStateClass.MEASUREMENT,
                value_fn=attrgetter(key),
                computed=bank or key == "power",
                **options,
            )
        )
    return tuple(descriptions)


PACK_SENSORS: tuple[RackBatterySensorEntityDescription[PackReading], ...] = _shared(bank=False)


# What not every BMS family reports (Pylontech's RS485 protocol carries no
# state of health, a bank seen over CAN no cycle count): a pack gets these
# where its first reading has them.
def _remaining_capacity[SubjectT](
    value_fn: Callable[[SubjectT], StateType],
    has_fn: Callable[[SubjectT], bool] | None = None,
    *,
    precision: int = 1,
    computed: bool = False,
) -> RackBatterySensorEntityDescription[SubjectT]:
    return RackBatterySensorEntityDescription(
        key="remaining_capacity",
        translation_key="remaining_capacity",
        native_unit_of_measurement=AMPERE_HOURS,
        suggested_display_precision=precision,
        state_class=SensorStateClass.MEASUREMENT,
        computed=computed,
        value_fn=value_fn,
        has_fn=has_fn,
    )


PACK_REPORTED_SENSORS: tuple[RackBatterySensorEntityDescription[PackReading], ...] = (
    _remaining_capacity(lambda pack: pack.remaining_capacity),
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
        computed=True,
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


def _limit(
    key: str, unit: str, device_class: SensorDeviceClass
) -> RackBatterySensorEntityDescription[PackReading]:
    """Describe a limit the pack's BMS asks of the charger or inverter."""
    return RackBatterySensorEntityDescription(
        key=key,
        translation_key=key,
        device_class=device_class,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=unit,
        suggested_display_precision=1,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=attrgetter(key),
    )


PACK_DIAGNOSTIC_SENSORS: tuple[RackBatterySensorEntityDescription[PackReading], ...] = (
    RackBatterySensorEntityDescription(
        key="mosfet_temperature",
        translation_key="mosfet_temperature",
        device_class=SensorDeviceClass.TEMPERATURE,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfTemperature.CELSIUS,
        suggested_display_precision=1,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda pack: pack.mosfet_temperature,
    ),
    _limit("charge_voltage_limit", UnitOfElectricPotential.VOLT, SensorDeviceClass.VOLTAGE),
    _limit("discharge_voltage_limit", UnitOfElectricPotential.VOLT, SensorDeviceClass.VOLTAGE),
    _limit("charge_current_limit", UnitOfElectricCurrent.AMPERE, SensorDeviceClass.CURRENT),
    _limit("discharge_current_limit", UnitOfElectricCurrent.AMPERE, SensorDeviceClass.CURRENT),
)


# One entity per cell and per temperature probe: the translation's
# placeholder, the reading's field that holds the values, and how the value
# is shown.
_NUMBERED: dict[str, tuple[str, str, dict[str, Any]]] = {
    "cell_voltage": (
        "cell",
        "cell_voltages",
        {
            "device_class": SensorDeviceClass.VOLTAGE,
            "native_unit_of_measurement": UnitOfElectricPotential.VOLT,
            "suggested_display_precision": 3,
        },
    ),
    "temperature": (
        "probe",
        "temperatures",
        {
            "device_class": SensorDeviceClass.TEMPERATURE,
            "native_unit_of_measurement": UnitOfTemperature.CELSIUS,
            "suggested_display_precision": 1,
        },
    ),
}


def numbered_sensor(
    kind: str, number: int, count: int = 1
) -> RackBatterySensorEntityDescription[PackReading]:
    """Describe one cell's voltage or one probe's temperature, counted from 1 as the BMS does.

    The number is padded to the width of the count ("Cell 01" of 16), so
    lists sorted by name put cell 2 before cell 10. It has no state class:
    the hourly mean, lowest and highest of every cell and probe are kept as
    the bank's cell history (cell_history.py) whether or not the entity is
    enabled, and a state class would have the recorder work the same out
    again every 5 minutes for each one enabled (320 sensors on 16 packs).
    """
    placeholder, name, options = _NUMBERED[kind]
    values = attrgetter(name)

    def value(pack: PackReading) -> float | None:
        known: tuple[float | None, ...] = values(pack)
        return known[number - 1] if number <= len(known) else None

    return RackBatterySensorEntityDescription(
        key=f"{kind}_{number}",
        translation_key=kind,
        translation_placeholders={placeholder: str(number).zfill(len(str(count)))},
        entity_registry_enabled_default=False,
        value_fn=value,
        reads=frozenset({f"{name}[{number - 1}]"}),
        **options,
    )


def pack_specific_sensors(
    coordinator: BankCoordinator, address: int
) -> list[RackBatterySensorEntityDescription[PackReading]]:
    """Describe what this pack has: its cells, its probes, what else its BMS sends.

    The cell count is the pack's identity where the BMS states it; the
    probes, and whether the BMS reports a state of health, a MOSFET
    temperature or limits at all, are seen in the first reading, so a family
    that never sends a value gets no entity that would stay unknown forever.
    A pack silent at setup gets these at the next reload.
    """
    reading = coordinator.data.snapshot.readings.get(address)
    cells = coordinator.packs[address].cell_count or (len(reading.cell_voltages) if reading else 0)
    probes = len(reading.temperatures) if reading else 0
    return [
        *(numbered_sensor("cell_voltage", cell, cells) for cell in range(1, cells + 1)),
        *(numbered_sensor("temperature", probe, probes) for probe in range(1, probes + 1)),
        *(
            description
            for description in (*PACK_REPORTED_SENSORS, *PACK_DIAGNOSTIC_SENSORS)
            if reading is not None and description.value_fn(reading) is not None
        ),
    ]


def _knows_capacity(bank: BankSnapshot) -> bool:
    """Return whether the packs tell the charge they hold (a CAN bank before V1.3 does not)."""
    return bank.remaining_capacity is not None


def _several_packs(bank: BankSnapshot) -> bool:
    """Return whether there is more than one pack to compare (a CAN bank is one)."""
    return len(bank.readings) + len(bank.failed) >= 2


def _kwh(watt_hours: float | None) -> float | None:
    return None if watt_hours is None else watt_hours / 1000


def _energy(
    key: str, value_fn: Callable[[BankSnapshot], StateType]
) -> RackBatterySensorEntityDescription[BankSnapshot]:
    return RackBatterySensorEntityDescription(
        key=key,
        translation_key=key,
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=2,
        computed=True,
        value_fn=value_fn,
    )


def _safe_current(
    key: str, value_fn: Callable[[SafeLimits], float | None]
) -> RackBatterySensorEntityDescription[BankCoordinator]:
    """Describe the most current the bank can take one way (bank/control.py's safe limits).

    Not made where the packs report no limit and no capacity to tell it by.

    The packs share a current by their resistance (the analyzer's estimates,
    equal shares until it has them); this is the bank current at which the
    most loaded pack reaches its own limit, so an automation can cap the
    inverter by it. A pack whose path is open is counted out.
    """
    return RackBatterySensorEntityDescription(
        key=key,
        translation_key=key,
        device_class=SensorDeviceClass.CURRENT,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfElectricCurrent.AMPERE,
        suggested_display_precision=1,
        computed=True,
        of_coordinator=True,
        value_fn=lambda coordinator: value_fn(coordinator.controller.safe_limits()),
        # None of the packs tells a limit or a capacity (SunSpec strings):
        # the value would never come, so there is no sensor.
        has_fn=lambda coordinator: value_fn(coordinator.controller.safe_limits()) is not None,
    )


BANK_SENSORS: tuple[RackBatterySensorEntityDescription[Any], ...] = (
    *_shared(bank=True),
    _safe_current("safe_charge_current", attrgetter("charge")),
    _safe_current("safe_discharge_current", attrgetter("discharge")),
    # The bank's charge is that of several packs: a whole Ah is a quarter of
    # a percent of a bank of four 100 Ah packs, and what it is shown to.
    _remaining_capacity(
        lambda bank: bank.remaining_capacity, _knows_capacity, precision=0, computed=True
    ),
    RackBatterySensorEntityDescription(
        key="packs_online",
        translation_key="packs_online",
        state_class=SensorStateClass.MEASUREMENT,
        computed=True,
        value_fn=lambda bank: bank.packs_online,
    ),
    RackBatterySensorEntityDescription(
        key="voltage_spread",
        translation_key="voltage_spread",
        device_class=SensorDeviceClass.VOLTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        suggested_display_precision=2,
        computed=True,
        value_fn=lambda bank: bank.voltage_spread,
        has_fn=_several_packs,
    ),
    RackBatterySensorEntityDescription(
        key="soc_spread",
        translation_key="soc_spread",
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=PERCENTAGE,
        suggested_display_precision=0,
        computed=True,
        value_fn=lambda bank: bank.soc_spread,
        has_fn=_several_packs,
    ),
    RackBatterySensorEntityDescription(
        key="activity",
        translation_key="activity",
        device_class=SensorDeviceClass.ENUM,
        options=[activity.value for activity in Activity],
        value_fn=lambda bank: bank.activity,
    ),
    RackBatterySensorEntityDescription(
        key="time_remaining",
        translation_key="time_remaining",
        device_class=SensorDeviceClass.DURATION,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfTime.HOURS,
        suggested_display_precision=1,
        computed=True,
        value_fn=lambda bank: bank.time_remaining,
        has_fn=_knows_capacity,
    ),
    _energy("energy_charged", lambda bank: bank.energy_charged),
    _energy("energy_discharged", lambda bank: bank.energy_discharged),
    # The energy dashboard's battery power: positive while discharging.
    RackBatterySensorEntityDescription(
        key="discharge_power",
        translation_key="discharge_power",
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.WATT,
        suggested_display_precision=0,
        computed=True,
        value_fn=lambda bank: None if bank.power is None else -bank.power,
    ),
    RackBatterySensorEntityDescription(
        key="stored_energy",
        translation_key="stored_energy",
        device_class=SensorDeviceClass.ENERGY_STORAGE,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        # 0.1 kWh: half a percent of a small bank's charge.
        suggested_display_precision=1,
        computed=True,
        value_fn=lambda bank: _kwh(bank.stored_energy),
        has_fn=_knows_capacity,
    ),
    RackBatterySensorEntityDescription(
        key="usable_capacity",
        translation_key="usable_capacity",
        device_class=SensorDeviceClass.ENERGY_STORAGE,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=2,
        computed=True,
        value_fn=lambda bank: _kwh(bank.usable_energy),
        has_fn=_knows_capacity,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: RackBatteryConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the sensors of the bank and of every pack."""
    coordinator = entry.runtime_data.coordinator
    snapshot = coordinator.data.snapshot
    entities = entities_for_bank(
        entry,
        RackBatterySensor,
        [
            description
            for description in BANK_SENSORS
            if description.has_fn is None
            or description.has_fn(coordinator if description.of_coordinator else snapshot)
        ],
        PACK_SENSORS,
        per_pack=lambda address: pack_specific_sensors(coordinator, address),
    )
    _forget_sensors_that_never_come(
        hass, entry, {entity.unique_id for entity in entities if entity.unique_id}
    )
    async_add_entities(entities)


# Bank sensors of earlier versions, replaced by "time_remaining" and "activity".
_RETIRED_BANK_KEYS = ("time_to_empty", "time_to_full")


@callback
def _forget_sensors_that_never_come(
    hass: HomeAssistant, entry: RackBatteryConfigEntry, created: set[str]
) -> None:
    """Remove registered sensors whose value the bank or a pack has shown it never sends.

    An entity registered by an earlier version (a Pylontech pack's state of
    health, the old time to empty) would otherwise show "unavailable" for
    good. Only what was judged on a reading goes: the sensors of a pack
    that was silent at setup stay, with whatever the user made of them.
    """
    coordinator = entry.runtime_data.coordinator
    judged = {
        f"{entry.entry_id}_{key}"
        for key in (*(description.key for description in BANK_SENSORS), *_RETIRED_BANK_KEYS)
    }
    for address in coordinator.data.snapshot.readings:
        device_key = pack_device_key(entry, coordinator.packs[address])
        judged.update(
            f"{device_key}_{description.key}"
            for description in (*PACK_REPORTED_SENSORS, *PACK_DIAGNOSTIC_SENSORS)
        )
    registry = er.async_get(hass)
    for registered in er.async_entries_for_config_entry(registry, entry.entry_id):
        if registered.domain == Platform.SENSOR and registered.unique_id in judged - created:
            registry.async_remove(registered.entity_id)


# The precision of a sensor not yet worked out.
_UNSET = object()


class RackBatterySensor(RackBatteryEntity, SensorEntity):
    """A sensor of the bank or of one pack.

    What a BMS reports is shown at the BMS's own resolution: it moves only
    when the reading does. A value computed here (a pack's power, the bank's
    sums and means, the energy counters) has digits far below anything that
    means something, and they move at every poll; its state is rounded to
    the precision it is shown with (0.1 A, 1 W, 10 Wh, a percent of charge),
    so a value that moved by less is no news: Home Assistant writes no new
    state, and the recorder no row, for a state that did not change. A
    reported value is written only when it moves by what its display
    precision shows (see ``shown``), and then at the BMS's resolution.
    """

    entity_description: RackBatterySensorEntityDescription[Any]
    # The precision the value is shown with, worked out once (None: as it
    # is); unset until the first poll and after the user changes the options.
    _shown_precision: object = _UNSET

    @override
    def shown(self) -> object:
        """Return what the sensor shows: whether it is available, and its value.

        Asked of every sensor at every poll, so the bank or pack is looked up
        once for both; None while unavailable, else the value in a tuple,
        rounded to the precision it is shown with. A reading that moved by
        less than what the user can see is no news: it writes no state, and
        the recorder no row. The state written when the shown value does
        change keeps the BMS's full resolution (``native_value``). The
        entity compares with what it showed at its last write, not at its
        last poll, so a value that creeps by less than the precision at
        each poll is written once the creep adds up to a visible step.
        """
        if (subject := self.subject) is None or not self.coordinator.last_update_success:
            return None
        value = self._value_of(subject)
        if type(value) is float:
            precision = self._shown_precision
            if precision is _UNSET:
                precision = self._shown_precision = self._precision_shown()
            if type(precision) is int:
                return (round(value, precision) + 0.0,)  # + 0.0: -0.0 is 0.0
        return (value,)

    @override
    def _fields_read(self) -> frozenset[str] | None:
        """Return what of the pack's reading the value is made of (None: not only that)."""
        description = self.entity_description
        if description.of_coordinator:
            return None
        return description.reads or fields_read(description.value_fn)

    def _precision_shown(self) -> int | None:
        """Return the number of decimals the value is shown with, None if not known.

        The user's own choice of decimals wins over the suggested one. A
        sensor shown in another unit than the BMS's (mV for V by the user's
        choice, °F by the unit system) is compared at its full value: its
        precision is not that of the unit it is read in.
        """
        if self.unit_of_measurement != self.native_unit_of_measurement:
            return None
        entry = self.registry_entry
        options: Mapping[str, Any] = entry.options.get("sensor", {}) if entry else {}
        precision = options.get("display_precision")
        if precision is None:
            precision = self.entity_description.suggested_display_precision
        return precision if isinstance(precision, int) else None

    @callback
    @override
    def async_registry_entry_updated(self) -> None:
        """Work the precision out again: the user may have changed unit or decimals."""
        self._shown_precision = _UNSET
        super().async_registry_entry_updated()

    @property
    @override
    def native_value(self) -> StateType:
        """Return the value read from this sensor's bank or pack, as shown."""
        if (subject := self.subject) is None:
            return None
        return self._value_of(subject)

    def _value_of(self, subject: BankSnapshot | PackReading) -> StateType:
        description = self.entity_description
        value = description.value_fn(self.coordinator if description.of_coordinator else subject)
        precision = self.entity_description.suggested_display_precision
        if self.entity_description.computed and isinstance(value, float) and precision is not None:
            return round(value, precision) + 0.0  # + 0.0: no "-0.0"
        return value
