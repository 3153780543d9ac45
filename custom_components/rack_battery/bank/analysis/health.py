"""Health: packs worn out, near their rated cycles, or off in capacity.

A parallel bank is only as good as its weakest pack. A pack at 80 % of its
design capacity is at the usual end of life, and in parallel it also drags
the others: it reaches empty first, then sits at a different voltage from
them and draws or pushes currents. Replacing it with a new pack is no cure
either, since the new one will not match the old ones; that is why the
advice is about the bank. Capacity that differs by more than a few percent
between packs means the packs reach full and empty at different times, so
the bank's usable capacity is set by the smallest.
"""

from __future__ import annotations

from .context import RuleContext
from .findings import Observation, Severity, grade, median

LOW_STATE_OF_HEALTH = "low_state_of_health"
CYCLE_LIFE = "cycle_life"
CAPACITY_MISMATCH = "capacity_mismatch"


def state_of_health(ctx: RuleContext) -> list[Observation]:
    """Flag packs whose state of health is at or below the replacement level.

    The BMS's own SoH is used; where it reports none, full over design
    capacity stands in. Values: ``soh`` (%), ``threshold`` (%).
    """
    t = ctx.thresholds
    observations: list[Observation] = []
    for address, reading in sorted(ctx.readings.items()):
        soh = reading.soh
        if soh is None and reading.full_capacity and reading.design_capacity:
            soh = 100.0 * reading.full_capacity / reading.design_capacity
        if soh is None:
            continue
        severity = grade(
            soh,
            [(Severity.WARNING, t.soh_replace)],
            hysteresis=t.soh_hysteresis,
            current=ctx.current(LOW_STATE_OF_HEALTH, address),
            below=True,
        )
        if ctx.changes_nothing(LOW_STATE_OF_HEALTH, address, severity):
            continue
        observations.append(
            Observation(
                rule=LOW_STATE_OF_HEALTH,
                address=address,
                severity=severity,
                values={"soh": round(soh, 1), "threshold": round(t.soh_replace, 1)},
            )
        )
    return observations


def cycle_life(ctx: RuleContext) -> list[Observation]:
    """Flag packs near (info) or past (warning) the chemistry's rated cycles.

    Values: ``cycles``, ``rated_cycles``, ``percent_of_rated``.
    """
    t = ctx.thresholds
    observations: list[Observation] = []
    for address, reading in sorted(ctx.readings.items()):
        if reading.cycles is None:
            continue
        severity = grade(
            reading.cycles,
            [
                (Severity.INFO, t.rated_cycles * t.cycles_near_fraction),
                (Severity.WARNING, t.rated_cycles),
            ],
            hysteresis=0.0,
            current=ctx.current(CYCLE_LIFE, address),
        )
        if ctx.changes_nothing(CYCLE_LIFE, address, severity):
            continue
        observations.append(
            Observation(
                rule=CYCLE_LIFE,
                address=address,
                severity=severity,
                instant=True,
                values={
                    "cycles": reading.cycles,
                    "rated_cycles": round(t.rated_cycles),
                    "percent_of_rated": round(100.0 * reading.cycles / t.rated_cycles, 1),
                },
            )
        )
    return observations


def capacity_mismatch(ctx: RuleContext) -> list[Observation]:
    """Flag packs whose full capacity differs from the others' by more than the limit.

    Each pack is measured against the median of the others, so one odd pack
    does not make all the others look odd. With two packs each is the
    other's reference; only the smaller one is named (capacity fades, it
    does not grow). Values: ``full_capacity`` and ``others_median`` (Ah),
    ``difference_percent`` (signed: negative for a pack that holds less).
    """
    t = ctx.thresholds
    capacities = {
        address: reading.full_capacity
        for address, reading in ctx.readings.items()
        if reading.full_capacity is not None and reading.full_capacity > 0
    }
    if len(capacities) < 2:
        return []
    observations: list[Observation] = []
    for address, capacity in sorted(capacities.items()):
        reference = median([c for a, c in capacities.items() if a != address])
        difference = 100.0 * (capacity - reference) / reference
        judged = abs(difference)
        if len(capacities) == 2 and difference > 0:
            judged = 0.0
        severity = grade(
            judged,
            [(Severity.WARNING, t.capacity_mismatch_percent)],
            hysteresis=t.capacity_mismatch_hysteresis,
            current=ctx.current(CAPACITY_MISMATCH, address),
        )
        if ctx.changes_nothing(CAPACITY_MISMATCH, address, severity):
            continue
        observations.append(
            Observation(
                rule=CAPACITY_MISMATCH,
                address=address,
                severity=severity,
                values={
                    "full_capacity": round(capacity, 1),
                    "others_median": round(reference, 1),
                    "difference_percent": round(difference, 1),
                },
            )
        )
    return observations
