"""The numbers the rules judge a bank by, with defaults from the field.

Every number here is one the options flow may expose, so the class is flat
(numbers only), each field says its unit and sensible range in its
metadata, and it goes to and from a plain dict. A dict from an older
version, or one a user edited by hand, must never stop the integration: a
missing, unknown or unusable entry falls back to its default.

Hysteresis: each graded number has a raise level and a ``*_hysteresis`` in
the same unit. A finding opens at the raise level and stays open until the
value is back past the raise level by the hysteresis (a spread raised at
0.20 V clears below 0.15 V), so a value that hovers at a level does not flap.

Debounce: a condition must hold for ``raise_after_minutes`` before it is
raised, and be gone for ``clear_after_minutes`` before it clears, so a load
step or one odd reading does not reach the user.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
import math
from typing import Any, Self


@dataclass(frozen=True, kw_only=True)
class SettingInfo:
    """What the options flow needs to offer one setting."""

    key: str
    default: float
    unit: str
    minimum: float
    maximum: float
    integer: bool
    description: str


def _setting(default: float, unit: str, minimum: float, maximum: float, description: str) -> Any:
    return field(
        default=default,
        metadata={
            "unit": unit,
            "minimum": minimum,
            "maximum": maximum,
            "description": description,
        },
    )


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """Limits, hysteresis and debounce of every rule (see docs/rules.md)."""

    # Debounce.
    raise_after_minutes: float = _setting(
        5.0, "min", 0, 1440, "a condition must hold this long before it is raised"
    )
    clear_after_minutes: float = _setting(
        10.0, "min", 0, 1440, "a condition must be gone this long before it clears"
    )

    # Voltage consistency.
    voltage_spread_warning: float = _setting(
        0.2, "V", 0.01, 5, "pack voltage spread that is a warning"
    )
    voltage_spread_critical: float = _setting(
        0.5, "V", 0.01, 10, "pack voltage spread that needs attention now"
    )
    voltage_spread_hysteresis: float = _setting(0.05, "V", 0, 1, "hysteresis of the spread")
    voltage_swing: float = _setting(
        1.0, "V", 0.1, 10, "swing of one pack against the others: a failing connection"
    )
    voltage_swing_hysteresis: float = _setting(0.3, "V", 0, 5, "hysteresis of the swing")
    voltage_swing_window_minutes: float = _setting(
        10.0, "min", 1, 240, "window in which a pack's swing is measured"
    )

    # State of charge and parasitic currents.
    soc_spread_warning: float = _setting(
        15.0, "%", 1, 100, "state-of-charge spread between packs (percentage points)"
    )
    soc_spread_hysteresis: float = _setting(5.0, "%", 0, 50, "hysteresis of the SoC spread")
    cell_delta_warning: float = _setting(
        0.1, "V", 0.005, 1, "spread between a pack's highest and lowest cell"
    )
    cell_delta_hysteresis: float = _setting(0.03, "V", 0, 0.5, "hysteresis of the cell spread")
    parasitic_bank_current: float = _setting(
        2.0, "A", 0.1, 50, "bank current below which the bank counts as at rest"
    )
    parasitic_current: float = _setting(
        1.0, "A", 0.1, 100, "current one pack pushes into another at rest (info)"
    )
    parasitic_current_warning: float = _setting(
        5.0, "A", 0.1, 200, "current one pack pushes into another at rest (warning)"
    )
    parasitic_hysteresis: float = _setting(0.3, "A", 0, 10, "hysteresis of the parasitic current")

    # Load steps, for current sharing and internal resistance.
    load_step_max_seconds: float = _setting(
        120.0, "s", 1, 3600, "longest time between the two readings of a load step"
    )

    # Current sharing.
    current_share_ratio: float = _setting(
        0.7, "", 0.05, 1, "share of the load over share of the capacity below which a pack lags"
    )
    current_share_hysteresis: float = _setting(0.1, "", 0, 0.5, "hysteresis of the share ratio")
    current_share_min_step: float = _setting(
        10.0, "A", 1, 500, "bank load change that counts as a load step"
    )
    current_share_min_steps: float = _setting(
        5, "", 1, 100, "load steps needed before a pack's share is judged"
    )
    current_share_raise_after_minutes: float = _setting(
        15.0, "min", 0, 1440, "a pack's median share must stay low this long before it is raised"
    )

    # Internal resistance.
    resistance_ratio: float = _setting(
        1.5, "", 1.05, 10, "pack resistance over the bank's median that is flagged"
    )
    resistance_hysteresis: float = _setting(0.2, "", 0, 5, "hysteresis of the resistance ratio")
    resistance_min_step: float = _setting(
        10.0, "A", 1, 500, "pack current change that counts as a load step"
    )
    resistance_min_samples: float = _setting(
        3, "", 1, 100, "load steps needed before a pack's resistance is judged"
    )

    # Temperature.
    temperature_warning: float = _setting(45.0, "°C", 0, 100, "pack temperature, warning")
    temperature_critical: float = _setting(55.0, "°C", 0, 120, "pack temperature, critical")
    temperature_outlier: float = _setting(
        10.0, "K", 1, 50, "how much hotter than the others a pack may be"
    )
    temperature_hysteresis: float = _setting(3.0, "K", 0, 20, "hysteresis of temperatures")

    # Health.
    soh_replace: float = _setting(
        80.0, "%", 1, 100, "state of health at or below which a pack is due for replacement"
    )
    soh_hysteresis: float = _setting(2.0, "%", 0, 20, "hysteresis of the state of health")
    rated_cycles: float = _setting(3000, "", 100, 20000, "cycles the chemistry is rated for")
    cycles_near_fraction: float = _setting(
        0.9, "", 0.1, 1, "fraction of the rated cycles that counts as near"
    )
    capacity_mismatch_percent: float = _setting(
        5.0, "%", 0.5, 100, "full capacity differing from the others' median"
    )
    capacity_mismatch_hysteresis: float = _setting(
        1.0, "%", 0, 20, "hysteresis of the capacity mismatch"
    )

    # Composition.
    max_packs: float = _setting(
        0, "", 0, 64, "packs the BMS family supports in one bank; 0 = the family's own"
    )

    # Communication.
    dropout_count: float = _setting(3, "", 1, 100, "drop-offs of one pack within the window")
    dropout_window_hours: float = _setting(24.0, "h", 1, 720, "window for counting drop-offs")
    error_rate_percent: float = _setting(
        10.0, "%", 1, 100, "share of polls a pack fails within the window"
    )
    error_rate_hysteresis: float = _setting(5.0, "%", 0, 50, "hysteresis of the error rate")
    error_rate_window_minutes: float = _setting(
        60.0, "min", 5, 1440, "window over which the error rate is counted"
    )
    error_rate_min_polls: float = _setting(
        20, "", 1, 1000, "polls needed in the window before the error rate is judged"
    )

    # Maintenance.
    voltage_check_days: float = _setting(30, "d", 1, 365, "voltage consistency check interval")
    capacity_test_days: float = _setting(182, "d", 7, 1095, "capacity test interval")
    terminal_check_days: float = _setting(
        182, "d", 7, 1095, "terminal cleaning and torque check interval"
    )
    full_capacity_test_days: float = _setting(
        365, "d", 7, 1095, "full capacity test (full discharge and charge) interval"
    )
    voltage_check_max_c_rate: float = _setting(
        0.05, "C", 0.001, 1, "bank current (in C) below which the voltage check may be taken"
    )
    voltage_check_grace_days: float = _setting(
        3, "d", 0, 60, "days the automatic voltage check may wait for a quiet bank"
    )

    # Battery level. Not a rule: the level below which the bank and each
    # pack report "battery low", for Home Assistant's battery triggers and
    # conditions.
    battery_low_percent: float = _setting(
        20.0, "%", 1, 99, "state of charge below which the bank or a pack is low"
    )

    @property
    def raise_after(self) -> timedelta:
        """Return the default debounce before raising."""
        return timedelta(minutes=self.raise_after_minutes)

    @property
    def clear_after(self) -> timedelta:
        """Return the default debounce before clearing."""
        return timedelta(minutes=self.clear_after_minutes)

    def to_dict(self) -> dict[str, float]:
        """Return every setting by its key, for the options flow to store."""
        return {item.name: getattr(self, item.name) for item in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Self:
        """Build settings from a stored dict, falling back to defaults.

        Unknown keys are ignored (an option from a newer version), and a
        value that is not a finite number within the setting's range is
        replaced by the default, so a bad option never stops the rules.
        """
        result = cls()
        if not isinstance(data, Mapping):
            return result
        changes: dict[str, float] = {}
        for info in settings_info():
            raw = data.get(info.key)
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                continue
            value = float(raw)
            if not math.isfinite(value) or not info.minimum <= value <= info.maximum:
                continue
            changes[info.key] = round(value) if info.integer else value
        return replace(result, **changes)

    def problems(self) -> list[str]:
        """Return what makes these settings inconsistent, for the options flow.

        A critical level below its warning level, or a hysteresis wider than
        the level it belongs to, would make a rule raise and never clear.
        """
        found: list[str] = []
        if self.voltage_spread_critical <= self.voltage_spread_warning:
            found.append("voltage_spread_critical must be above voltage_spread_warning")
        if self.temperature_critical <= self.temperature_warning:
            found.append("temperature_critical must be above temperature_warning")
        if self.parasitic_current_warning <= self.parasitic_current:
            found.append("parasitic_current_warning must be above parasitic_current")
        pairs = (
            ("voltage_spread_hysteresis", "voltage_spread_warning"),
            ("voltage_swing_hysteresis", "voltage_swing"),
            ("soc_spread_hysteresis", "soc_spread_warning"),
            ("cell_delta_hysteresis", "cell_delta_warning"),
            ("parasitic_hysteresis", "parasitic_current"),
            ("current_share_hysteresis", "current_share_ratio"),
            ("error_rate_hysteresis", "error_rate_percent"),
        )
        for hysteresis, level in pairs:
            if getattr(self, hysteresis) >= getattr(self, level):
                found.append(f"{hysteresis} must be below {level}")
        return found


_INTEGERS = frozenset(
    {
        "current_share_min_steps",
        "resistance_min_samples",
        "rated_cycles",
        "max_packs",
        "dropout_count",
        "error_rate_min_polls",
        "voltage_check_days",
        "capacity_test_days",
        "terminal_check_days",
        "full_capacity_test_days",
        "voltage_check_grace_days",
    }
)


def settings_info() -> list[SettingInfo]:
    """Return every setting with its default, unit and range, in order."""
    return [
        SettingInfo(
            key=item.name,
            default=item.default,  # type: ignore[arg-type]
            unit=item.metadata["unit"],
            minimum=item.metadata["minimum"],
            maximum=item.metadata["maximum"],
            integer=item.name in _INTEGERS,
            description=item.metadata["description"],
        )
        for item in fields(Thresholds)
    ]
