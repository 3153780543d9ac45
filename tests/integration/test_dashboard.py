"""The dashboard in docs/ shows entities a set-up bank has."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.util.yaml import parse_yaml
import pytest

from .conftest import SimulatedBus, setup_bank

pytestmark = pytest.mark.freeze_time(tick=True)

DASHBOARD = Path(__file__).parents[2] / "docs" / "dashboard.yaml"


def _entity_ids(node: Any) -> set[str]:
    """Return every entity id a Lovelace config names, however deeply."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "entity" and isinstance(value, str):
                found.add(value)
            elif key == "entities" and isinstance(value, list):
                found.update(item for item in value if isinstance(item, str))
                found |= _entity_ids(value)
            else:
                found |= _entity_ids(value)
    elif isinstance(node, list):
        for item in node:
            found |= _entity_ids(item)
    return found


async def test_every_entity_on_the_dashboard_exists(
    hass: HomeAssistant, pace_bus: SimulatedBus
) -> None:
    """Pasted into a fresh scripts/develop, no card says "entity not found"."""
    view = parse_yaml(DASHBOARD.read_text())
    assert isinstance(view, dict)
    assert view["cards"]
    wanted = _entity_ids(view)
    assert "image.pace_bank_overview" in wanted
    assert any(entity_id.startswith("sensor.pace_bank_pack_4_") for entity_id in wanted)

    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    missing = sorted(entity_id for entity_id in wanted if hass.states.get(entity_id) is None)
    assert missing == []
    assert await hass.config_entries.async_unload(entry.entry_id)
