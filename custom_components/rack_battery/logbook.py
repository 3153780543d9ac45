"""Logbook entries for the bank's findings and for every change control made.

The bus event carries the device id of the pack (or bank) a finding is
about: the entry takes that device's name as the user sees it (with two
banks, "Garage bank pack 4", not "pack 4"), shows on the device's page, and
links to the device's problem sensor, whose page leads to the device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from homeassistant.components.logbook.const import (
    LOGBOOK_ENTRY_ENTITY_ID,
    LOGBOOK_ENTRY_MESSAGE,
    LOGBOOK_ENTRY_NAME,
)
from homeassistant.const import Platform
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers import device_registry as dr, entity_registry as er

from .const import DOMAIN, EVENT_CONTROL, EVENT_FINDING
from .findings import (
    ACTION_CHANGED,
    ACTION_CLEARED,
    ATTR_ACTION,
    ATTR_ADDRESS,
    ATTR_DEVICE_ID,
    ATTR_RULE,
    ATTR_SEVERITY,
)

# The binary sensor every bank and pack has that is on while it has a finding.
PROBLEM_KEY = "problem"


def describe_finding(
    data: Mapping[str, Any], device_name: str | None = None, entity_id: str | None = None
) -> dict[str, str]:
    """Return the logbook's name, message and link for one finding event.

    The rule key reads as words ("capacity mismatch"); the rules page
    explains it under a heading of the same key.
    """
    address = data.get(ATTR_ADDRESS)
    name = device_name or ("Battery bank" if address is None else f"Battery pack {address}")
    rule = str(data.get(ATTR_RULE, "finding")).replace("_", " ")
    severity = str(data.get(ATTR_SEVERITY, ""))
    match data.get(ATTR_ACTION):
        case str(action) if action == ACTION_CHANGED:
            message = f"{rule} is now {severity}"
        case str(action) if action == ACTION_CLEARED:
            message = f"{rule} cleared (was {severity})"
        case _:
            message = f"{rule} found ({severity})"
    described = {LOGBOOK_ENTRY_NAME: name, LOGBOOK_ENTRY_MESSAGE: message}
    if entity_id:
        described[LOGBOOK_ENTRY_ENTITY_ID] = entity_id
    return described


_CONTROL_WORDS = {
    "isolate": "isolated",
    "reconnect": "reconnected",
    "set_paths": "switched",
    "set_current_limit": "limited",
}


def _apart(data: Mapping[str, Any]) -> str:
    """Return how far apart a held reconnect waits: "0.8 V apart, limit 0.5 V"."""
    values = data.get("values")
    values = values if isinstance(values, Mapping) else {}
    if data.get("reason") == "inrush":
        return (
            f"{values.get('delta')} V apart, about {values.get('inrush')} A inrush, "
            f"limit {values.get('limit')} A"
        )
    return f"{values.get('delta')} V apart, limit {values.get('limit')} V"


def _describe_rejoin(data: Mapping[str, Any]) -> str | None:
    """Return the message of a reconnect held, cancelled or given up; None for other changes."""
    who = data.get("who", "user")
    match data.get("action"):
        case "hold_rejoin":
            return f"waiting to rejoin, asked by {who}: {_apart(data)}"
        case "cancel_rejoin":
            return f"waiting to rejoin cancelled by {who} (was {_apart(data)})"
        case "rejoin_gave_up":
            return f"gave up waiting to rejoin: {_apart(data)}"
    return None


def describe_control(data: Mapping[str, Any], device_name: str | None = None) -> dict[str, str]:
    """Return the logbook's name and message for one change control made.

    It says who asked, what was done, and what the BMS read back; of a
    reconnect held until matched, that it was held, and the numbers.
    """
    address = data.get("address")
    name = device_name or f"Battery pack {address}"
    if (rejoin := _describe_rejoin(data)) is not None:
        return {LOGBOOK_ENTRY_NAME: name, LOGBOOK_ENTRY_MESSAGE: rejoin}
    done = _CONTROL_WORDS.get(str(data.get("action")), "changed")
    paths = ", ".join(
        f"{way} {'on' if data.get(f'{way}_enabled') else 'off'}"
        for way in ("charge", "discharge")
        if data.get(f"{way}_enabled") is not None
    )
    message = f"{done} by {data.get('who', 'user')}"
    if data.get("held"):
        message += ", held until the voltages matched"
    if not data.get("confirmed"):
        message += "; the BMS did not take it"
    elif paths:
        message += f"; the BMS reports {paths}"
    if isinstance(voltage := data.get("voltage"), int | float):
        message += f" ({voltage:.2f} V"
        if isinstance(current := data.get("current"), int | float):
            message += f", {current:.1f} A"
        message += ")"
    return {LOGBOOK_ENTRY_NAME: name, LOGBOOK_ENTRY_MESSAGE: message}


def _device_and_problem_sensor(
    hass: HomeAssistant, device_id: str | None
) -> tuple[str | None, str | None]:
    """Return the device's name as shown, and its problem sensor's entity id."""
    if not device_id or (device := dr.async_get(hass).async_get(device_id)) is None:
        return None, None
    name = device.name_by_user or device.name
    for entity in er.async_entries_for_device(er.async_get(hass), device_id):
        if entity.domain == Platform.BINARY_SENSOR and entity.unique_id.endswith(f"_{PROBLEM_KEY}"):
            return name, entity.entity_id
    return name, None


@callback
def async_describe_events(
    hass: HomeAssistant,
    async_describe_event: Callable[[str, str, Callable[[Event], dict[str, str]]], None],
) -> None:
    """Describe the bank's finding events for the logbook."""

    @callback
    def async_describe(event: Event) -> dict[str, str]:
        name, entity_id = _device_and_problem_sensor(hass, event.data.get(ATTR_DEVICE_ID))
        return describe_finding(event.data, name, entity_id)

    async_describe_event(DOMAIN, EVENT_FINDING, async_describe)

    @callback
    def async_describe_control(event: Event) -> dict[str, str]:
        name, _entity_id = _device_and_problem_sensor(hass, event.data.get(ATTR_DEVICE_ID))
        return describe_control(event.data, name)

    async_describe_event(DOMAIN, EVENT_CONTROL, async_describe_control)
