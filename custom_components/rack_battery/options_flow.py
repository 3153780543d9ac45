"""Options: what the bank's rules judge it by.

Every setting comes from ``Thresholds.settings_info()`` with its default,
unit and range, so a rule's new setting shows here without touching this
file (it only needs its words in translations/). The few settings a
homeowner takes from the packs' manual (temperatures, wear, the maintenance
intervals) come first; the rest wait in collapsed "advanced" sections,
grouped by what they watch. Everything is stored flat, as
``Thresholds.from_dict`` reads it, and applies from the next poll on,
without a reload.

A bank whose packs can be written to (the family catalog says so, and the
bank is not read by listening) gets a second step: control, off until the
user turns it on there, with the guard's settings. Its text says what
control does and what it risks; turning it on or off reloads the bank,
which adds or removes the switches.
"""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import ConfigFlowResult, OptionsFlow
from homeassistant.data_entry_flow import section
from homeassistant.helpers.selector import (
    BooleanSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
)
import voluptuous as vol

from .bank.analysis import SettingInfo, Thresholds, settings_info
from .bank.control import (
    JOIN_VOLTAGE_RANGE,
    MARGIN_RANGE,
    MIN_CONNECTED_RANGE,
    MIN_INTERVAL_RANGE,
    REJOIN_TIMEOUT_RANGE,
)
from .const import (
    CONF_CONTROL,
    CONF_JOIN_VOLTAGE,
    CONF_MARGIN,
    CONF_MIN_CONNECTED,
    CONF_MIN_INTERVAL,
    CONF_REJOIN_TIMEOUT,
    RULES_URL,
)
from .controller import capabilities, control_settings

# Shown first, outside any section: what the packs' manual or the owner's
# habits decide.
MAIN = "main"
_MAIN = (
    "temperature_warning",
    "temperature_critical",
    "battery_low_percent",
    "soh_replace",
    "rated_cycles",
    "max_packs",
    "voltage_check_days",
    "capacity_test_days",
    "terminal_check_days",
    "full_capacity_test_days",
)

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
)
OTHER = "other"


# Units as a homeowner reads them: a temperature difference in degrees, not
# kelvin, and whole words for days and hours.
_SHOWN_UNITS = {"K": "°C", "d": "days", "h": "hours"}


def section_of(key: str) -> str:
    """Return the section a setting is shown in (``MAIN``: none, at the top)."""
    if key in _MAIN:
        return MAIN
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
        config["unit_of_measurement"] = _SHOWN_UNITS.get(info.unit, info.unit)
    return NumberSelector(config)


def options_schema(current: Thresholds) -> vol.Schema:
    """Return the form: the main settings, then one collapsed section per group."""
    values = current.to_dict()
    infos = {info.key: info for info in settings_info()}
    main = {vol.Required(key, default=values[key]): _selector(infos[key]) for key in _MAIN}
    groups: dict[str, dict[Any, Any]] = {}
    for info in infos.values():
        if (name := section_of(info.key)) != MAIN:
            groups.setdefault(name, {})[vol.Required(info.key, default=values[info.key])] = (
                _selector(info)
            )
    return vol.Schema(
        {
            **main,
            **{
                vol.Required(name): section(vol.Schema(fields), {"collapsed": True})
                for name, fields in groups.items()
            },
        }
    )


def flatten(user_input: dict[str, Any]) -> dict[str, float]:
    """Return the main settings and those of every section as one flat mapping."""
    flat: dict[str, float] = {}
    for key, value in user_input.items():
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    integers = {info.key for info in settings_info() if info.integer}
    return {key: round(value) if key in integers else float(value) for key, value in flat.items()}


def _number(low: float, high: float, step: float, unit: str) -> NumberSelector:
    return NumberSelector(
        NumberSelectorConfig(
            min=low, max=high, step=step, mode=NumberSelectorMode.BOX, unit_of_measurement=unit
        )
    )


