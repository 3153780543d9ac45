"""Fixtures for tests in a real Home Assistant against the simulated bank."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
import socket
from typing import Any

from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.data_entry_flow import EVENT_DATA_ENTRY_FLOW_PROGRESSED, FlowResultType
import pytest

from custom_components.rack_battery.bank.analysis import Thresholds
from custom_components.rack_battery.const import DOMAIN
from custom_components.rack_battery.options_flow import MAIN, flatten, options_schema, section_of
from simulator import pace_modbus, pylontech_ascii
from simulator.bank import PACE_PACK, SimBank, make_bank


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load the integration from custom_components."""


# What a user sees of one reload: the bank goes away and comes back.
ONE_RELOAD = [
    ConfigEntryState.UNLOAD_IN_PROGRESS,
    ConfigEntryState.NOT_LOADED,
    ConfigEntryState.SETUP_IN_PROGRESS,
    ConfigEntryState.LOADED,
]


def record_states(entry: ConfigEntry) -> list[ConfigEntryState]:
    """Return a list that gets every state the entry passes through from now on."""
    states: list[ConfigEntryState] = []
    entry.async_on_state_change(lambda: states.append(entry.state))
    return states


@dataclass
class SimulatedBus:
    """A simulated bank and the server that speaks for it on loopback."""

    bank: SimBank
    host: str
    port: int


@pytest.fixture
async def pace_bus() -> AsyncIterator[SimulatedBus]:
    """Serve four PACE packs over Modbus TCP, the fourth one aged."""
    bank = make_bank(4, aged=[3], first_address=1, seed=7, identity=PACE_PACK)
    server = await pace_modbus.start_server(bank, "127.0.0.1", 0)
    try:
        yield SimulatedBus(bank, server.host, server.port)
    finally:
        await server.stop()


@pytest.fixture
async def pylontech_bus() -> AsyncIterator[SimulatedBus]:
    """Serve three Pylontech packs over a transparent TCP gateway."""
    bank = make_bank(3, first_address=2, seed=11)
    server = await pylontech_ascii.start_server(bank, "127.0.0.1", 0)
    try:
        yield SimulatedBus(bank, server.host, server.port)
    finally:
        await server.stop()


@pytest.fixture
def closed_port() -> int:
    """Return a loopback port that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def finish_scan(hass: HomeAssistant, result: Any) -> Any:
    """Return the step after a scan or a listen.

    One that ends quickly is awaited within the request and its next step
    comes back at once; a longer one shows a progress step, which is let run
    to its end (test_config_flow tests each way on its own).
    """
    if result["type"] is not FlowResultType.SHOW_PROGRESS:
        return result
    assert result["step_id"] in ("scan", "listen"), result
    await wait_for_progress(hass, result["flow_id"], result["step_id"])
    return await hass.config_entries.flow.async_configure(result["flow_id"])


async def wait_for_progress(hass: HomeAssistant, flow_id: str, step_id: str) -> None:
    """Wait until a flow's progress step has ended.

    Home Assistant moves the flow on by itself when the step's task is done,
    and tells the frontend so with an event; that event is what is awaited.
    Waiting for Home Assistant to be idle is not enough: its wait passes
    over a task that is handling a timeout (as a scan does at every empty
    address) on newer versions.
    """
    moved_on = asyncio.Event()

    @callback
    def progressed(event: Event) -> None:
        if event.data["flow_id"] == flow_id:
            moved_on.set()

    unsubscribe = hass.bus.async_listen(EVENT_DATA_ENTRY_FLOW_PROGRESSED, progressed)
    try:
        if hass.config_entries.flow.async_get(flow_id)["step_id"] == step_id:
            await moved_on.wait()
    finally:
        unsubscribe()
    await hass.async_block_till_done()


async def setup_bank(hass: HomeAssistant, bus: SimulatedBus, *, wire: str) -> ConfigEntry:
    """Add the simulated bank through the config flow and return its entry."""
    result: Any = await hass.config_entries.flow.async_init(DOMAIN, context={"source": "user"})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": wire}
    )
    family = "pace_modbus" if wire == "modbus_tcp" else "pylontech_rs485"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"host": bus.host, "port": bus.port, "family": family}
    )
    result = await finish_scan(hass, result)
    assert result["step_id"] == "confirm", result
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"packs": [str(pack.address) for pack in bus.bank.packs]}
    )
    await hass.async_block_till_done()
    entry = hass.config_entries.async_get_entry(result["result"].entry_id)
    assert entry is not None
    return entry


def options_input(thresholds: Thresholds) -> dict[str, Any]:
    """Return the options form filled in with these settings: the main ones
    at the top, the rest section by section."""
    form: dict[str, Any] = {}
    for key, value in thresholds.to_dict().items():
        if (name := section_of(key)) == MAIN:
            form[key] = value
        else:
            form.setdefault(name, {})[key] = value
    return form


def rules_input() -> dict[str, Any]:
    """Return the options' rules form filled with the defaults, as the user submits it."""
    values: dict[str, Any] = {}
    for key, validator in options_schema(Thresholds()).schema.items():
        values[str(key)] = (
            {str(k): k.default() for k in validator.schema.schema}
            if hasattr(validator, "schema") and hasattr(validator.schema, "schema")
            else key.default()
        )
    assert flatten(values) == Thresholds().to_dict()
    return values
