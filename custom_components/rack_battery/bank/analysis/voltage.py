"""Voltage consistency: the spread between packs, and one pack that swings.

Packs in parallel sit on one bus, so each pack's own voltage can only
differ from the others by the drop across its cable and terminals and by
what its BMS mis-measures. A steady spread of a few tenths of a volt means
the packs are far apart in charge or one path has a poor connection; half a
volt or more is an imbalance that drives large currents between packs the
moment the load changes. A single pack whose voltage jumps around by a volt
or more while the others hold steady has a connection that makes and breaks
contact: it arcs, heats and can melt a terminal.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta

from .context import RuleContext
from .findings import Observation, Severity, grade, median

VOLTAGE_SPREAD = "voltage_spread"
VOLTAGE_SWING = "voltage_swing"

# Samples kept per pack for the swing: at one poll every 5 s, an hour.
_SWING_SAMPLES = 720


def voltage_spread(ctx: RuleContext) -> list[Observation]:
    """Watch the spread between the highest and the lowest pack voltage.

    Values: ``spread`` (V), ``highest`` and ``lowest`` (pack addresses),
    ``highest_voltage`` and ``lowest_voltage`` (V).
    """
    voltages = {
        address: reading.voltage
        for address, reading in ctx.readings.items()
        if reading.voltage is not None
    }
    if len(voltages) < 2:
        return []
    highest = max(voltages, key=lambda address: (voltages[address], -address))
    lowest = min(voltages, key=lambda address: (voltages[address], address))
    spread = voltages[highest] - voltages[lowest]
    t = ctx.thresholds
    severity = grade(
        spread,
        [
            (Severity.WARNING, t.voltage_spread_warning),
            (Severity.CRITICAL, t.voltage_spread_critical),
        ],
        hysteresis=t.voltage_spread_hysteresis,
        current=ctx.current(VOLTAGE_SPREAD),
    )
    return [
        Observation(
            rule=VOLTAGE_SPREAD,
            address=None,
            severity=severity,
            values={
                "spread": round(spread, 3),
                "highest": highest,
                "lowest": lowest,
                "highest_voltage": round(voltages[highest], 3),
                "lowest_voltage": round(voltages[lowest], 3),
            },
        )
    ]


class _Deviations:
    """One pack's deviations within the window, its highest and lowest kept at hand.

    Besides the samples, two queues hold the candidates for the highest
    and the lowest: a sample that a later, higher one outranks can never
    be the highest again while that later one is kept, so it is dropped
    at once. Each queue's first entry is the answer, and a poll costs the
    same however many samples the window holds.
    """

    __slots__ = ("highs", "lows", "samples", "taken")

    def __init__(self) -> None:
        self.samples: deque[tuple[datetime, float]] = deque()
        self.highs: deque[tuple[int, float]] = deque()  # (sample number, deviation)
        self.lows: deque[tuple[int, float]] = deque()
        self.taken = 0  # samples taken so far: the next sample's number

    def add(self, when: datetime, deviation: float) -> None:
        if len(self.samples) == _SWING_SAMPLES:
            self.drop_oldest()
        number = self.taken
        self.taken += 1
        self.samples.append((when, deviation))
        while self.highs and self.highs[-1][1] <= deviation:
            self.highs.pop()
        self.highs.append((number, deviation))
        while self.lows and self.lows[-1][1] >= deviation:
            self.lows.pop()
        self.lows.append((number, deviation))

    def drop_oldest(self) -> None:
        self.samples.popleft()
        oldest = self.taken - len(self.samples)  # the number of the oldest kept
        if self.highs[0][0] < oldest:
            self.highs.popleft()
        if self.lows[0][0] < oldest:
            self.lows.popleft()

    def swing(self) -> float:
        return self.highs[0][1] - self.lows[0][1]


class VoltageSwings:
    """Watch each pack's voltage against the bank's for swings of a volt or more.

    The bus voltage itself moves with every load step and with charge, so a
    pack is measured against the median of all packs (its deviation), and
    the swing is how far that deviation ranges within the window. A healthy
    pack's deviation moves by its cable drop, some tens of millivolts; one
    behind a terminal that makes and breaks contact moves by volts. With
    only two packs there is no majority to measure against: each is
    measured against the other, and both are named.
    """

    def __init__(self) -> None:
        """Start with no history."""
        self._deviations: dict[int, _Deviations] = {}

    def forget(self, address: int) -> None:
        """Drop a pack's history, when it leaves the bank."""
        self._deviations.pop(address, None)

    def observe(self, ctx: RuleContext) -> list[Observation]:
        """Record this snapshot's deviations and judge each pack's swing.

        Values: ``swing`` (V), ``window_minutes``, ``samples``.
        """
        t = ctx.thresholds
        window = timedelta(minutes=t.voltage_swing_window_minutes)
        voltages = {
            address: reading.voltage
            for address, reading in ctx.readings.items()
            if reading.voltage is not None
        }
        if len(voltages) >= 2:
            everyone = median(list(voltages.values()))
            for address, voltage in voltages.items():
                if len(voltages) == 2:
                    reference = next(v for a, v in voltages.items() if a != address)
                else:
                    reference = everyone
                history = self._deviations.get(address)
                if history is None:
                    history = self._deviations[address] = _Deviations()
                history.add(ctx.now, voltage - reference)

        observations: list[Observation] = []
        for address, history in self._deviations.items():
            while history.samples and ctx.now - history.samples[0][0] > window:
                history.drop_oldest()
            if address not in voltages or len(history.samples) < 2:
                continue  # no fresh reading: cannot tell
            swing = history.swing()
            severity = grade(
                swing,
                [(Severity.CRITICAL, t.voltage_swing)],
                hysteresis=t.voltage_swing_hysteresis,
                current=ctx.current(VOLTAGE_SWING, address),
            )
            if ctx.changes_nothing(VOLTAGE_SWING, address, severity):
                continue
            observations.append(
                Observation(
                    rule=VOLTAGE_SWING,
                    address=address,
                    severity=severity,
                    values={
                        "swing": round(swing, 3),
                        "window_minutes": round(t.voltage_swing_window_minutes, 1),
                        "samples": len(history.samples),
                    },
                )
            )
        return observations
