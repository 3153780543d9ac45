"""Everything the user picks from has words, not raw keys."""

from __future__ import annotations

import json
from pathlib import Path
import re

from homeassistant.data_entry_flow import section
import pytest

from custom_components.rack_battery.bank.analysis import Thresholds, settings_info
from custom_components.rack_battery.options_flow import MAIN, options_schema
from custom_components.rack_battery.protocol.catalog import FAMILIES, families_on
from custom_components.rack_battery.protocol.connection import Wire

TRANSLATIONS = Path(__file__).parents[2] / "custom_components/rack_battery/translations"
STRINGS = json.loads((TRANSLATIONS / "en.json").read_text())


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


def test_the_options_form_puts_the_main_choices_first_in_plain_words() -> None:
    """The few settings a manual decides are on top; each setting has words,
    its unit once (in the field, not again in its label), and the form
    links to the rules' page rather than naming a repository path."""
    schema = options_schema(Thresholds())
    top = [str(marker) for marker, field in schema.schema.items() if not isinstance(field, section)]
    assert top[:2] == ["temperature_warning", "temperature_critical"]
    sections = [
        str(marker) for marker, field in schema.schema.items() if isinstance(field, section)
    ]
    assert sections
    assert MAIN not in sections

    init = STRINGS["options"]["step"]["init"]
    assert "{rules_url}" in init["description"]
    assert "docs/rules.md" not in json.dumps(init)
    labels = dict(init["data"])
    descriptions = dict(init["data_description"])
    for name in sections:
        labels |= init["sections"][name]["data"]
        descriptions |= init["sections"][name]["data_description"]
        assert init["sections"][name]["name"].startswith("Advanced")
    for info in settings_info():
        assert info.key in labels, info.key
        assert info.key in descriptions, info.key
        assert "(" not in labels[info.key], labels[info.key]
        assert "hysteresis" not in (labels[info.key] + descriptions[info.key]).lower()


def _flatten(node: object, path: str = "") -> dict[str, str]:
    """Return every text of a translations file by its dotted key."""
    if isinstance(node, dict):
        found: dict[str, str] = {}
        for key, value in node.items():
            found |= _flatten(value, f"{path}.{key}" if path else key)
        return found
    assert isinstance(node, str), path
    return {path: node}


def _placeholders(text: str) -> list[str]:
    return sorted(re.findall(r"\{(\w+)\}", text))


@pytest.mark.parametrize("language", ["de", "nl"])
def test_each_language_says_everything_english_does(language: str) -> None:
    """Every text has its translation, no more and no fewer, with the same
    placeholders (a missing one shows as a raw key, a wrong one as "{bank}")."""
    english = _flatten(STRINGS)
    other = _flatten(json.loads((TRANSLATIONS / f"{language}.json").read_text()))
    assert sorted(english.keys() - other.keys()) == []
    assert sorted(other.keys() - english.keys()) == []
    for key, text in english.items():
        assert _placeholders(other[key]) == _placeholders(text), key
        assert other[key].strip(), key
    # Translated, not copied: most texts differ from the English.
    copied = [key for key, text in english.items() if other[key] == text]
    assert len(copied) < len(english) // 10, copied
