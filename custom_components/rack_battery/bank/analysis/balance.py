"""Balance between and within packs: SoC spread, parasitic currents, cell spread.

Packs in parallel are meant to hold the same state of charge. When they do
not, the fuller pack feeds the emptier one through the bus whenever the load
is light: charge goes round in circles, both packs cycle for nothing, and
the emptier pack hits its low cut-off first under load, leaving the others
to carry the whole bank. Naming the pack that feeds and the pack that is
fed, and the current between them, tells the user which pack to look at
(a newly added pack charged differently, a pack whose BMS lost count, a
pack with a weak cell). Within a pack, a wide spread between cells means
its balancer is losing: the pack reaches full or empty early and its usable
capacity shrinks.
"""

from __future__ import annotations

from collections.abc import Iterable

from .context import RuleContext
from .findings import Observation, Severity, grade

SOC_SPREAD = "soc_spread"
PARASITIC_CURRENT = "parasitic_current"
CELL_IMBALANCE = "cell_imbalance"


def soc_spread(ctx: RuleContext) -> list[Observation]:
    """Watch the spread between the fullest and the emptiest pack.

    Values: ``spread`` (percentage points), ``highest`` and ``lowest``
    (addresses), ``highest_soc`` and ``lowest_soc`` (%).
    """
    socs = {
        address: reading.soc for address, reading in ctx.readings.items() if reading.soc is not None
    }
    if len(socs) < 2:
        return []
    highest = max(socs, key=lambda address: (socs[address], -address))
    lowest = min(socs, key=lambda address: (socs[address], address))
    spread = socs[highest] - socs[lowest]
    t = ctx.thresholds
    severity = grade(
        spread,
        [(Severity.WARNING, t.soc_spread_warning)],
        hysteresis=t.soc_spread_hysteresis,
        current=ctx.current(SOC_SPREAD),
    )
    return [
        Observation(
            rule=SOC_SPREAD,
            address=None,
            severity=severity,
            values={
                "spread": round(spread, 1),
                "highest": highest,
                "lowest": lowest,
                "highest_soc": round(socs[highest], 1),
                "lowest_soc": round(socs[lowest], 1),
            },
        )
    ]


def parasitic_current(ctx: RuleContext) -> list[Observation]:
    """Watch for packs feeding each other while the bank is at rest.

    Only a bank at rest can show it: under load every pack discharges and a
    fuller pack merely carries more. So the rule says nothing unless the
    bank current is below ``parasitic_bank_current``. The judged number is
    the smaller of the largest charging and the largest discharging current
    (one pack must push, another must take).

    Values: ``source`` and ``sink`` (the pack that feeds most and the pack
    fed most), ``source_current`` and ``sink_current`` (A, both positive),
    ``circulating_current`` (A, the sum of what the fed packs take),
    ``sources`` and ``sinks`` (every pack above the level, comma-separated),
    ``bank_current`` (A), and ``source_soc`` / ``sink_soc`` (%) when known.
    """
    currents = {
        address: reading.current
        for address, reading in ctx.readings.items()
        if reading.current is not None
    }
    if len(currents) < 2:
        return []
    bank_current = sum(currents.values())
    t = ctx.thresholds
    if abs(bank_current) >= t.parasitic_bank_current:
        return []  # not at rest: cannot tell
    sink = max(currents, key=lambda address: (currents[address], -address))
    source = min(currents, key=lambda address: (currents[address], address))
    judged = min(currents[sink], -currents[source])
    current = ctx.current(PARASITIC_CURRENT)
    severity = grade(
        judged,
        [(Severity.INFO, t.parasitic_current), (Severity.WARNING, t.parasitic_current_warning)],
        hysteresis=t.parasitic_hysteresis,
        current=current,
    )
    level = t.parasitic_current - (t.parasitic_hysteresis if current is not None else 0.0)
    values: dict[str, int | float | str] = {
        "source": source,
        "sink": sink,
        "source_current": round(max(-currents[source], 0.0), 1),
        "sink_current": round(max(currents[sink], 0.0), 1),
        "circulating_current": round(sum(c for c in currents.values() if c > 0), 1),
        "sources": _join(a for a, c in sorted(currents.items()) if -c >= level),
        "sinks": _join(a for a, c in sorted(currents.items()) if c >= level),
        "bank_current": round(bank_current, 1),
    }
    for key, address in (("source_soc", source), ("sink_soc", sink)):
        soc = ctx.readings[address].soc
        if soc is not None:
            values[key] = round(soc, 1)
    return [Observation(rule=PARASITIC_CURRENT, address=None, severity=severity, values=values)]


def cell_imbalance(ctx: RuleContext) -> list[Observation]:
    """Watch the spread between each pack's highest and lowest cell.

    Values: ``cell_delta``, ``cell_max`` and ``cell_min`` (V), ``highest_cell``
    and ``lowest_cell`` (1-based cell numbers).
    """
    t = ctx.thresholds
    observations: list[Observation] = []
    for address, reading in sorted(ctx.readings.items()):
        cells = [(index, v) for index, v in enumerate(reading.cell_voltages) if v is not None]
        if len(cells) < 2:
            continue
        high_index, high = max(cells, key=lambda cell: cell[1])
        low_index, low = min(cells, key=lambda cell: cell[1])
        delta = high - low
        severity = grade(
            delta,
            [(Severity.WARNING, t.cell_delta_warning)],
            hysteresis=t.cell_delta_hysteresis,
            current=ctx.current(CELL_IMBALANCE, address),
        )
        if ctx.changes_nothing(CELL_IMBALANCE, address, severity):
            continue
        observations.append(
            Observation(
                rule=CELL_IMBALANCE,
                address=address,
                severity=severity,
                values={
                    "cell_delta": round(delta, 3),
                    "cell_max": round(high, 3),
                    "cell_min": round(low, 3),
                    "highest_cell": high_index + 1,
                    "lowest_cell": low_index + 1,
                },
            )
        )
    return observations


def _join(addresses: Iterable[int]) -> str:
    return ", ".join(str(address) for address in addresses)
