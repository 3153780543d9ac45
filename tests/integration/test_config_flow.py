"""The config flow against a simulated bank on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
import os
from typing import Any

from homeassistant.config_entries import (
    SOURCE_RECONFIGURE,
    SOURCE_USER,
    ConfigEntryState,
    ConfigFlow,
)
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr
import pytest
import serial

from custom_components.rack_battery.buses import bus_registry
from custom_components.rack_battery.const import DOMAIN
from custom_components.rack_battery.protocol.catalog import families_on
from custom_components.rack_battery.protocol.connection import Wire
from simulator import pace_modbus
from simulator.bank import make_bank
from simulator.wiretap import Wiretap, start_wiretap

from .conftest import ONE_RELOAD, SimulatedBus, finish_scan, record_states, wait_for_progress
from .findings_helpers import bank_entry

# Fired by Home Assistant 2025.6 and later as a scan moves on.
PROGRESS_UPDATE = "data_entry_flow_progress_update"


async def _start(hass: HomeAssistant, wire: str) -> Any:
    result: Any = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.MENU
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": wire}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == wire
    return result


async def _scan(hass: HomeAssistant, result: Any, user_input: dict[str, Any]) -> Any:
    """Submit the bus form and let the scan run to its end."""
    result = await hass.config_entries.flow.async_configure(result["flow_id"], user_input)
    return await finish_scan(hass, result)


async def _confirm(hass: HomeAssistant, result: Any, addresses: list[int]) -> Any:
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "confirm"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"packs": [str(address) for address in addresses]}
    )
    await hass.async_block_till_done()
    return result


@pytest.fixture
async def tap(pace_bus: SimulatedBus) -> AsyncIterator[Wiretap]:
    """Watch the traffic to the PACE gateway."""
    running = await start_wiretap(pace_bus.host, pace_bus.port)
    yield running
    await running.stop()


async def test_menu_lists_every_wire_with_a_family(hass: HomeAssistant) -> None:
    """The first screen offers each wire the catalog has a battery family for."""
    result: Any = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.MENU
    assert set(result["menu_options"]) == {wire.value for wire in Wire if families_on(wire)}
    assert {"modbus_tcp", "ascii_tcp"} <= set(result["menu_options"])


async def test_modbus_tcp_detects_the_family_and_finds_every_pack(
    hass: HomeAssistant, pace_bus: SimulatedBus
) -> None:
    """Detect automatically finds the PACE bank; the result lists model and serial."""
    progress: list[float] = []

    @callback
    def on_progress(event: Event) -> None:
        progress.append(event.data["progress"])

    hass.bus.async_listen(PROGRESS_UPDATE, on_progress)
    result = await _start(hass, "modbus_tcp")
    assert result["data_schema"]({"host": "h"})["family"] == "auto"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"host": pace_bus.host, "port": pace_bus.port, "family": "auto"}
    )
    assert result["type"] is FlowResultType.SHOW_PROGRESS
    assert result["progress_action"] == "scan"
    result = await finish_scan(hass, result)

    assert result["step_id"] == "confirm"
    # Each pack is listed once, as a box to tick that names it.
    assert "packs" not in result["description_placeholders"]
    labels = result["data_schema"].schema["packs"].config["options"]
    assert len(labels) == len(pace_bus.bank.packs)
    for pack, label in zip(pace_bus.bank.packs, labels, strict=True):
        assert pack.serial in label["label"]
        assert pack.model in label["label"]
    assert result["description_placeholders"]["count"] == "4"
    if hasattr(ConfigFlow, "async_update_progress"):
        assert progress == sorted(progress)
        assert progress[-1] == 1.0

    result = await _confirm(hass, result, [1, 2, 3, 4])
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "PACE bank"
    assert result["data"]["family"] == "pace_modbus"
    assert result["data"]["host"] == "127.0.0.1"
    assert result["data"]["port"] == pace_bus.port
    assert [pack["address"] for pack in result["data"]["packs"]] == [1, 2, 3, 4]
    assert [pack["serial"] for pack in result["data"]["packs"]] == [
        pack.serial for pack in pace_bus.bank.packs
    ]
    entry = result["result"]
    assert entry.unique_id == f"tcp://127.0.0.1:{pace_bus.port}#pace_modbus#1"
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)
    # The scan and the bank gave the bus back.
    assert len(bus_registry(hass)) == 0


async def test_ascii_tcp_finds_pylontech_packs(
    hass: HomeAssistant, pylontech_bus: SimulatedBus
) -> None:
    """Scanning a Pylontech bank behind a transparent gateway finds its packs."""
    result = await _start(hass, "ascii_tcp")
    result = await _scan(
        hass,
        result,
        {"host": pylontech_bus.host, "port": pylontech_bus.port, "family": "pylontech_rs485"},
    )
    result = await _confirm(hass, result, [2, 3, 4])
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Pylontech bank"
    assert [pack["address"] for pack in result["data"]["packs"]] == [2, 3, 4]
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def test_nothing_listening_says_cannot_connect(
    hass: HomeAssistant, pace_bus: SimulatedBus, closed_port: int
) -> None:
    """A port nobody listens on is told at once, and the form can be fixed."""
    result = await _start(hass, "modbus_tcp")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"host": "127.0.0.1", "port": closed_port, "family": "pace_modbus"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}
    assert result["description_placeholders"] == {"where": f"127.0.0.1:{closed_port}"}

    result = await _scan(
        hass, result, {"host": pace_bus.host, "port": pace_bus.port, "family": "pace_modbus"}
    )
    result = await _confirm(hass, result, [1, 2, 3, 4])
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def test_silent_bus_says_no_packs_found(hass: HomeAssistant, pace_bus: SimulatedBus) -> None:
    """A gateway that answers while every pack is silent is not a bank yet."""
    for pack in pace_bus.bank.packs:
        pace_bus.bank.take_off_bus(pack.address)
    result = await _start(hass, "modbus_tcp")
    user_input = {"host": pace_bus.host, "port": pace_bus.port, "family": "auto"}
    result = await _scan(hass, result, user_input)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "modbus_tcp"
    assert result["errors"] == {"base": "no_packs_found"}

    # The user fixes the wiring and tries again.
    for pack in pace_bus.bank.packs:
        pace_bus.bank.put_on_bus(pack.address)
    result = await _scan(hass, result, user_input)
    result = await _confirm(hass, result, [1, 2, 3, 4])
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

    result = await _scan(
        hass, result, {"host": pace_bus.host, "port": pace_bus.port, "family": "pace_modbus"}
    )
    result = await _confirm(hass, result, [1, 2, 3, 4])
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def test_a_bus_whose_packs_are_all_set_up_is_refused(
    hass: HomeAssistant, pace_bus: SimulatedBus
) -> None:
    """Scanning a bus again finds nothing new, and says the bank is already there."""
    user_input = {"host": pace_bus.host, "port": pace_bus.port, "family": "pace_modbus"}
    result = await _scan(hass, await _start(hass, "modbus_tcp"), user_input)
    result = await _confirm(hass, result, [1, 2, 3, 4])
    assert result["type"] is FlowResultType.CREATE_ENTRY

    again = await _scan(hass, await _start(hass, "modbus_tcp"), user_input)
    assert again["type"] is FlowResultType.ABORT
    assert again["reason"] == "already_configured"
    assert len(hass.config_entries.async_entries(DOMAIN)) == 1
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def test_two_banks_on_one_gateway_share_its_connection(
    hass: HomeAssistant, pace_bus: SimulatedBus, tap: Wiretap
) -> None:
    """Packs split into two banks poll over one connection, one request at a time."""
    user_input = {"host": tap.host, "port": tap.port, "family": "auto"}
    first = await _scan(hass, await _start(hass, "modbus_tcp"), user_input)
    first = await _confirm(hass, first, [1, 2])
    assert first["type"] is FlowResultType.CREATE_ENTRY
    assert [pack["address"] for pack in first["data"]["packs"]] == [1, 2]

    # The second scan asks only the addresses the first bank does not hold.
    second = await _scan(hass, await _start(hass, "modbus_tcp"), user_input)
    assert second["description_placeholders"]["count"] == "2"
    second = await _confirm(hass, second, [3, 4])
    assert second["type"] is FlowResultType.CREATE_ENTRY
    assert second["title"] == "PACE bank 3-4"
    assert second["result"].state is ConfigEntryState.LOADED

    # Both banks poll at once, as their timers would have them.
    connections = tap.connections
    overlaps = tap.overlaps
    requests = len(tap.requests)
    entries = hass.config_entries.async_loaded_entries(DOMAIN)
    assert len(entries) == 2
    for _ in range(3):
        for entry in entries:
            hass.async_create_task(entry.runtime_data.coordinator.async_refresh())
        await hass.async_block_till_done()
    assert tap.open_connections == 1
    assert tap.connections == connections
    assert tap.overlaps == overlaps == 0
    assert len(tap.requests) >= requests + 3 * 4
    assert hass.states.get("sensor.pace_bank_pack_1_voltage") is not None
    assert hass.states.get("sensor.pace_bank_3_4_pack_4_voltage") is not None

    # Unloading one bank leaves the connection to the other.
    assert await hass.config_entries.async_unload(first["result"].entry_id)
    assert tap.open_connections == 1
    assert await hass.config_entries.async_unload(second["result"].entry_id)
    await hass.async_block_till_done()
    assert len(bus_registry(hass)) == 0


async def test_a_poll_asked_for_while_one_runs_joins_it(
    hass: HomeAssistant, pace_bus: SimulatedBus, tap: Wiretap
) -> None:
    """Refreshes asked for during a poll do not queue more polls on the bus."""
    user_input = {"host": tap.host, "port": tap.port, "family": "pace_modbus"}
    result = await _scan(hass, await _start(hass, "modbus_tcp"), user_input)
    result = await _confirm(hass, result, [1, 2, 3, 4])
    coordinator = result["result"].runtime_data.coordinator
    before = len(tap.requests)
    for _ in range(5):
        hass.async_create_task(coordinator.async_refresh())
    await hass.async_block_till_done()
    # Never two polls of the bank on the bus at once.
    assert tap.overlaps == 0
    assert tap.most_in_flight == 1
    # Newer Home Assistant queues refreshes behind one lock per coordinator
    # (each asked-for refresh then polls in turn); without that lock the
    # refreshes asked for meanwhile join the running poll: four packs, one
    # read each.
    queued_by_home_assistant = hasattr(coordinator._debounced_refresh, "async_lock")
    assert len(tap.requests) - before == (5 if queued_by_home_assistant else 1) * 4
    assert await hass.config_entries.async_unload(result["result"].entry_id)


@pytest.fixture
def pty_path() -> Iterator[str]:
    """Return the path of a pseudo-terminal, as a USB adapter's port would be."""
    leader, follower = os.openpty()
    try:
        yield os.ttyname(follower)
    finally:
        os.close(follower)
        os.close(leader)


