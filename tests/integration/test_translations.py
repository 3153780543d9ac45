"""Everything the user picks from has words, not raw keys."""

from __future__ import annotations

import json
from pathlib import Path

from custom_components.rack_battery.protocol.catalog import FAMILIES, families_on
from custom_components.rack_battery.protocol.connection import Wire

STRINGS = json.loads(
    (Path(__file__).parents[2] / "custom_components/rack_battery/translations/en.json").read_text()
)


def test_every_family_has_a_label() -> None:
    """A family added to the catalog shows by name in the flow's list."""
    labels = STRINGS["selector"]["family"]["options"]
    assert set(FAMILIES) <= set(labels)


def test_every_offered_wire_has_a_menu_entry_and_a_step() -> None:
    """Each wire in the first menu has its words and its own form's texts."""
    menu = STRINGS["config"]["step"]["user"]["menu_options"]
    for wire in Wire:
        if families_on(wire):
            assert wire.value in menu, wire
            assert "title" in STRINGS["config"]["step"][wire.value], wire
