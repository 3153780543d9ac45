"""Readings of packs and snapshots of a bank, in SI units.

Every value that a BMS can leave out, or fill with a "not implemented"
sentinel, is ``None`` here: an unknown is never a number on a graph.
Current is positive while the pack charges, as every supported BMS family
reports it; power follows the same sign.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from functools import cache, cached_property
from typing import Any

# Below this current (A) a pack or the bank counts as resting: neither
# charging nor discharging, no time to empty or to full. A BMS's own draw and
# its sensor's offset are of this order.
RESTING_CURRENT = 1.0

# Every supported family builds its packs of LiFePO4 cells, rated 3.2 V
# each: a pack's energy is its charge at that voltage, as its label states
# it (100 Ah x 16 cells x 3.2 V = 5.12 kWh). The nominal voltage, not the
# measured one, so that stored energy over usable capacity is the state of
# charge, and the capacity does not move with the load.
NOMINAL_CELL_VOLTAGE = 3.2  # V
# A pack that reports no cells (a bank seen through one CAN summary) is
# taken to be of the common 16-cell 48 V class.
DEFAULT_CELL_COUNT = 16


@dataclass(frozen=True, kw_only=True)
class PackIdentity:
    """Who a pack is: what it tells about itself when asked."""

    address: int
    family: str
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None
    cell_count: int | None = None
    design_capacity: float | None = None  # Ah

    @property
    def key(self) -> str:
        """Return what names this pack across restarts.

        The serial number where the BMS reports one; otherwise the slot it
        is wired to, and the fallback says so.
        """
        if self.serial:
            return self.serial
        return f"slot_{self.address}"


@dataclass(frozen=True, kw_only=True)
class PackReading:
    """One reading of one pack."""

    address: int
    voltage: float | None = None  # V
    current: float | None = None  # A, positive while charging
    soc: float | None = None  # %
    soh: float | None = None  # %
    remaining_capacity: float | None = None  # Ah
    full_capacity: float | None = None  # Ah
    design_capacity: float | None = None  # Ah
    cycles: int | None = None
    cell_voltages: tuple[float | None, ...] = ()  # V
    temperatures: tuple[float | None, ...] = ()  # degC, cells and environment
    mosfet_temperature: float | None = None  # degC
    charge_enabled: bool | None = None  # charge FET on
    discharge_enabled: bool | None = None  # discharge FET on
    balancing: bool | None = None  # any cell being balanced
    # Conditions the BMS reports, as stable snake_case names shared across
    # families (e.g. "cell_overvoltage", "discharge_overcurrent"): a warning
    # is a limit being approached, a protection is the BMS having acted.
    warnings: frozenset[str] = frozenset()
    protections: frozenset[str] = frozenset()
    # What the BMS asks of the inverter; currents as positive magnitudes,
    # whatever sign the wire uses.
    charge_voltage_limit: float | None = None  # V
    charge_current_limit: float | None = None  # A
    discharge_current_limit: float | None = None  # A
    discharge_voltage_limit: float | None = None  # V

    @property
    def power(self) -> float | None:
        """Return the power in W, positive while charging."""
        if self.voltage is None or self.current is None:
            return None
        return self.voltage * self.current

    @property
    def charging(self) -> bool | None:
        """Return whether the pack takes more than a resting current."""
        return None if self.current is None else self.current >= RESTING_CURRENT

    @property
    def nominal_voltage(self) -> float:
        """Return the pack's nominal voltage, from its cell count."""
        return (len(self.cell_voltages) or DEFAULT_CELL_COUNT) * NOMINAL_CELL_VOLTAGE

    @property
    def stored_energy(self) -> float | None:
        """Return the energy left in the pack, in Wh at its nominal voltage."""
        if self.remaining_capacity is None:
            return None
        return self.remaining_capacity * self.nominal_voltage

    @property
    def usable_energy(self) -> float | None:
        """Return the energy the pack holds when full, in Wh at its nominal voltage."""
        if self.full_capacity is None:
            return None
        return self.full_capacity * self.nominal_voltage

    @property
    def cell_min(self) -> float | None:
        """Return the lowest cell voltage."""
        known = [v for v in self.cell_voltages if v is not None]
        return min(known) if known else None

    @property
    def cell_max(self) -> float | None:
        """Return the highest cell voltage."""
        known = [v for v in self.cell_voltages if v is not None]
        return max(known) if known else None

    @property
    def cell_delta(self) -> float | None:
        """Return the spread between the highest and lowest cell."""
        high, low = self.cell_max, self.cell_min
        if high is None or low is None:
            return None
        return high - low

    @property
    def temperature_max(self) -> float | None:
        """Return the highest temperature the pack reports."""
        known = [t for t in (*self.temperatures, self.mosfet_temperature) if t is not None]
        return max(known) if known else None