async def test_serial_port_that_does_not_exist(hass: HomeAssistant) -> None:
    """A port that is not there is named as missing, on the port field."""
    result = await _start(hass, "modbus_rtu_serial")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {"serial_port": "/dev/ttyUSB-not-there", "baudrate": "9600", "family": "auto"},
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"serial_port": "serial_port_missing"}
    assert result["description_placeholders"] == {"where": "/dev/ttyUSB-not-there"}


async def test_serial_port_not_permitted(hass: HomeAssistant, pty_path: str) -> None:
    """A port this process may not open is told apart from a missing one."""
    os.chmod(pty_path, 0)
    result = await _start(hass, "modbus_rtu_serial")
    # Root opens anything; the check runs as an ordinary user would.
    unprivileged = os.geteuid() == 0
    if unprivileged:
        os.seteuid(65534)
    try:
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"serial_port": pty_path, "baudrate": "9600", "family": "auto"}
        )
    finally:
        if unprivileged:
            os.seteuid(0)
    assert result["errors"] == {"serial_port": "serial_port_denied"}


async def test_serial_port_in_use(hass: HomeAssistant, pty_path: str) -> None:
    """A port another program holds is named as busy."""
    holder = serial.Serial(pty_path, exclusive=True)
    try:
        result = await _start(hass, "modbus_rtu_serial")
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"serial_port": pty_path, "baudrate": "9600", "family": "auto"}
        )
    finally:
        holder.close()
    assert result["errors"] == {"serial_port": "serial_port_busy"}


