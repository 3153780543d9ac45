"""A year of every pack's cells as hourly long-term statistics, not as states.

Single cells and probes are entities disabled by default: enabled, each
would write a state row at every poll. Their history is kept instead as
external statistics (``rack_battery:<pack>_cell_3_voltage``): the hourly
mean, lowest and highest of each cell's voltage, each probe's temperature
and the pack's cell spread, written once per hour when the hour closes. The
statistics-graph card shows them over months; the states table holds no
row for them, and the recorder keeps statistics for good (states only for
its purge window).

The hours are gathered by ``bank.hourly.HourlyAggregator``; the hour still
open and the last hour written are kept in the bank's store, so a restart
neither loses the hour it cuts in two nor writes an hour twice. A pack
removed from the bank is no longer asked, and what its open hour held is
dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
import re

from homeassistant.components.recorder.models import (
    StatisticData,
    StatisticMeanType,
    StatisticMetaData,
)
from homeassistant.components.recorder.statistics import async_add_external_statistics
from homeassistant.const import UnitOfElectricPotential, UnitOfTemperature
from homeassistant.core import HomeAssistant, callback
from homeassistant.util import slugify
from homeassistant.util.unit_conversion import ElectricPotentialConverter, TemperatureConverter

from .bank.hourly import ClosedHour
from .bank.model import BankSnapshot, PackIdentity
from .const import DOMAIN
from .coordinator import RackBatteryConfigEntry
from .entity import pack_device_key

# Home Assistant 2025.4 knows no unit class in a statistic's metadata; the
# newest releases want one (and warn without it).
_TAKES_UNIT_CLASS = "unit_class" in StatisticMetaData.__annotations__


@dataclass(frozen=True, kw_only=True)
class Series:
    """One statistic: what it is called, and its unit."""

    statistic_id: str
    name: str
    unit: str
    unit_class: str


def _pack_stems(
    entry: RackBatteryConfigEntry, packs: dict[int, PackIdentity]
) -> dict[str, PackIdentity]:
    """Return each pack of the bank by the stem of its statistics' ids.

    The stem is the pack's device key (its serial where the BMS has one),
    so a pack moved to another address keeps its history.
    """
    return {slugify(pack_device_key(entry, identity)): identity for identity in packs.values()}


def snapshot_samples(
    stems: dict[str, PackIdentity], snapshot: BankSnapshot
) -> dict[str, float | None]:
    """Return one poll's samples of every answering pack, by statistic object id."""
    samples: dict[str, float | None] = {}
    for stem, identity in stems.items():
        if (reading := snapshot.readings.get(identity.address)) is None:
            continue
        cells, probes, spread = _sample_keys(
            stem, len(reading.cell_voltages), len(reading.temperatures)
        )
        samples.update(zip(cells, reading.cell_voltages, strict=True))
        samples.update(zip(probes, reading.temperatures, strict=True))
        delta = reading.cell_delta
        samples[spread] = None if delta is None else delta * 1000
    return samples


@lru_cache(maxsize=256)
def _sample_keys(
    stem: str, cells: int, probes: int
) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """Return a pack's sample keys: each cell's, each probe's and the spread's (made once)."""
    return (
        tuple(f"{stem}_cell_{cell}_voltage" for cell in range(1, cells + 1)),
        tuple(f"{stem}_temperature_{probe}" for probe in range(1, probes + 1)),
        f"{stem}_cell_spread",
    )


# What a sample key names after its pack's stem: its name, unit and class.
_KINDS: tuple[tuple[re.Pattern[str], str, str, str], ...] = (
    (
        re.compile(r"cell_spread"),
        "cell voltage spread",
        UnitOfElectricPotential.MILLIVOLT,
        ElectricPotentialConverter.UNIT_CLASS,
    ),
    (
        re.compile(r"cell_(\d+)_voltage"),
        "cell {} voltage",
        UnitOfElectricPotential.VOLT,
        ElectricPotentialConverter.UNIT_CLASS,
    ),
    (
        re.compile(r"temperature_(\d+)"),
        "temperature {}",
        UnitOfTemperature.CELSIUS,
        TemperatureConverter.UNIT_CLASS,
    ),
)


def describe(
    entry: RackBatteryConfigEntry, stems: dict[str, PackIdentity], key: str
) -> Series | None:
    """Return the statistic a sample key stands for; None for a pack not in the bank."""
    for stem, identity in stems.items():
        if not key.startswith(f"{stem}_"):
            continue
        what = key.removeprefix(f"{stem}_")
        for pattern, name, unit, unit_class in _KINDS:
            if (match := pattern.fullmatch(what)) is not None:
                return Series(
                    statistic_id=f"{DOMAIN}:{key}",
                    name=f"{entry.title} pack {identity.address} {name.format(*match.groups())}",
                    unit=unit,
                    unit_class=unit_class,
                )
    return None


def metadata(series: Series) -> StatisticMetaData:
    """Return a statistic's metadata in the shape this release expects."""
    meta = StatisticMetaData(
        mean_type=StatisticMeanType.ARITHMETIC,
        has_sum=False,
        name=series.name,
        source=DOMAIN,
        statistic_id=series.statistic_id,
        unit_of_measurement=series.unit,
    )
    if _TAKES_UNIT_CLASS:
        meta["unit_class"] = series.unit_class  # type: ignore[typeddict-unknown-key,unused-ignore]
    return meta


class CellHistory:
    """Feeds one bank's polls into hours and writes each closed hour."""

    def __init__(self, hass: HomeAssistant, entry: RackBatteryConfigEntry) -> None:
        """Attach to the bank's coordinator and its stored aggregator."""
        self.hass = hass
        self.entry = entry
        self.coordinator = entry.runtime_data.coordinator
        self._stems = _pack_stems(entry, self.coordinator.packs)
        self._last_seen: datetime | None = None

    @callback
    def async_start(self) -> None:
        """Take in the poll already made, then every poll to come."""
        self._async_polled()
        self.entry.async_on_unload(self.coordinator.async_add_listener(self._async_polled))

    @callback
    def _async_polled(self) -> None:
        data = self.coordinator.data
        if data is None or not self.coordinator.last_update_success:
            return
        snapshot = data.snapshot
        if snapshot.taken_at == self._last_seen:
            return  # the same poll again (a listener added, a failed refresh)
        self._last_seen = snapshot.taken_at
        closed = self.coordinator.hourly.add(
            snapshot.taken_at, snapshot_samples(self._stems, snapshot)
        )
        for hour in closed:
            self._async_write(hour)
        if closed:
            self.coordinator.async_save_soon()

    @callback
    def _async_write(self, hour: ClosedHour) -> None:
        """Write one hour of every statistic of the bank's present packs.

        Without the recorder there is nowhere to write to; the hour is let
        go like any other, so that none piles up in memory.
        """
        if "recorder" not in self.hass.config.components:
            return
        for key, stats in hour.series.items():
            if (series := describe(self.entry, self._stems, key)) is None:
                continue  # a pack removed from the bank
            async_add_external_statistics(
                self.hass,
                metadata(series),
                [StatisticData(start=hour.start, mean=stats.mean, min=stats.min, max=stats.max)],
            )


@callback
def async_start_cell_history(hass: HomeAssistant, entry: RackBatteryConfigEntry) -> None:
    """Start writing a bank's hourly cell statistics; it stops at unload."""
    CellHistory(hass, entry).async_start()
