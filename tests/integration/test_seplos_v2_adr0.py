"""A Seplos V2 pack alone at ADR 0 (its DIP switches all off) is found and read.

That is how a single Seplos V2 pack is usually set up, and a real one
answers there with command group 0x01 in its replies rather than its
address. The simulated pack answers the same way; the user's path is the
config flow's: the wire, the gateway, the family, the scan, the pack.
"""

from __future__ import annotations

from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.util import slugify
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.rack_battery.buses import BUSES
from custom_components.rack_battery.const import DOMAIN, SCAN_INTERVAL
from custom_components.rack_battery.protocol.bus import BusRegistry
from custom_components.rack_battery.protocol.connection import ConnectionSpec, Wire
from custom_components.rack_battery.protocol.transport.factory import Transport, open_transport
from simulator import seplos_v2
from simulator.bank import constant_load, make_bank

from .conftest import finish_scan

pytestmark = pytest.mark.freeze_time(tick=True)

RESPONSE = 0.2  # each empty address of the scan costs this much


@pytest.fixture
def quick_buses(hass: HomeAssistant) -> None:
    """Give the integration a bus registry whose requests wait RESPONSE, not a second."""

    def opener(spec: ConnectionSpec) -> Transport:
        return open_transport(spec, timeout=RESPONSE)

    hass.data[BUSES] = BusRegistry(timeout=RESPONSE, opener=opener)


def _state(hass: HomeAssistant, entity_id: str) -> float:
    state = hass.states.get(entity_id)
    assert state is not None, entity_id
    return float(state.state)


@pytest.mark.usefixtures("quick_buses")
async def test_a_seplos_v2_pack_at_adr_0_is_found_and_read(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    """The scan finds the pack at ADR 0 and its sensors show what it measures."""
    bank = make_bank(1, first_address=0, seed=3, load=constant_load(20))
    bank.step(300)
    pack = bank.pack(0)
    # The simulated pack answers as a real one does at ADR 0.
    assert seplos_v2.analog_info(pack)[1] == 0x01
    server = await seplos_v2.start_server(bank, "127.0.0.1", 0)
    try:
        result: Any = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_USER}
        )
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"next_step_id": Wire.ASCII_TCP.value}
        )
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"host": server.host, "port": server.port, "family": "seplos_v2"}
        )
        assert result.get("errors") in (None, {}), result
        result = await finish_scan(hass, result)
        assert result["step_id"] == "confirm", result
        assert result["description_placeholders"]["count"] == "1"
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {"packs": ["0"]})
        await hass.async_block_till_done()
        assert result["type"] is FlowResultType.CREATE_ENTRY
        assert [found["address"] for found in result["data"]["packs"]] == [0]
        entry = result["result"]
        assert entry.state is ConfigEntryState.LOADED

        freezer.tick(SCAN_INTERVAL)
        async_fire_time_changed(hass)
        await entry.runtime_data.coordinator.async_refresh()
        await hass.async_block_till_done(wait_background_tasks=True)

        prefix = f"sensor.{slugify(entry.title)}_pack_0"
        # Within the protocol's steps: 10 mV, 10 mA, 0.1 % and 0.1 degC.
        assert _state(hass, f"{prefix}_voltage") == pytest.approx(pack.voltage, abs=0.01)
        assert _state(hass, f"{prefix}_current") == pytest.approx(pack.current, abs=0.01)
        assert _state(hass, f"{prefix}_state_of_charge") == pytest.approx(pack.soc * 100, abs=0.1)
        assert _state(hass, f"{prefix}_highest_temperature") == pytest.approx(
            max(*pack.cell_temperatures, pack.ambient, pack.mosfet_temperature), abs=0.1
        )
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await server.stop()
