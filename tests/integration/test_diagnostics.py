"""Diagnostics as a user downloads them for a bug report."""

from __future__ import annotations

from typing import Any

from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from .conftest import SimulatedBus, setup_bank


async def test_diagnostics_hide_the_gateway_and_show_the_last_poll(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, pace_bus: SimulatedBus
) -> None:
    """The download works, leaves out where the gateway is, and carries every pack."""
    pace_bus.bank.pack(2).protections = {"cell_overvoltage"}
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    data: Any = await get_diagnostics_for_config_entry(hass, hass_client, entry)

    assert data["entry"]["host"] == "**REDACTED**"
    assert data["entry"]["family"] == "pace_modbus"
    assert data["last_update_success"] is True
    readings = data["snapshot"]["readings"]
    assert sorted(readings) == ["1", "2", "3", "4"]
    assert readings["2"]["protections"] == ["cell_overvoltage"]
    assert readings["1"]["voltage"] == pytest.approx(pace_bus.bank.pack(1).voltage, abs=0.01)
    assert data["snapshot"]["failed"] == {}
    assert "maintenance" in data
    # What the link has seen, per pack: every poll asked each pack and was
    # answered, and nothing was thrown away on a clean line.
    link = data["link"]
    assert sorted(link["packs"]) == ["1", "2", "3", "4"]
    for counts in link["packs"].values():
        assert counts["requests"] >= 1
        assert counts["replies"] == counts["requests"]
        assert counts["timeouts"] == counts["discarded"] == counts["suspect"] == 0
    assert link["noise_bytes"] == 0
    assert await hass.config_entries.async_unload(entry.entry_id)
