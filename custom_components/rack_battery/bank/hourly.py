"""Hourly mean, lowest and highest of many values, gathered poll by poll.

A pack's single cells and probes are worth a year of history (a cell that
drifts away from its neighbours over months is a cell on its way out), but
one state row per cell per poll would fill the recorder with some 50 000
rows per pack a day. So each value is folded, poll by poll, into the hour
it belongs to, and an hour is handed over once, when the first poll of a
later hour shows that it has closed.

The hour still open and the last hour handed over are kept across restarts
(``to_dict``/``from_dict``): an hour that a restart cuts in two is still
one hour, and an hour already handed over is never handed over again.

Every poll counts the same: polls come at a steady interval, so the mean of
the samples is the mean over the hour.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
import math

STATE_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class HourStats:
    """One value over one hour."""

    mean: float
    min: float
    max: float
    samples: int


@dataclass(frozen=True, kw_only=True)
class ClosedHour:
    """Every value seen in one hour, by its key; start is the hour's start in UTC."""

    start: datetime
    series: Mapping[str, HourStats]


class _Running:
    __slots__ = ("count", "high", "low", "total")

    def __init__(self, value: float) -> None:
        self.count = 1
        self.total = value
        self.low = value
        self.high = value

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if value < self.low:
            self.low = value
        elif value > self.high:
            self.high = value

    def stats(self) -> HourStats:
        return HourStats(
            mean=self.total / self.count, min=self.low, max=self.high, samples=self.count
        )


def hour_of(when: datetime) -> datetime:
    """Return the start, in UTC, of the hour a moment falls in."""
    return when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


class HourlyAggregator:
    """Folds samples into hours, and hands each hour over once."""

    def __init__(self, *, last_closed: datetime | None = None) -> None:
        """Start with nothing open; hours up to ``last_closed`` are done with."""
        self.last_closed = last_closed
        self._start: datetime | None = None
        self._open: dict[str, _Running] = {}

    @property
    def open_hour(self) -> datetime | None:
        """Return the start of the hour being gathered, if any."""
        return self._start

    def add(self, when: datetime, samples: Mapping[str, float | None]) -> list[ClosedHour]:
        """Add one poll's values; return the hour this poll has closed, if any.

        A value that is None or not finite (a BMS that did not say) is left
        out. Samples of an earlier hour than the open one, or of one already
        handed over (a clock set back), are dropped, never written twice.
        """
        hour = hour_of(when)
        closed: list[ClosedHour] = []
        if self._start is not None:
            if hour < self._start:
                return closed  # a clock set back: the open hour stays open
            if hour > self._start:
                closed = self.close()
        if self.last_closed is not None and hour <= self.last_closed:
            return closed
        self._start = hour
        for key, value in samples.items():
            if value is None or not math.isfinite(value):
                continue
            if (running := self._open.get(key)) is None:
                self._open[key] = _Running(value)
            else:
                running.add(value)
        return closed

    def close(self) -> list[ClosedHour]:
        """Hand over the open hour, whatever the time."""
        start, series = self._start, self._open
        self._start, self._open = None, {}
        if start is None or not series:
            return []
        if self.last_closed is not None and start <= self.last_closed:
            return []
        self.last_closed = start
        return [ClosedHour(start=start, series={k: r.stats() for k, r in series.items()})]

    def to_dict(self) -> dict[str, object]:
        """Return what must survive a restart, as plain JSON."""
        return {
            "version": STATE_VERSION,
            "last_closed": None if self.last_closed is None else self.last_closed.isoformat(),
            "open_hour": None if self._start is None else self._start.isoformat(),
            "open": {
                key: [running.count, running.total, running.low, running.high]
                for key, running in self._open.items()
            },
        }

    @classmethod
    def from_dict(cls, data: object) -> tuple[HourlyAggregator, list[str]]:
        """Rebuild from ``to_dict``; return what could not be read.

        Anything unreadable starts afresh: at worst an hour is written with
        fewer samples, never twice.
        """
        lost: list[str] = []
        if data is None:
            return cls(), lost
        if not isinstance(data, Mapping) or data.get("version") != STATE_VERSION:
            return cls(), ["hourly: not a known state, started anew"]
        aggregator = cls(last_closed=_time(data.get("last_closed"), "last_closed", lost))
        start = _time(data.get("open_hour"), "open_hour", lost)
        series = data.get("open")
        if start is not None and isinstance(series, Mapping):
            aggregator._start = start
            for key, raw in series.items():
                running = _running(raw)
                if running is None:
                    lost.append(f"hourly.open.{key}")
                    continue
                aggregator._open[str(key)] = running
        return aggregator, lost


def _time(raw: object, name: str, lost: list[str]) -> datetime | None:
    if raw is None:
        return None
    try:
        when = datetime.fromisoformat(str(raw))
    except ValueError:
        lost.append(f"hourly.{name}")
        return None
    if when.tzinfo is None:
        lost.append(f"hourly.{name}")
        return None
    return hour_of(when)


def _running(raw: object) -> _Running | None:
    if not isinstance(raw, list | tuple) or len(raw) != 4:
        return None
    count, total, low, high = raw
    numbers = (total, low, high)
    if not isinstance(count, int) or count < 1:
        return None
    if not all(isinstance(n, int | float) and math.isfinite(n) for n in numbers):
        return None
    if not low <= high:
        return None
    running = _Running(float(low))
    running.count = count
    running.total = float(total)
    running.high = float(high)
    return running
