"""Options: the limits, hysteresis and debounce of the bank's rules.

Every setting comes from ``Thresholds.settings_info()`` with its default,
unit and range, so a rule's new setting shows here without touching this
file (it only needs its label in translations/en.json). The settings are
grouped by what they watch, each group a collapsed section, and stored
flat, as ``Thresholds.from_dict`` reads them. New settings apply from the
next poll on, without a reload.
"""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import ConfigFlowResult, OptionsFlow
from homeassistant.data_entry_flow import section
from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
)
import voluptuous as vol

from .bank.analysis import SettingInfo, Thresholds, settings_info

# Sections by the first words of a setting's key; the first match wins.
_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("debounce", ("raise_after", "clear_after")),
    ("voltage", ("voltage_spread", "voltage_swing")),
    ("balance", ("soc_spread", "cell_delta", "parasitic")),
    ("load", ("load_step", "current_share", "resistance")),
    ("temperature", ("temperature",)),
    ("health", ("soh", "rated_cycles", "cycles", "capacity_mismatch", "max_packs")),
    ("communication", ("dropout", "error_rate")),
    ("maintenance", ("voltage_check", "capacity_test", "terminal_check", "full_capacity")),
    ("battery", ("battery_low",)),
)
OTHER = "other"


def section_of(key: str) -> str:
    """Return the section a setting is shown in."""
    for name, prefixes in _SECTIONS:
        if key.startswith(prefixes):
            return name
    return OTHER


def _selector(info: SettingInfo) -> NumberSelector:
    config = NumberSelectorConfig(
        min=info.minimum,
        max=info.maximum,
        step=1 if info.integer else "any",
        mode=NumberSelectorMode.BOX,
    )
    if info.unit:
        config["unit_of_measurement"] = info.unit
    return NumberSelector(config)


def options_schema(current: Thresholds) -> vol.Schema:
    """Return the form: one section per group, each setting at its current value."""
    values = current.to_dict()
    groups: dict[str, dict[Any, Any]] = {}
    for info in settings_info():
        groups.setdefault(section_of(info.key), {})[
            vol.Required(info.key, default=values[info.key])
        ] = _selector(info)
    return vol.Schema(
        {
            vol.Required(name): section(vol.Schema(fields), {"collapsed": True})
            for name, fields in groups.items()
        }
    )


def flatten(user_input: dict[str, Any]) -> dict[str, float]:
    """Return the settings of every section as one flat mapping."""
    flat: dict[str, float] = {}
    for value in user_input.values():
        if isinstance(value, dict):
            flat.update(value)
    integers = {info.key for info in settings_info() if info.integer}
    return {key: round(value) if key in integers else float(value) for key, value in flat.items()}


class RackBatteryOptionsFlow(OptionsFlow):
    """Change what the bank's rules judge by."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show every setting; refuse a combination that cannot work."""
        errors: dict[str, str] = {}
        placeholders = {"problems": ""}
        current = Thresholds.from_dict(self.config_entry.options)
        if user_input is not None:
            options = flatten(user_input)
            wanted = Thresholds.from_dict(options)
            if problems := wanted.problems():
                errors["base"] = "inconsistent"
                placeholders["problems"] = "; ".join(problems)
                current = wanted
            else:
                return self.async_create_entry(data=wanted.to_dict())
        return self.async_show_form(
            step_id="init",
            data_schema=options_schema(current),
            errors=errors,
            description_placeholders=placeholders,
        )