# What a poll moved in a pack's reading: the names of the fields whose value
# changed, and for a field that holds one value per cell or probe also
# "name[i]" for each element that changed (counted from 0), so that cell 3
# is told apart from cell 4. An entity that shows a few of a reading's
# fields need not be worked out again while none of them moved.


def moved_fields(old: PackReading, new: PackReading) -> frozenset[str]:
    """Return what moved from one reading of a pack to the next (see above)."""
    if old is new:
        return frozenset()
    before = old.__dict__
    moved: list[str] = []
    for name, value in new.__dict__.items():
        was = before[name]
        if value is was or value == was:
            continue
        moved.append(name)
        if type(value) is tuple and type(was) is tuple:
            if len(value) == len(was):
                moved.extend(
                    f"{name}[{index}]"
                    for index, (now, then) in enumerate(zip(value, was, strict=True))
                    if now != then
                )
            else:
                moved.extend(f"{name}[{index}]" for index in range(max(len(value), len(was))))
    return frozenset(moved)


_FIELDS = frozenset(each.name for each in fields(PackReading))


class _Recorded(PackReading):
    """A reading that notes which of its fields are read (see ``fields_read``)."""

    def __getattribute__(self, name: str) -> Any:
        if name in _FIELDS:
            object.__getattribute__(self, "_read").add(name)
        return object.__getattribute__(self, name)


def _probe(value: object) -> _Recorded:
    """Return a reading with every field filled from its default by ``value``'s kind.

    ``value`` None: every field at its default (nothing known); a number:
    every unknown at that number, each cell and probe too, every set of
    alarm names non-empty.
    """
    filled: dict[str, Any] = {}
    for each in fields(PackReading):
        if each.name == "address" or value is None:
            continue
        if each.default is None:
            filled[each.name] = value
        elif each.default == ():
            filled[each.name] = (value,) * DEFAULT_CELL_COUNT
        elif each.default == frozenset():
            filled[each.name] = frozenset({"probe"})
    probe = _Recorded(address=1, **filled)
    object.__setattr__(probe, "_read", set())
    return probe


@cache
def fields_read(*fns: Callable[[PackReading], object]) -> frozenset[str] | None:
    """Return the fields of a reading that ``fns`` read, worked out by trying them.

    Each function is tried on a reading with nothing known, one with every
    value positive and one with every value negative, and what it read on
    any of them counts. None where a function fails on one: then it can
    only be asked every time.
    """
    read: set[str] = set()
    for value in (None, 1.5, -1.5):
        for fn in fns:
            probe = _probe(value)
            try:
                fn(probe)
            except Exception:  # any failure: not worked out
                return None
            read |= object.__getattribute__(probe, "_read")
    return frozenset(read)


@dataclass(frozen=True, kw_only=True)
class PollReport:
    """What one poll of a bus brought back.

    A pack that did not answer is listed in ``failed`` with the reason; the
    bus itself was up, or the poll would have raised instead.
    """

    readings: Mapping[int, PackReading] = field(default_factory=dict)
    failed: Mapping[int, str] = field(default_factory=dict)


class Activity(StrEnum):
    """Which way the bank's charge goes."""

    CHARGING = "charging"
    DISCHARGING = "discharging"
    RESTING = "resting"


