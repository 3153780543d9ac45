"""Listen-only mode in Home Assistant: a bank read from its master pack's polls.

The simulated RS485 line counts every byte that reaches it from outside.
With a master pack polling it, Home Assistant must find that out by
listening, offer to listen instead of scanning, and read the packs from the
master's traffic, all without that count ever leaving zero.

The JK-PB master bus is the real one: the DIP-0 master triggers each slave
with a one-register write and the slave answers with a 55AA frame; the
master sends its own frames too, so it is heard and gets a device. A
Seplos V3 master's own data never crosses the line.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest

from custom_components.rack_battery.buses import CONF_LISTEN_ONLY, bus_registry
from custom_components.rack_battery.const import CONF_CONTROL, DOMAIN
from custom_components.rack_battery.protocol.listen import BusListener
from simulator import jk_pb as sim_jk, seplos_v3 as sim_seplos
from simulator.bank import SimBank, constant_load, make_bank
from simulator.modbus_line import ModbusLine

from .conftest import finish_scan, rules_input
from .control_helpers import assert_no_control_entities, try_every_control

pytestmark = pytest.mark.usefixtures("socket_enabled")

# How long a test waits for the line at most before it fails (not a sleep).
PATIENCE = 5.0

# family: (line, the master's polls, baud rate, the bank's title, the packs heard)
CASES = {
    "seplos_v3": (sim_seplos.make_line, sim_seplos.master_polls, 19200, "seplos_bank", (1, 2)),
    "jk_pb": (sim_jk.make_line, sim_jk.master_polls, 115200, "jk_bank", (0, 1, 2)),
}


@dataclass
class MasteredLine:
    """A bank whose master pack polls the others, and how Home Assistant reaches it."""

    family: str
    bank: SimBank
    line: ModbusLine
    wire: str
    bus_input: dict[str, Any]
    prefix: str
    heard: tuple[int, ...]


@pytest.fixture(params=["seplos_v3", "jk_pb"])
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["modbus_rtu_tcp", "modbus_rtu_serial"])
async def mastered(request: pytest.FixtureRequest, family: str) -> AsyncIterator[MasteredLine]:
    """Three packs: the master at address 0 polling packs 1 and 2, under a 30 A load."""
    make_line, polls, baudrate, prefix, heard = CASES[family]
    bank = make_bank(3, first_address=0, load=constant_load(30.0), seed=5)
    line = make_line(bank)
    wire = str(request.param)
    if wire == "modbus_rtu_tcp":
        host, port = await line.serve_rtu_tcp()
        bus_input: dict[str, Any] = {"host": host, "port": port}
    else:
        bus_input = {"serial_port": line.open_pty(), "baudrate": str(baudrate)}
    line.start_master(polls(bank))
    try:
        yield MasteredLine(family, bank, line, wire, bus_input, prefix, heard)
    finally:
        await line.stop()


async def _until(listener: BusListener, condition: Callable[[], bool]) -> None:
    """Wait, on the listener's own activity, until a condition holds."""
    async with asyncio.timeout(PATIENCE):
        while not condition():
            listener.activity.clear()
            await listener.activity.wait()


def _raw(hass: HomeAssistant, entity_id: str) -> str:
    state = hass.states.get(entity_id)
    assert state is not None, entity_id
    return state.state


def _state(hass: HomeAssistant, entity_id: str) -> float:
    return float(_raw(hass, entity_id))


async def _set_up_by_listening(hass: HomeAssistant, mastered: MasteredLine) -> Any:
    """Go through the flow: the scan hears the master, the user picks listening."""
    result: Any = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": mastered.wire}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {**mastered.bus_input, "family": "auto"}
    )
    result = await finish_scan(hass, result)
    # No scan: the line has a master, and only the listening families are offered.
    assert result["type"] is FlowResultType.FORM, result
    assert result["step_id"] == "master_found"
    offered = result["data_schema"].schema["family"].config["options"]
    assert set(offered) == {"seplos_v3", "jk_pb"}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"family": mastered.family}
    )
    result = await finish_scan(hass, result)
    assert result["step_id"] == "confirm", result
    assert result["description_placeholders"]["count"] == str(len(mastered.heard))
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"packs": [str(address) for address in mastered.heard]}
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    return result


