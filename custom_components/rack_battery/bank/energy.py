"""The energy that went into the bank and came out of it.

No BMS of the supported families keeps an energy counter: they report power
(or voltage and current) at the moment they are asked. The bank's energy in
and out is the integral of its power over time, taken here from one poll to
the next by the trapezoid rule. A stretch in which the power crosses zero is
split at the crossing, so charging and discharging are counted apart even
when the bank turns around between two polls.

A gap longer than ``max_gap`` between two usable polls (the bus was down,
Home Assistant was stopped) is not counted at all: guessing what the bank
did in the dark would add energy that was never measured, and an energy
dashboard cannot take a counter back down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
import math

from .model import BankSnapshot

STATE_VERSION = 1
DEFAULT_MAX_GAP = timedelta(minutes=5)
_WATT_SECONDS_PER_KWH = 3_600_000.0


@dataclass(frozen=True)
class _Sample:
    when: datetime
    power: float  # W, positive while charging


class EnergyMeter:
    """Counts the kWh charged into and discharged from the bank."""

    def __init__(
        self,
        *,
        charged: float = 0.0,
        discharged: float = 0.0,
        max_gap: timedelta = DEFAULT_MAX_GAP,
    ) -> None:
        """Start counting from the totals given (kWh)."""
        self.charged = charged
        self.discharged = discharged
        self.max_gap = max_gap
        self._last: _Sample | None = None

    def update(self, snapshot: BankSnapshot) -> None:
        """Add the energy between the previous snapshot and this one."""
        self.add(snapshot.taken_at, snapshot.power)

    def add(self, when: datetime, power: float | None) -> None:
        """Add the energy between the previous sample and this one.

        ``power`` is None when no pack reported it: the stretch up to the
        next known power is not counted.
        """
        if power is None or not math.isfinite(power):
            self._last = None
            return
        sample = _Sample(when, power)
        last, self._last = self._last, sample
        if last is None:
            return
        seconds = (when - last.when).total_seconds()
        if seconds <= 0 or seconds > self.max_gap.total_seconds():
            return
        charged, discharged = _split_trapezoid(last.power, power, seconds)
        self.charged += charged / _WATT_SECONDS_PER_KWH
        self.discharged += discharged / _WATT_SECONDS_PER_KWH

    def to_dict(self) -> dict[str, float | int]:
        """Return the totals for Home Assistant's storage."""
        return {
            "version": STATE_VERSION,
            "charged": self.charged,
            "discharged": self.discharged,
        }

    @classmethod
    def from_dict(cls, data: object) -> tuple[EnergyMeter, list[str]]:
        """Read stored totals back; never raises, and names what it could not read.

        A total that cannot be read starts again from zero on its own; the
        other one is kept.
        """
        dropped: list[str] = []
        totals = {"charged": 0.0, "discharged": 0.0}
        if not isinstance(data, Mapping):
            if data is not None:
                dropped.append(f"not a mapping ({type(data).__name__}), counted from zero")
            return cls(), dropped
        for key in totals:
            value = data.get(key)
            if (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
                and value >= 0
            ):
                totals[key] = float(value)
            else:
                dropped.append(f"{key}: {value!r} unreadable, counted from zero")
        return cls(charged=totals["charged"], discharged=totals["discharged"]), dropped


def _split_trapezoid(first: float, second: float, seconds: float) -> tuple[float, float]:
    """Return the watt-seconds charged and discharged between two power samples.

    Power is taken to change linearly from ``first`` to ``second``. Where it
    changes sign, the crossing falls at ``first / (first - second)`` of the
    stretch and each side is a triangle of its own.
    """
    if first >= 0 and second >= 0:
        return (first + second) / 2 * seconds, 0.0
    if first <= 0 and second <= 0:
        return 0.0, -(first + second) / 2 * seconds
    # Rounding can put the crossing a hair outside the stretch when one
    # sample is next to zero; neither side may then count below nothing.
    crossing = min(max(seconds * first / (first - second), 0.0), seconds)
    before = abs(first) * crossing / 2
    after = abs(second) * (seconds - crossing) / 2
    if first > 0:
        return before, after
    return after, before
