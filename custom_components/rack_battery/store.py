"""What a bank keeps across restarts: maintenance, analyzer state, energy, cell hours.

One file per config entry in Home Assistant's storage. The maintenance
history is the user's own record of work done on the bank (dates, measured
capacities, notes) and cannot be measured again, so a store that is damaged
in part must give back every piece that can still be read: each part is read
on its own, what is lost is logged once, and the bank carries on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.storage import Store

from .bank.analysis import MaintenanceSchedule, Thresholds
from .bank.energy import EnergyMeter
from .bank.hourly import HourlyAggregator
from .const import DOMAIN, LOGGER

STORAGE_VERSION = 1
STORAGE_MINOR_VERSION = 1
# A save waits this long, so a burst of changes (findings raised together,
# a maintenance record and the findings it clears) is written once.
SAVE_DELAY = 30.0

MAINTENANCE = "maintenance"
ANALYSIS = "analysis"
ENERGY = "energy"
HOURLY = "hourly"
CONTROL = "control"


def storage_key(entry_id: str) -> str:
    """Return the storage key of a bank."""
    return f"{DOMAIN}.{entry_id}"


@dataclass(kw_only=True)
class Restored:
    """What a bank's store gave back, and what it could not."""

    schedule: MaintenanceSchedule
    analysis: object
    energy: EnergyMeter
    hourly: HourlyAggregator = field(default_factory=HourlyAggregator)
    # What control keeps (the packs the user isolated); read by controller.py.
    control: object = None
    dropped: list[str] = field(default_factory=list)


class BankStore:
    """The storage file of one bank."""

    def __init__(self, hass: HomeAssistant, entry_id: str) -> None:
        """Open (not yet read) the bank's store."""
        self._store: Store[dict[str, Any]] = Store(
            hass, STORAGE_VERSION, storage_key(entry_id), minor_version=STORAGE_MINOR_VERSION
        )

    async def async_load(self, *, now: datetime, thresholds: Thresholds, tz: tzinfo) -> Restored:
        """Read the store back, keeping what can be read; never raises.

        A store that cannot be parsed at all is set aside by Home Assistant
        and comes back empty; one that parses into something else than this
        integration wrote is read part by part.
        """
        dropped: list[str] = []
        raw: object = None
        try:
            raw = await self._store.async_load()
        except (HomeAssistantError, NotImplementedError, KeyError, TypeError, ValueError) as err:
            # The envelope around the data is broken (no version, a version
            # from a newer release): nothing in it can be trusted.
            dropped.append(f"store: unreadable ({err!r}), started anew")
        data: Mapping[str, object] = {}
        if isinstance(raw, Mapping):
            data = raw
        elif raw is not None:
            dropped.append(f"store: not a mapping ({type(raw).__name__}), started anew")
        schedule, lost = MaintenanceSchedule.from_dict(
            data.get(MAINTENANCE), now=now, thresholds=thresholds, tz=tz
        )
        dropped.extend(f"{MAINTENANCE}.{item}" for item in lost)
        energy, lost = EnergyMeter.from_dict(data.get(ENERGY))
        dropped.extend(f"{ENERGY}.{item}" for item in lost)
        hourly, lost = HourlyAggregator.from_dict(data.get(HOURLY))
        dropped.extend(lost)
        return Restored(
            schedule=schedule,
            analysis=data.get(ANALYSIS),
            energy=energy,
            hourly=hourly,
            control=data.get(CONTROL),
            dropped=dropped,
        )

    def async_delay_save(self, data_fn: Callable[[], dict[str, Any]]) -> None:
        """Save a little later, once for a burst of changes."""
        self._store.async_delay_save(data_fn, SAVE_DELAY)

    async def async_save(self, data: dict[str, Any]) -> None:
        """Save now (on unload, so a reload reads what was just recorded)."""
        await self._store.async_save(data)

    async def async_remove(self) -> None:
        """Remove the file, when the bank itself is removed."""
        await self._store.async_remove()


def log_dropped(name: str, dropped: list[str]) -> None:
    """Log once what could not be read back, so the loss is not silent."""
    if dropped:
        LOGGER.warning(
            "%s: part of the stored maintenance and analysis state could not be read "
            "and was left out: %s",
            name,
            "; ".join(dropped),
        )