async def test_a_bank_with_a_master_is_read_by_listening_without_sending_a_byte(
    hass: HomeAssistant, mastered: MasteredLine
) -> None:
    """The flow offers listen-only mode; the packs show the simulator's values; nothing is sent."""
    result = await _set_up_by_listening(hass, mastered)
    assert result["data"][CONF_LISTEN_ONLY] is True
    assert result["data"]["family"] == mastered.family
    assert [pack["address"] for pack in result["data"]["packs"]] == list(mastered.heard)
    cells = len(mastered.bank.pack(1).cell_voltages)
    assert all(pack["cell_count"] == cells for pack in result["data"]["packs"])
    if mastered.family == "jk_pb":
        # Each pack's settings frame tells its design capacity, the master's too.
        for pack in result["data"]["packs"]:
            design = mastered.bank.pack(pack["address"]).design_capacity
            assert pack["design_capacity"] == pytest.approx(design)
    entry = result["result"]
    assert entry.state is ConfigEntryState.LOADED

    for address in mastered.heard:
        pack = mastered.bank.pack(address)
        prefix = f"sensor.{mastered.prefix}_pack_{address}"
        # Both families report 10 mV / 10 mA or finer, SOC in whole percent.
        assert _state(hass, f"{prefix}_voltage") == pytest.approx(pack.voltage, abs=0.01)
        assert _state(hass, f"{prefix}_current") == pytest.approx(pack.current, abs=0.01)
        assert _state(hass, f"{prefix}_state_of_charge") == pytest.approx(100 * pack.soc, abs=1)
        assert _state(hass, f"{prefix}_lowest_cell_voltage") == pytest.approx(
            min(pack.cell_voltages), abs=0.001
        )
        assert _state(hass, f"{prefix}_highest_cell_voltage") == pytest.approx(
            max(pack.cell_voltages), abs=0.001
        )

    # The master can no longer reach pack 2: it alone goes unavailable.
    coordinator = entry.runtime_data.coordinator
    listener = coordinator.driver
    assert isinstance(listener, BusListener)
    mastered.bank.take_off_bus(2)
    await _until(listener, lambda: listener.is_silent(2))
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    assert _raw(hass, f"sensor.{mastered.prefix}_pack_2_voltage") == STATE_UNAVAILABLE
    assert _raw(hass, f"sensor.{mastered.prefix}_pack_1_voltage") != STATE_UNAVAILABLE

    # It answers the master again, and is shown again.
    mastered.bank.put_on_bus(2)
    heard = listener.readings_heard[2]
    await _until(listener, lambda: listener.readings_heard[2] > heard)
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    assert _raw(hass, f"sensor.{mastered.prefix}_pack_2_voltage") != STATE_UNAVAILABLE

    # Control is never offered: the options end after the rules, even an
    # option stored as on creates no switch and no number, every action is
    # refused, and toggling what control would create reaches nothing.
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(result["flow_id"], rules_input())
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert_no_control_entities(hass, entry)
    await try_every_control(hass, entry, mastered.prefix)
    hass.config_entries.async_update_entry(entry, options={**entry.options, CONF_CONTROL: True})
    await hass.async_block_till_done()
    assert_no_control_entities(hass, entry)
    await try_every_control(hass, entry, mastered.prefix)
    assert mastered.line.received == 0

    assert await hass.config_entries.async_unload(entry.entry_id)
    assert len(bus_registry(hass)) == 0
    # Not one byte reached the line from Home Assistant, flow and bank alike.
    assert mastered.line.received == 0
