"""Current sharing: whether each pack takes its share of the bank's load.

In parallel, the load divides by conductance: a pack takes current in
proportion to 1 / R of its whole path (cells, BMS, cable, terminals). Packs
of equal capacity and equal health should take equal shares, and packs of
different capacity shares in proportion to what they hold. A pack that
persistently takes less than its share sits behind a resistance the others
do not have: a corroded or loose terminal, an undersized or damaged cable,
a fuse holder going bad. The others then carry its share, run harder and
age faster, and the bank cannot deliver its rated current.

A single reading mixes two things: a pack that is emptier than the others
takes less of a discharge (its voltage is lower) though nothing is wrong
with it. So the rule judges each pack's share of load *steps*: across a
step the packs' open-circuit voltages do not move, and each pack's share of
the change is exactly its share of the bank's conductance.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta

from .context import RuleContext
from .findings import Observation, Severity, grade, median
from .steps import pack_steps

LOW_CURRENT_SHARE = "low_current_share"

_SAMPLES = 20  # load steps kept per pack
_MAX_AGE = timedelta(hours=24)  # a share older than this no longer describes the wiring


class CurrentSharing:
    """Keep each pack's share of recent load steps, and judge it against its capacity."""

    def __init__(self) -> None:
        """Start with no steps."""
        self._shares: dict[int, deque[tuple[datetime, float]]] = {}

    def forget(self, address: int) -> None:
        """Drop a pack's steps, when it leaves the bank."""
        self._shares.pop(address, None)

    def shares(self, address: int) -> list[float]:
        """Return a pack's recent shares of load steps, oldest first (fractions)."""
        return [share for _, share in self._shares.get(address, ())]

    def observe(self, ctx: RuleContext) -> list[Observation]:
        """Record this snapshot's load step, if any, and judge every pack.

        Values: ``current_share`` and ``capacity_share`` (%), ``ratio``
        (current share over capacity share), ``steps`` (load steps judged),
        ``capacity`` (Ah).
        """
        t = ctx.thresholds
        self._record(ctx)
        if ctx.snapshot.failed:
            return []  # a silent pack still carries current: shares unknowable
        capacities: dict[int, float] = {}
        for address in ctx.readings:
            capacity = ctx.capacity(address)
            if capacity is None:
                return []
            capacities[address] = capacity
        if len(capacities) < 2:
            return []
        total = sum(capacities.values())
        observations: list[Observation] = []
        for address, history in sorted(self._shares.items()):
            while history and ctx.now - history[0][0] > _MAX_AGE:
                history.popleft()
            if address not in capacities or len(history) < t.current_share_min_steps:
                continue
            share = median([value for _, value in history])
            capacity_share = capacities[address] / total
            ratio = share / capacity_share
            severity = grade(
                ratio,
                [(Severity.WARNING, t.current_share_ratio)],
                hysteresis=t.current_share_hysteresis,
                current=ctx.current(LOW_CURRENT_SHARE, address),
                below=True,
            )
            if ctx.changes_nothing(LOW_CURRENT_SHARE, address, severity):
                continue
            observations.append(
                Observation(
                    rule=LOW_CURRENT_SHARE,
                    address=address,
                    severity=severity,
                    raise_after=timedelta(minutes=t.current_share_raise_after_minutes),
                    values={
                        "current_share": round(100.0 * share, 1),
                        "capacity_share": round(100.0 * capacity_share, 1),
                        "ratio": round(ratio, 2),
                        "steps": len(history),
                        "capacity": round(capacities[address], 1),
                    },
                )
            )
        return observations

    def _record(self, ctx: RuleContext) -> None:
        previous = ctx.previous
        if previous is None or previous.failed or ctx.snapshot.failed:
            return
        if set(previous.readings) != set(ctx.readings):
            return
        steps = pack_steps(previous, ctx.snapshot, max_seconds=ctx.thresholds.load_step_max_seconds)
        if len(steps) != len(ctx.readings) or len(steps) < 2:
            return
        bank_step = sum(step.delta_current for step in steps.values())
        if abs(bank_step) < ctx.thresholds.current_share_min_step:
            return
        for address, step in steps.items():
            history = self._shares.setdefault(address, deque(maxlen=_SAMPLES))
            history.append((ctx.now, step.delta_current / bank_step))