async def test_reconfigure_moves_the_bank_and_keeps_its_devices(
    hass: HomeAssistant, pace_bus: SimulatedBus, tap: Wiretap
) -> None:
    """A new gateway address is taken if the bank's own packs answer there."""
    user_input = {"host": pace_bus.host, "port": pace_bus.port, "family": "pace_modbus"}
    result = await _scan(hass, await _start(hass, "modbus_tcp"), user_input)
    result = await _confirm(hass, result, [1, 2, 3, 4])
    entry = result["result"]
    registry = dr.async_get(hass)
    devices = {device.id for device in dr.async_entries_for_config_entry(registry, entry.entry_id)}

    # Another bank (other serial numbers) on another gateway is refused.
    other = make_bank(2, first_address=1, seed=99, serial_prefix="OTHER")
    other_server = await pace_modbus.start_server(other, "127.0.0.1", 0)
    try:
        flow = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_RECONFIGURE, "entry_id": entry.entry_id}
        )
        assert flow["step_id"] == "reconfigure"
        flow = await hass.config_entries.flow.async_configure(
            flow["flow_id"], {"host": "127.0.0.1", "port": other_server.port}
        )
        assert flow["type"] is FlowResultType.FORM
        assert flow["errors"] == {"base": "another_bank"}
    finally:
        await other_server.stop()

    # The same packs behind another port (the tap) are this bank: it is set
    # up again there, once.
    states = record_states(entry)
    flow = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {"host": tap.host, "port": tap.port}
    )
    assert flow["type"] is FlowResultType.ABORT
    assert flow["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert states == ONE_RELOAD
    assert entry.data["port"] == tap.port
    assert entry.unique_id == f"tcp://127.0.0.1:{tap.port}#pace_modbus#1"
    assert entry.state is ConfigEntryState.LOADED
    after = {device.id for device in dr.async_entries_for_config_entry(registry, entry.entry_id)}
    assert after == devices
    assert tap.open_connections == 1
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_reconfigure_sets_up_a_bank_that_waits_for_its_gateway(
    hass: HomeAssistant, pace_bus: SimulatedBus, closed_port: int
) -> None:
    """A bank whose gateway moved waits to retry its setup; moving it there sets it up now.

    Such a bank is not running, so it has no update listener to reload it:
    the flow sets it up itself, rather than leaving it to the next retry.
    """
    entry = bank_entry(pace_bus)
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(entry, data={**entry.data, "port": closed_port})
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_RETRY
    states = record_states(entry)

    flow = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_RECONFIGURE, "entry_id": entry.entry_id}
    )
    flow = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {"host": pace_bus.host, "port": pace_bus.port}
    )
    assert flow["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert states[-1] is ConfigEntryState.LOADED
    assert hass.states.get("sensor.pace_bank_pack_1_voltage") is not None
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_the_frontend_moving_on_from_the_scan_shows_the_next_screen(
    hass: HomeAssistant, pace_bus: SimulatedBus
) -> None:
    """After a progress step the frontend posts an empty form; it is not an answer.

    That is how the UI moves on from a finished scan: to the list of packs
    found, or back to the bus form with what went wrong.
    """
    result = await _start(hass, "modbus_tcp")
    flow_id = result["flow_id"]
    result = await hass.config_entries.flow.async_configure(
        flow_id, {"host": pace_bus.host, "port": pace_bus.port, "family": "pace_modbus"}
    )
    await wait_for_progress(hass, flow_id, "scan")
    result = await hass.config_entries.flow.async_configure(flow_id, {})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "confirm"
    assert result["errors"] == {}

    # A scan that finds nothing leads back to the bus form, saying so.
    for pack in pace_bus.bank.packs:
        pace_bus.bank.take_off_bus(pack.address)
    again = await _start(hass, "modbus_tcp")
    await hass.config_entries.flow.async_configure(
        again["flow_id"], {"host": pace_bus.host, "port": pace_bus.port, "family": "pace_modbus"}
    )
    await wait_for_progress(hass, again["flow_id"], "scan")
    again = await hass.config_entries.flow.async_configure(again["flow_id"], {})
    assert again["type"] is FlowResultType.FORM
    assert again["step_id"] == "modbus_tcp"
    assert again["errors"] == {"base": "no_packs_found"}
