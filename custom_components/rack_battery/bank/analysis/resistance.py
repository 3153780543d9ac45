"""Internal resistance per pack, from load steps, with its trend.

A cell's resistance grows as it ages, long before its capacity visibly
fades, and a pack with a failing cell or a BMS MOSFET going bad shows it
first as resistance. In a parallel bank a pack with higher resistance takes
less of every load and heats more for what it carries; comparing each pack
with the bank's median tells a tired pack from a cold day (cold raises
every pack's resistance alike).

The BMS measures voltage at its own terminals, so dV / dI across a load
step is the pack's own resistance: cells, busbars and MOSFETs. A poor cable
or terminal outside the pack does not show here; it shows in current
sharing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from .context import RuleContext
from .findings import Observation, Severity, grade, median
from .steps import pack_steps

HIGH_RESISTANCE = "high_resistance"

_SAMPLES = 15  # step estimates kept per pack; the median of them is the estimate
_MAX_AGE = timedelta(hours=24)  # estimates older than this no longer describe the pack
_TREND_EVERY = timedelta(days=1)  # one trend point per day
_TREND_POINTS = 365  # a year of trend
_PLAUSIBLE = 0.5  # ohm: above this a "step" was a reading glitch, not a resistance


@dataclass(frozen=True, kw_only=True)
class ResistanceEstimate:
    """A pack's resistance as estimated now, and how it has moved."""

    address: int
    ohms: float
    samples: int
    trend: tuple[tuple[datetime, float], ...]  # (when, ohms), oldest first, daily


class ResistanceTracker:
    """Estimate each pack's resistance from load steps and flag the outliers."""

    def __init__(self) -> None:
        """Start with no estimates."""
        self._samples: dict[int, deque[tuple[datetime, float]]] = {}
        self._trend: dict[int, deque[tuple[datetime, float]]] = {}

    def forget(self, address: int) -> None:
        """Drop a pack's estimates, when it leaves the bank."""
        self._samples.pop(address, None)
        self._trend.pop(address, None)

    def estimates(self) -> dict[int, ResistanceEstimate]:
        """Return every pack's current estimate and daily trend."""
        out: dict[int, ResistanceEstimate] = {}
        for address, samples in self._samples.items():
            if not samples:
                continue
            out[address] = ResistanceEstimate(
                address=address,
                ohms=median([ohms for _, ohms in samples]),
                samples=len(samples),
                trend=tuple(self._trend.get(address, ())),
            )
        return out

    def trend_to_dict(self) -> dict[str, list[list[str | float]]]:
        """Return the daily trend, for storage across restarts."""
        return {
            str(address): [[when.isoformat(), ohms] for when, ohms in points]
            for address, points in self._trend.items()
        }

    def restore_trend(self, data: object) -> int:
        """Restore a stored trend; return how many points could not be read."""
        dropped = 0
        if not isinstance(data, dict):
            return 0 if data is None else 1
        for key, points in data.items():
            try:
                address = int(key)
            except (TypeError, ValueError):
                dropped += 1
                continue
            if not isinstance(points, list):
                dropped += 1
                continue
            trend = self._trend.setdefault(address, deque(maxlen=_TREND_POINTS))
            for point in points:
                try:
                    when = datetime.fromisoformat(point[0])
                    ohms = float(point[1])
                except (TypeError, ValueError, IndexError, KeyError):
                    dropped += 1
                    continue
                if when.tzinfo is None or not 0 < ohms < _PLAUSIBLE:
                    dropped += 1
                    continue
                trend.append((when, ohms))
        return dropped

    def observe(self, ctx: RuleContext) -> list[Observation]:
        """Record this snapshot's steps and judge each pack against the median.

        Values: ``resistance_mohm`` and ``bank_median_mohm`` (milliohm),
        ``ratio``, ``samples``.
        """
        t = ctx.thresholds
        self._record(ctx)
        current: dict[int, tuple[float, int]] = {}
        for address, samples in self._samples.items():
            while samples and ctx.now - samples[0][0] > _MAX_AGE:
                samples.popleft()
            if len(samples) >= t.resistance_min_samples:
                current[address] = (median([ohms for _, ohms in samples]), len(samples))
        if len(current) < 2:
            return []
        bank = median([ohms for ohms, _ in current.values()])
        observations: list[Observation] = []
        for address, (ohms, count) in sorted(current.items()):
            self._add_trend(address, ctx.now, ohms)
            if address not in ctx.readings:
                continue
            ratio = ohms / bank
            severity = grade(
                ratio,
                [(Severity.WARNING, t.resistance_ratio)],
                hysteresis=t.resistance_hysteresis,
                current=ctx.current(HIGH_RESISTANCE, address),
            )
            if ctx.changes_nothing(HIGH_RESISTANCE, address, severity):
                continue
            observations.append(
                Observation(
                    rule=HIGH_RESISTANCE,
                    address=address,
                    severity=severity,
                    values={
                        "resistance_mohm": round(1000.0 * ohms, 1),
                        "bank_median_mohm": round(1000.0 * bank, 1),
                        "ratio": round(ratio, 2),
                        "samples": count,
                    },
                )
            )
        return observations

    def _record(self, ctx: RuleContext) -> None:
        t = ctx.thresholds
        steps = pack_steps(ctx.previous, ctx.snapshot, max_seconds=t.load_step_max_seconds)
        for address, step in steps.items():
            if abs(step.delta_current) < t.resistance_min_step:
                continue
            ohms = step.delta_voltage / step.delta_current
            if not 0 < ohms < _PLAUSIBLE:
                continue
            samples = self._samples.setdefault(address, deque(maxlen=_SAMPLES))
            samples.append((ctx.now, ohms))

    def _add_trend(self, address: int, now: datetime, ohms: float) -> None:
        trend = self._trend.setdefault(address, deque(maxlen=_TREND_POINTS))
        if not trend or now - trend[-1][0] >= _TREND_EVERY:
            trend.append((now, ohms))
