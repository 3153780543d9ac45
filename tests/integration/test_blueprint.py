"""The notification blueprint, run by Home Assistant's own automation engine."""

from __future__ import annotations

from pathlib import Path
import shutil
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import async_mock_service

from custom_components.rack_battery.const import EVENT_FINDING

BLUEPRINT = Path(__file__).parents[2] / "blueprints/automation/rack_battery/notify_on_finding.yaml"


def _finding(action: str, severity: str, **extra: Any) -> dict[str, Any]:
    return {
        "action": action,
        "finding_id": "high_temperature_pack_4",
        "rule": "high_temperature",
        "severity": severity,
        "address": 4,
        "values": {"temperature": 52.0, "limit": 45.0},
        "since": "2025-06-01T10:00:00+00:00",
        "config_entry_id": "bank_a",
        "device_id": "device_of_pack_4",
        **extra,
    }


@pytest.mark.parametrize(
    ("inputs", "sent"),
    [
        ({}, ["raised:warning", "raised:critical", "cleared"]),
        ({"min_severity": "critical", "include_cleared": False}, ["raised:critical"]),
        ({"bank": "bank_b"}, []),
    ],
)
async def test_blueprint_sends_what_was_chosen(
    hass: HomeAssistant, tmp_path: Path, inputs: dict[str, Any], sent: list[str]
) -> None:
    """Findings at or above the severity are sent, with the pack and its numbers."""
    hass.config.config_dir = str(tmp_path)
    target = tmp_path / "blueprints/automation/rack_battery"
    target.mkdir(parents=True)
    shutil.copy(BLUEPRINT, target / BLUEPRINT.name)
    calls = async_mock_service(hass, "notify", "notify")
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "use_blueprint": {
                    "path": "rack_battery/notify_on_finding.yaml",
                    "input": inputs,
                }
            }
        },
    )
    await hass.async_block_till_done()

    hass.bus.async_fire(EVENT_FINDING, _finding("raised", "info"))
    hass.bus.async_fire(EVENT_FINDING, _finding("raised", "warning"))
    hass.bus.async_fire(EVENT_FINDING, _finding("changed", "critical", action_note="x"))
    hass.bus.async_fire(EVENT_FINDING, _finding("cleared", "critical"))
    await hass.async_block_till_done()

    got = []
    for call in calls:
        title, message = call.data["title"], call.data["message"]
        assert "pack 4" in title
        if title.startswith("Cleared"):
            got.append("cleared")
        else:
            assert "temperature 52.0" in message
            assert "limit 45.0" in message
            got.append(f"raised:{message.split(':')[0].lower()}")
    assert got == sent
