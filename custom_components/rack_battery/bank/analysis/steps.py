"""Load steps: two readings close in time, between which the current changed.

Across a load step the packs' open-circuit voltages stay put (their charge
barely moves in a minute), so what changes is only what the load and each
pack's resistance make of it. That cancels what a single reading cannot
separate: a pack that carries less because it is emptier, from a pack that
carries less because its path resists.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model import BankSnapshot, PackReading


@dataclass(frozen=True, kw_only=True)
class PackStep:
    """How one pack's voltage and current changed between two readings."""

    address: int
    delta_voltage: float  # V
    delta_current: float  # A, positive toward charging


def pack_steps(
    previous: BankSnapshot | None, snapshot: BankSnapshot, *, max_seconds: float
) -> dict[int, PackStep]:
    """Return each pack's change since the previous snapshot, if close enough in time."""
    if previous is None:
        return {}
    elapsed = (snapshot.taken_at - previous.taken_at).total_seconds()
    if not 0 < elapsed <= max_seconds:
        return {}
    steps: dict[int, PackStep] = {}
    for address, reading in snapshot.readings.items():
        before = previous.readings.get(address)
        if before is None:
            continue
        step = _step(before, reading)
        if step is not None:
            steps[address] = step
    return steps


def _step(before: PackReading, after: PackReading) -> PackStep | None:
    if (
        before.voltage is None
        or after.voltage is None
        or before.current is None
        or after.current is None
    ):
        return None
    return PackStep(
        address=after.address,
        delta_voltage=after.voltage - before.voltage,
        delta_current=after.current - before.current,
    )
