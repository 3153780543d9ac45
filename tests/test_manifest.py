"""The manifest asks for what Home Assistant can give without breaking a neighbour.

Home Assistant installs an integration's requirements next to its own, under
its package constraints, and reinstalls a requirement whenever the installed
version does not satisfy the integration asking for it. A pin of ours that
differs from one of Home Assistant's own integrations would make the two
fight over one package at every start (or one of them fail); a range that
admits Home Assistant's pin does not. Checked against the Home Assistant
these tests run with, so both supported lines are covered.
"""

from __future__ import annotations

import json
from pathlib import Path

import homeassistant
from homeassistant import components
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
import pytest

MANIFEST = Path(__file__).parents[1] / "custom_components" / "rack_battery" / "manifest.json"
HA_ROOT = Path(homeassistant.__file__).parent
# The keys hassfest's schema for a custom integration's manifest accepts
# (script/hassfest/manifest.py, CUSTOM_INTEGRATION_MANIFEST_SCHEMA): any
# other key is an error there.
HASSFEST_KEYS = {
    "domain",
    "name",
    "integration_type",
    "config_flow",
    "mqtt",
    "zeroconf",
    "ssdp",
    "bluetooth",
    "homekit",
    "dhcp",
    "usb",
    "documentation",
    "quality_scale",
    "requirements",
    "dependencies",
    "after_dependencies",
    "codeowners",
    "loggers",
    "disabled",
    "iot_class",
    "single_config_entry",
    "preview_features",
    "version",
    "issue_tracker",
    "import_executor",
}


def _ours() -> list[Requirement]:
    return [Requirement(text) for text in json.loads(MANIFEST.read_text())["requirements"]]


def _home_assistants_pins() -> dict[str, set[tuple[str, str]]]:
    """Return every exact pin of Home Assistant: package -> {(version, who pins it)}."""
    pins: dict[str, set[tuple[str, str]]] = {}

    def add(text: str, who: str) -> None:
        try:
            requirement = Requirement(text)
        except ValueError:
            return
        for spec in requirement.specifier:
            if spec.operator == "==":
                pins.setdefault(canonicalize_name(requirement.name), set()).add((spec.version, who))

    for manifest in Path(components.__file__).parent.glob("*/manifest.json"):
        for text in json.loads(manifest.read_text()).get("requirements", []):
            add(text, f"core {manifest.parent.name}")
    constraints = HA_ROOT / "package_constraints.txt"
    for line in constraints.read_text().splitlines():
        if line.strip() and not line.startswith(("#", "-")):
            add(line.split(";")[0].strip(), "package_constraints.txt")
    return pins


@pytest.mark.parametrize("requirement", _ours(), ids=lambda requirement: requirement.name)
def test_a_requirement_admits_what_home_assistant_pins(requirement: Requirement) -> None:
    pins = _home_assistants_pins().get(canonicalize_name(requirement.name), set())
    refused = sorted(
        f"{who} pins {version}"
        for version, who in pins
        if not requirement.specifier.contains(version, prereleases=True)
    )
    assert not refused, f"{requirement} refuses what Home Assistant installs: {refused}"


def test_the_manifest_passes_hassfest() -> None:
    """Only keys hassfest knows, in its order (domain, name, then A-Z), with a version."""
    manifest = json.loads(MANIFEST.read_text())
    assert set(manifest) <= HASSFEST_KEYS, set(manifest) - HASSFEST_KEYS
    keys = list(manifest)
    assert keys[:2] == ["domain", "name"]
    assert keys[2:] == sorted(keys[2:])
    assert manifest["version"]
    assert manifest["iot_class"]
