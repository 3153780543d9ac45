"""A PACE bank on a serial line at 9600 baud, found and read through Home Assistant.

The simulator plays the line at its real speed (bytes at baud/10 per second,
each pack answering after its own answer time) on a pseudo-terminal, and
the integration uses its own bus registry, which times each request by the
wire and the PACE document's figures. The user's path: the serial wire, the
port and its speed, the family, the scan, the packs confirmed; then every
pack shows its values. Nothing here measures time.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.util import slugify
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.rack_battery.buses import bus_registry
from custom_components.rack_battery.const import DOMAIN, SCAN_INTERVAL
from custom_components.rack_battery.protocol.connection import ConnectionSpec, Wire
from simulator.bank import PACE_PACK, SimBank, constant_load, make_bank
from simulator.pace_modbus_line import make_line, open_paced_pty

from .conftest import finish_scan

pytestmark = pytest.mark.freeze_time(tick=True)

BAUD = 9600
# Four packs among PACE's fifteen units, with empty units between them.
ADDRESSES = (1, 4, 5, 9)


async def test_a_paced_9600_baud_bank_is_found_and_every_pack_read(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    packs = make_bank(len(ADDRESSES), seed=5, load=constant_load(30), identity=PACE_PACK).packs
    bank = SimBank(
        packs=[replace(pack, address=at) for pack, at in zip(packs, ADDRESSES, strict=True)],
        load=constant_load(30),
    )
    line = make_line(bank)
    try:
        port = open_paced_pty(line, BAUD)
        result: Any = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_USER}
        )
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"next_step_id": Wire.MODBUS_RTU_SERIAL.value}
        )
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"],
            {"serial_port": port, "baudrate": str(BAUD), "family": "pace_modbus"},
        )
        assert result.get("errors") in (None, {}), result
        result = await finish_scan(hass, result)
        assert result["step_id"] == "confirm", result
        assert result["description_placeholders"]["count"] == str(len(ADDRESSES))

        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"packs": [str(address) for address in ADDRESSES]}
        )
        await hass.async_block_till_done()
        assert result["type"] is FlowResultType.CREATE_ENTRY
        assert [pack["address"] for pack in result["data"]["packs"]] == list(ADDRESSES)
        assert [pack["serial"] for pack in result["data"]["packs"]] == [
            pack.serial for pack in bank.packs
        ]
        entry = result["result"]
        assert entry.state is ConfigEntryState.LOADED

        freezer.tick(SCAN_INTERVAL)
        async_fire_time_changed(hass)
        await entry.runtime_data.coordinator.async_refresh()
        await hass.async_block_till_done(wait_background_tasks=True)
        for pack in bank.packs:
            state = hass.states.get(f"sensor.{slugify(entry.title)}_pack_{pack.address}_voltage")
            assert state is not None
            assert float(state.state) == pytest.approx(pack.voltage, abs=0.01)

        # At 9600 baud no pack missed a reply in the bank's own reads.
        spec = ConnectionSpec(wire=Wire.MODBUS_RTU_SERIAL, serial_port=port, baudrate=BAUD)
        bus = bus_registry(hass).get(spec)
        assert bus is not None
        stats = bus.transport(spec).stats
        assert all(stats.pack(address).timeouts == 0 for address in ADDRESSES)
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await line.stop()
