"""One screen for every family: a value a 48 V pack cannot report is unknown.

A frame can pass every check of its wire and still carry a value that cannot
be true: a firmware that fills a field it does not measure with zeros, a
sentinel the family's document does not list, a register map read one word
off. Such a value would reach the rules (a critical cell-count mismatch
from one bad frame) and the recorder. So every reading is screened here
before the layers above see it; a value outside what a 48 V pack (or a
bank of them, on CAN and SunSpec) can physically report becomes ``None``,
and the caller counts the reply as suspect.

The bounds are wide on purpose: they catch the impossible, not the unusual.
A pack with a cell at 2.4 V is in trouble and the rules must see it; a pack
with a cell at 0.000 V or 6.5 V is reporting something else.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Final

from ..bank.model import PackReading


@dataclass(frozen=True, slots=True)
class Bounds:
    """The closed range a value can physically take."""

    low: float
    high: float

    def admits(self, value: float) -> bool:
        """Return whether ``value`` lies within the range."""
        return self.low <= value <= self.high


# Every bound, with why it is where it is.
BOUNDS: Final[dict[str, Bounds]] = {
    # No lithium cell reads above 5 V (LFP stops at 3.65, NMC at 4.2, LTO
    # lower still); below 1 V a cell is dead or its sense wire is off, and a
    # BMS reports that as a fault, not as a voltage. 0.000 V is a filler.
    "cell_voltage": Bounds(1.0, 5.0),
    # Below -50 degC nothing on a pack's board works (and 0 K, -273.1 degC,
    # is a zero in a kelvin field); above 120 degC the MOSFETs and the
    # cells' electrolyte have long since failed.
    "temperature": Bounds(-50.0, 120.0),
    # A 48 V pack is 15 or 16 LFP cells (or 13/14 NMC): 20 V is under two
    # volts a cell, 70 V over 4.3 V a cell. 0 V is a filler.
    "voltage": Bounds(20.0, 70.0),
    # A percentage.
    "percent": Bounds(0.0, 100.0),
    # A rack pack carries 100-300 A at most and a bank's aggregate (CAN,
    # SunSpec) some packs' worth; 2000 A through a 48 V bus is 100 kW.
    "current": Bounds(-2000.0, 2000.0),
    # A rack pack holds up to about 300 Ah; a bank's aggregate (CAN, SunSpec)
    # can be sixteen packs and more of 280 Ah, 32 such packs are under
    # 10000 Ah. Capacities are never negative.
    "capacity": Bounds(0.0, 10_000.0),
    # LFP is rated 6000-8000 cycles; 100000 is a daily cycle for 270 years.
    "cycles": Bounds(0.0, 100_000.0),
}
# How far the pack voltage may stray from the sum of its cells: the shunt,
# the busbars and the BMS's own rounding account for a volt or two; a pack
# voltage 0 V while its cells read 3.3 V each does not belong to them.
SUM_OF_CELLS_TOLERANCE: Final = 0.1  # of the sum
SUM_OF_CELLS_MINIMUM: Final = 3.0  # V, for packs with few cells reported

_FIELDS: Final = (
    ("voltage", "voltage"),
    ("current", "current"),
    ("soc", "percent"),
    ("soh", "percent"),
    ("remaining_capacity", "capacity"),
    ("full_capacity", "capacity"),
    ("design_capacity", "capacity"),
    ("cycles", "cycles"),
    ("mosfet_temperature", "temperature"),
    ("charge_voltage_limit", "voltage"),
    ("discharge_voltage_limit", "voltage"),
    ("charge_current_limit", "current"),
    ("discharge_current_limit", "current"),
)


@dataclass(frozen=True, slots=True)
class Screened:
    """A reading after the screen, and the names of the values it made unknown."""

    reading: PackReading
    rejected: tuple[str, ...]

    @property
    def suspect(self) -> bool:
        """Return whether any value could not be true."""
        return bool(self.rejected)


def _admitted(value: float | None, bound: str) -> bool:
    return value is None or BOUNDS[bound].admits(value)


def screen(reading: PackReading) -> Screened:
    """Return ``reading`` with every value that cannot be true made unknown."""
    rejected: list[str] = []
    changes: dict[str, Any] = {}
    for name, bound in _FIELDS:
        if not _admitted(getattr(reading, name), bound):
            changes[name] = None
            rejected.append(name)

    cells = reading.cell_voltages
    if not all(_admitted(cell, "cell_voltage") for cell in cells):
        cells = tuple(cell if _admitted(cell, "cell_voltage") else None for cell in cells)
        changes["cell_voltages"] = cells
        rejected.append("cell_voltages")
    temperatures = reading.temperatures
    if not all(_admitted(value, "temperature") for value in temperatures):
        changes["temperatures"] = tuple(
            value if _admitted(value, "temperature") else None for value in temperatures
        )
        rejected.append("temperatures")

    voltage = None if "voltage" in changes else reading.voltage
    known = [cell for cell in cells if cell is not None]
    if voltage is not None and known and len(known) == len(cells):
        # Only against a full set of sound cells: one cell unknown says
        # nothing about the sum.
        total = sum(known)
        tolerance = max(SUM_OF_CELLS_MINIMUM, SUM_OF_CELLS_TOLERANCE * total)
        if abs(voltage - total) > tolerance:
            changes["voltage"] = None
            rejected.append("voltage")

    if not changes:
        return Screened(reading, ())
    return Screened(replace(reading, **changes), tuple(rejected))
