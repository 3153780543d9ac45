"""Temperature: a pack past its limit, or well above the others.

LiFePO4 ages fastest when it is warm, and most BMSes stop charging in the
mid-forties and stop discharging in the mid-fifties; a pack that trips
leaves the rest of the bank to carry its share. In a parallel bank all
packs carry about the same current in the same rack, so one pack that runs
ten kelvin warmer than the others is not the weather: it has a high-
resistance cell or connection heating it, a blocked vent, or a heat source
beside it.

Cell and pack sensors are judged; a MOSFET sensor is left out where cell
sensors exist, as it runs warmer under load by design.
"""

from __future__ import annotations

from ..model import PackReading
from .context import RuleContext
from .findings import Observation, Severity, grade, median

HIGH_TEMPERATURE = "high_temperature"
TEMPERATURE_OUTLIER = "temperature_outlier"


def pack_temperature(reading: PackReading) -> float | None:
    """Return the temperature a pack is judged by: its warmest cell sensor."""
    known = [value for value in reading.temperatures if value is not None]
    if known:
        return max(known)
    return reading.mosfet_temperature


def temperature(ctx: RuleContext) -> list[Observation]:
    """Watch each pack against the limit, and against the others.

    ``high_temperature`` values: ``temperature`` (°C), ``limit`` (°C, the
    level of the severity it has). ``temperature_outlier`` values:
    ``temperature``, ``others_median`` (°C), ``difference`` (K), ``current``
    (A, the pack's) and ``others_current`` (A, the mean of the others'), so
    the user can see whether the load was the same.
    """
    t = ctx.thresholds
    temperatures: dict[int, float] = {}
    for address, reading in ctx.readings.items():
        value = pack_temperature(reading)
        if value is not None:
            temperatures[address] = value
    observations: list[Observation] = []
    for address, value in sorted(temperatures.items()):
        severity = grade(
            value,
            [
                (Severity.WARNING, t.temperature_warning),
                (Severity.CRITICAL, t.temperature_critical),
            ],
            hysteresis=t.temperature_hysteresis,
            current=ctx.current(HIGH_TEMPERATURE, address),
        )
        if not ctx.changes_nothing(HIGH_TEMPERATURE, address, severity):
            limit = (
                t.temperature_critical if severity is Severity.CRITICAL else t.temperature_warning
            )
            observations.append(
                Observation(
                    rule=HIGH_TEMPERATURE,
                    address=address,
                    severity=severity,
                    values={"temperature": round(value, 1), "limit": round(limit, 1)},
                )
            )
        others = [v for a, v in temperatures.items() if a != address]
        if not others:
            continue
        reference = median(others)
        difference = value - reference
        outlier = grade(
            difference,
            [(Severity.WARNING, t.temperature_outlier)],
            hysteresis=t.temperature_hysteresis,
            current=ctx.current(TEMPERATURE_OUTLIER, address),
        )
        if ctx.changes_nothing(TEMPERATURE_OUTLIER, address, outlier):
            continue
        values: dict[str, int | float | str] = {
            "temperature": round(value, 1),
            "others_median": round(reference, 1),
            "difference": round(difference, 1),
        }
        own = ctx.readings[address].current
        other_currents = [
            r.current for a, r in ctx.readings.items() if a != address and r.current is not None
        ]
        if own is not None:
            values["current"] = round(own, 1)
        if other_currents:
            values["others_current"] = round(sum(other_currents) / len(other_currents), 1)
        observations.append(
            Observation(rule=TEMPERATURE_OUTLIER, address=address, severity=outlier, values=values)
        )
    return observations
