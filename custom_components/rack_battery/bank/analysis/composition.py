"""Composition: packs that should not share a bus, or too many of them.

Packs in parallel must agree on voltage. Packs of different cell counts
(15S and 16S) have different voltages at every state of charge, so the
higher one discharges into the lower one without end and the lower one is
overcharged: never mix them. Different models of one maker usually share a
voltage but differ in capacity, resistance and charge limits, so they share
the load unevenly and the master's limits may not suit the slaves.
Different firmware in one bank is a common cause of odd SoC reports and
packs that do not join the master's link; worth knowing, rarely urgent.
And a master BMS can only coordinate so many slaves: packs past its limit
may run without its charge limits.

These are facts about the packs, not measurements, so they are raised and
cleared at once, without debounce.
"""

from __future__ import annotations

from collections.abc import Mapping

from .context import RuleContext
from .findings import Observation, Severity

MIXED_MODELS = "mixed_models"
MIXED_FIRMWARE = "mixed_firmware"
MIXED_CELL_COUNT = "mixed_cell_count"
TOO_MANY_PACKS = "too_many_packs"

# How many packs a family's master coordinates in one bank, as the makers
# publish it for their current models. Older models of a family may allow
# fewer: the ``max_packs`` setting overrides this table.
FAMILY_MAX_PACKS: dict[str, int] = {
    "pylontech_rs485": 16,
    "pace_modbus": 16,
}
DEFAULT_MAX_PACKS = 8  # a family we know nothing about: what most support


def max_packs(family: str | None, setting: float) -> int:
    """Return how many packs a bank of this family may hold."""
    if setting > 0:
        return round(setting)
    if family is None:
        return DEFAULT_MAX_PACKS
    return FAMILY_MAX_PACKS.get(family, DEFAULT_MAX_PACKS)


def composition(ctx: RuleContext) -> list[Observation]:
    """Check models, firmware, cell counts and the number of packs.

    Values: ``mixed_models`` - ``models`` ("US3000C: 1, 2; US2000C: 3"),
    ``count`` (distinct models). ``mixed_firmware`` - ``firmware``, ``count``.
    ``mixed_cell_count`` - ``cell_counts`` ("15: 3; 16: 1, 2"), ``count``.
    ``too_many_packs`` - ``packs``, ``max_packs``, ``family``.
    """
    observations: list[Observation] = []
    if ctx.identities:
        models = {a: i.model for a, i in ctx.identities.items() if i.model}
        firmware = {a: i.firmware for a, i in ctx.identities.items() if i.firmware}
        observations.append(_mixed(MIXED_MODELS, "models", models, Severity.WARNING))
        observations.append(_mixed(MIXED_FIRMWARE, "firmware", firmware, Severity.INFO))

    cells: dict[int, str] = {}
    for address in ctx.members:
        identity = ctx.identities.get(address)
        reading = ctx.readings.get(address)
        if identity is not None and identity.cell_count:
            cells[address] = str(identity.cell_count)
        elif reading is not None and reading.cell_voltages:
            cells[address] = str(len(reading.cell_voltages))
    if cells:
        observations.append(_mixed(MIXED_CELL_COUNT, "cell_counts", cells, Severity.CRITICAL))

    families = sorted({identity.family for identity in ctx.identities.values() if identity.family})
    family = families[0] if families else None
    limit = max_packs(family, ctx.thresholds.max_packs)
    count = len(ctx.members)
    observations.append(
        Observation(
            rule=TOO_MANY_PACKS,
            address=None,
            severity=Severity.WARNING if count > limit else None,
            instant=True,
            values={"packs": count, "max_packs": limit, "family": family or "unknown"},
        )
    )
    return observations


def _mixed(rule: str, key: str, by_address: Mapping[int, str], severity: Severity) -> Observation:
    groups: dict[str, list[int]] = {}
    for address, value in sorted(by_address.items()):
        groups.setdefault(value, []).append(address)
    text = "; ".join(
        f"{value}: {', '.join(str(a) for a in addresses)}"
        for value, addresses in sorted(groups.items())
    )
    return Observation(
        rule=rule,
        address=None,
        severity=severity if len(groups) > 1 else None,
        instant=True,
        values={key: text, "count": len(groups)},
    )