@dataclass(frozen=True, kw_only=True)
class BankSnapshot:
    """The bank at one moment: the packs that answered and those that did not.

    Its figures over the packs are worked out once, when first asked: every
    entity of the bank that shows one, the rules and the picture ask again.
    """

    taken_at: datetime
    readings: Mapping[int, PackReading]
    failed: Mapping[int, str]
    # The energy meter's running totals as of this snapshot, in kWh; None
    # where nothing counts them.
    energy_charged: float | None = None
    energy_discharged: float | None = None

    @property
    def packs_online(self) -> int:
        """Return how many packs answered."""
        return len(self.readings)

    def _known(self, attribute: str) -> list[float]:
        values = (getattr(reading, attribute) for reading in self.readings.values())
        return [value for value in values if value is not None]

    @cached_property
    def voltage(self) -> float | None:
        """Return the bus voltage, the mean of what the packs measure."""
        known = self._known("voltage")
        return sum(known) / len(known) if known else None

    @cached_property
    def current(self) -> float | None:
        """Return the bank current, the sum over the packs that answered."""
        known = self._known("current")
        return sum(known) if known else None

    @cached_property
    def power(self) -> float | None:
        """Return the bank power, the sum over the packs that answered."""
        known = self._known("power")
        return sum(known) if known else None

    @cached_property
    def remaining_capacity(self) -> float | None:
        """Return the charge left in the packs that answered, in Ah."""
        known = self._known("remaining_capacity")
        return sum(known) if known else None

    @cached_property
    def full_capacity(self) -> float | None:
        """Return the full capacity of the packs that answered, in Ah."""
        known = self._known("full_capacity")
        return sum(known) if known else None

    @cached_property
    def stored_energy(self) -> float | None:
        """Return the energy left in the packs that answered, in Wh."""
        known = self._known("stored_energy")
        return sum(known) if known else None

    @cached_property
    def usable_energy(self) -> float | None:
        """Return the energy the packs that answered hold when full, in Wh."""
        known = self._known("usable_energy")
        return sum(known) if known else None

    @property
    def charging(self) -> bool | None:
        """Return whether the bank as a whole takes more than a resting current."""
        current = self.current
        return None if current is None else current >= RESTING_CURRENT

    @cached_property
    def soc(self) -> float | None:
        """Return the state of charge weighted by each pack's capacity.

        A 100 Ah pack at 50 % and a 50 Ah pack at 100 % hold 100 Ah of 150:
        67 %, not the 75 % a plain mean would claim. Packs that do not report
        a capacity are left out rather than guessed at; where no pack does
        (a bank seen over CAN, which sends one state of charge), the plain
        mean is all there is.
        """
        weighted = 0.0
        total = 0.0
        for reading in self.readings.values():
            if reading.soc is None or reading.full_capacity is None:
                continue
            weighted += reading.soc * reading.full_capacity
            total += reading.full_capacity
        if total > 0:
            return weighted / total
        known = self._known("soc")
        return sum(known) / len(known) if known else None

    @cached_property
    def voltage_spread(self) -> float | None:
        """Return how far apart the pack voltages are, in V.

        Packs on one bus can differ only by their cable drop; anything more
        is packs apart in charge, or a poor connection. None below two packs.
        """
        return _spread(self._known("voltage"))

    @cached_property
    def soc_spread(self) -> float | None:
        """Return how far apart the packs' states of charge are, in points."""
        return _spread(self._known("soc"))

    @property
    def time_to_empty(self) -> float | None:
        """Return the hours the bank lasts at its present discharge current.

        None while the bank is not discharging by more than
        ``RESTING_CURRENT``: at rest the answer would be days of nothing.
        """
        current = self.current
        remaining = self.remaining_capacity
        if current is None or remaining is None or current > -RESTING_CURRENT:
            return None
        return remaining / -current

    @property
    def time_to_full(self) -> float | None:
        """Return the hours to full at the present charge current.

        An estimate that runs short near the top: the charger tapers the
        current off for the last few percent. None unless charging.
        """
        current = self.current
        remaining = self.remaining_capacity
        full = self.full_capacity
        if current is None or remaining is None or full is None or current < RESTING_CURRENT:
            return None
        return max(full - remaining, 0.0) / current

    @property
    def activity(self) -> Activity | None:
        """Return whether the bank charges, discharges or rests (None when unknown)."""
        current = self.current
        if current is None:
            return None
        if current >= RESTING_CURRENT:
            return Activity.CHARGING
        if current <= -RESTING_CURRENT:
            return Activity.DISCHARGING
        return Activity.RESTING

    @property
    def time_remaining(self) -> float | None:
        """Return the hours until the bank is empty, or full, at the present current.

        One figure for whichever way the charge goes (``activity`` says
        which), so it is unknown only while the bank rests, not half the
        day as a "to empty" figure would be while the sun charges it.
        """
        if self.activity is Activity.CHARGING:
            return self.time_to_full
        if self.activity is Activity.DISCHARGING:
            return self.time_to_empty
        return None


def _spread(values: list[float]) -> float | None:
    return max(values) - min(values) if len(values) >= 2 else None
