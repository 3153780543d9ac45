"""The config flow against a simulated bank on loopback."""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType

from custom_components.rack_battery.const import DOMAIN

from .conftest import SimulatedBus


async def _start(hass: HomeAssistant, wire: str) -> Any:
    result: Any = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.MENU
    assert set(result["menu_options"]) == {"modbus_tcp", "ascii_tcp"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": wire}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == wire
    return result


async def test_modbus_tcp_finds_every_pack(hass: HomeAssistant, pace_bus: SimulatedBus) -> None:
    """Scanning a PACE bank finds its four packs and sets the bank up."""
    result = await _start(hass, "modbus_tcp")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {"host": pace_bus.host, "port": pace_bus.port, "family": "pace_modbus"},
    )
    await hass.async_block_till_done()

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "PACE bank"
    assert result["data"]["host"] == "127.0.0.1"
    assert result["data"]["port"] == pace_bus.port
    assert [pack["address"] for pack in result["data"]["packs"]] == [1, 2, 3, 4]
    assert [pack["serial"] for pack in result["data"]["packs"]] == [
        pack.serial for pack in pace_bus.bank.packs
    ]
    entry = result["result"]
    assert entry.unique_id == f"127.0.0.1:{pace_bus.port}"
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_ascii_tcp_finds_pylontech_packs(
    hass: HomeAssistant, pylontech_bus: SimulatedBus
) -> None:
    """Scanning a Pylontech bank behind a transparent gateway finds its packs."""
    result = await _start(hass, "ascii_tcp")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {"host": pylontech_bus.host, "port": pylontech_bus.port, "family": "pylontech_rs485"},
    )
    await hass.async_block_till_done()

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Pylontech bank"
    assert [pack["address"] for pack in result["data"]["packs"]] == [2, 3, 4]
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def test_nothing_listening_says_cannot_connect(
    hass: HomeAssistant, pace_bus: SimulatedBus, closed_port: int
) -> None:
    """A port nobody listens on is told apart, and the form can be fixed."""
    result = await _start(hass, "modbus_tcp")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"host": "127.0.0.1", "port": closed_port, "family": "pace_modbus"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}
    assert result["description_placeholders"] == {"host": "127.0.0.1", "port": str(closed_port)}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {"host": pace_bus.host, "port": pace_bus.port, "family": "pace_modbus"},
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def test_silent_bus_says_no_packs_found(hass: HomeAssistant, pace_bus: SimulatedBus) -> None:
    """A gateway that answers while every pack is silent is not a bank yet."""
    for pack in pace_bus.bank.packs:
        pace_bus.bank.take_off_bus(pack.address)
    result = await _start(hass, "modbus_tcp")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {"host": pace_bus.host, "port": pace_bus.port, "family": "pace_modbus"},
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "no_packs_found"}

    # The user fixes the wiring and tries again.
    for pack in pace_bus.bank.packs:
        pace_bus.bank.put_on_bus(pack.address)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {"host": pace_bus.host, "port": pace_bus.port, "family": "pace_modbus"},
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def test_malformed_host_says_invalid_host(
    hass: HomeAssistant, pace_bus: SimulatedBus
) -> None:
    """A host that cannot be an address is caught before anything is sent."""
    result = await _start(hass, "modbus_tcp")
    for bad in ("not a host", "http://192.168.1.5", "300.1.1.1", "-gateway"):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"host": bad, "port": 502, "family": "pace_modbus"}
        )
        assert result["type"] is FlowResultType.FORM
        assert result["errors"] == {"host": "invalid_host"}, bad

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {"host": pace_bus.host, "port": pace_bus.port, "family": "pace_modbus"},
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def test_same_bus_cannot_be_added_twice(hass: HomeAssistant, pace_bus: SimulatedBus) -> None:
    """A second bank on the same gateway and port is refused."""
    result = await _start(hass, "modbus_tcp")
    user_input = {"host": pace_bus.host, "port": pace_bus.port, "family": "pace_modbus"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], user_input)
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY

    again = await _start(hass, "modbus_tcp")
    again = await hass.config_entries.flow.async_configure(again["flow_id"], user_input)
    assert again["type"] is FlowResultType.ABORT
    assert again["reason"] == "already_configured"
    assert len(hass.config_entries.async_entries(DOMAIN)) == 1
    assert await hass.config_entries.async_unload(result["result"].entry_id)