def control_schema(options: dict[str, Any]) -> vol.Schema:
    """Return the control step: the switch that turns it on, and the guard's settings.

    The ranges are the guard's hard limits (bank/control.py); no value
    outside them can be entered, and the guard clamps whatever is stored.
    """
    settings = control_settings(options)
    minutes = (
        MIN_INTERVAL_RANGE[0].total_seconds() / 60,
        MIN_INTERVAL_RANGE[1].total_seconds() / 60,
    )
    return vol.Schema(
        {
            vol.Required(CONF_CONTROL, default=bool(options.get(CONF_CONTROL, False))): (
                BooleanSelector()
            ),
            vol.Required(CONF_MIN_CONNECTED, default=settings.min_connected): _number(
                *MIN_CONNECTED_RANGE, 1, "packs"
            ),
            vol.Required(CONF_MARGIN, default=round(settings.current_margin * 100)): _number(
                MARGIN_RANGE[0] * 100, MARGIN_RANGE[1] * 100, 1, "%"
            ),
            vol.Required(CONF_JOIN_VOLTAGE, default=settings.max_join_voltage): _number(
                *JOIN_VOLTAGE_RANGE, 0.05, "V"
            ),
            vol.Required(
                CONF_MIN_INTERVAL,
                default=round(settings.min_interval.total_seconds() / 60),
            ): _number(*minutes, 1, "min"),
            vol.Required(
                CONF_REJOIN_TIMEOUT,
                default=round(settings.rejoin_timeout.total_seconds() / 60),
            ): _number(
                REJOIN_TIMEOUT_RANGE[0].total_seconds() / 60,
                REJOIN_TIMEOUT_RANGE[1].total_seconds() / 60,
                1,
                "min",
            ),
        }
    )


_CONTROL_KEYS = (
    CONF_CONTROL,
    CONF_MIN_CONNECTED,
    CONF_MARGIN,
    CONF_JOIN_VOLTAGE,
    CONF_MIN_INTERVAL,
    CONF_REJOIN_TIMEOUT,
)


class RackBatteryOptionsFlow(OptionsFlow):
    """Change what the bank's rules judge by, and whether (and how guarded) control is on."""

    _rules: dict[str, Any]

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show every setting; refuse a combination that cannot work."""
        errors: dict[str, str] = {}
        placeholders = {"problems": "", "rules_url": RULES_URL}
        current = Thresholds.from_dict(self.config_entry.options)
        if user_input is not None:
            options = flatten(user_input)
            wanted = Thresholds.from_dict(options)
            if problems := wanted.problems():
                errors["base"] = "inconsistent"
                placeholders["problems"] = "; ".join(problems)
                current = wanted
            else:
                self._rules = wanted.to_dict()
                if capabilities(self.config_entry).can_write:
                    return await self.async_step_control()
                return self.async_create_entry(data=self._rules)
        return self.async_show_form(
            step_id="init",
            data_schema=options_schema(current),
            errors=errors,
            description_placeholders=placeholders,
        )

    async def async_step_control(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Turn control on or off, and set the guard; says what it does and risks."""
        current = {
            key: self.config_entry.options[key]
            for key in _CONTROL_KEYS
            if key in self.config_entry.options
        }
        if user_input is not None:
            control = {
                CONF_CONTROL: bool(user_input[CONF_CONTROL]),
                CONF_MIN_CONNECTED: round(user_input[CONF_MIN_CONNECTED]),
                CONF_MARGIN: float(user_input[CONF_MARGIN]),
                CONF_JOIN_VOLTAGE: float(user_input[CONF_JOIN_VOLTAGE]),
                CONF_MIN_INTERVAL: round(user_input[CONF_MIN_INTERVAL]),
                CONF_REJOIN_TIMEOUT: round(user_input[CONF_REJOIN_TIMEOUT]),
            }
            return self.async_create_entry(data={**self._rules, **control})
        return self.async_show_form(step_id="control", data_schema=control_schema(current))
