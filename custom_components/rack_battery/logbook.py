"""Logbook entries for the bank's findings.

The bus event carries the device id of the pack (or bank) a finding is
about, so the entry shows on that device's page as well.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from homeassistant.components.logbook.const import LOGBOOK_ENTRY_MESSAGE, LOGBOOK_ENTRY_NAME
from homeassistant.core import Event, HomeAssistant, callback

from .const import DOMAIN, EVENT_FINDING
from .findings import (
    ACTION_CHANGED,
    ACTION_CLEARED,
    ATTR_ACTION,
    ATTR_ADDRESS,
    ATTR_RULE,
    ATTR_SEVERITY,
)

_VERBS = {ACTION_CHANGED: "is now", ACTION_CLEARED: "cleared, was"}


def describe_finding(data: Mapping[str, Any]) -> dict[str, str]:
    """Return the logbook's name and message for one finding event.

    The rule key reads as words ("voltage spread"); docs/rules.md explains
    it under a heading of the same key.
    """
    address = data.get(ATTR_ADDRESS)
    name = "Rack battery bank" if address is None else f"Rack battery pack {address}"
    rule = str(data.get(ATTR_RULE, "finding")).replace("_", " ")
    verb = _VERBS.get(str(data.get(ATTR_ACTION)), "raised,")
    return {
        LOGBOOK_ENTRY_NAME: name,
        LOGBOOK_ENTRY_MESSAGE: f"{rule} {verb} {data.get(ATTR_SEVERITY, '')}".strip(),
    }


@callback
def async_describe_events(
    hass: HomeAssistant,
    async_describe_event: Callable[[str, str, Callable[[Event], dict[str, str]]], None],
) -> None:
    """Describe the bank's finding events for the logbook."""

    @callback
    def async_describe(event: Event) -> dict[str, str]:
        return describe_finding(event.data)

    async_describe_event(DOMAIN, EVENT_FINDING, async_describe)
