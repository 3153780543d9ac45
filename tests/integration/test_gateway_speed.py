"""The RS485 speed behind a transparent gateway: asked in the flow, stored, and timing the bank.

Real parts: Home Assistant runs the config flow and the bank; the simulator
serves the packs over loopback TCP as a transparent gateway would. What the
user notices: the gateway forms ask the line's speed (the family's own
offered first, "I don't know" allowed), a speed that is no standard rate is
refused with words that say what to fix, and the bank then gives up on a
silent pack as soon as the wire allows instead of after a flat second.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
import json
from pathlib import Path
from typing import Any

from homeassistant.config_entries import SOURCE_RECONFIGURE, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.rack_battery.buses import bus_registry
from custom_components.rack_battery.const import DOMAIN, RESPONSE_TIMEOUT
from custom_components.rack_battery.protocol.connection import ConnectionSpec
from custom_components.rack_battery.protocol.timing import (
    GATEWAY_HOP,
    HOST_SLACK,
    LATENCY_FLOOR,
    derived_timeout,
    family_timing,
    wire_time,
)
from custom_components.rack_battery.protocol.transport.ascii_stream import AsciiStreamTransport
from custom_components.rack_battery.protocol.transport.modbus_tcp import ModbusTransport
from simulator.bank import PACE_PACK, make_bank
from simulator.pace_modbus_line import make_line

from .conftest import SimulatedBus, finish_scan
from .findings_helpers import identities

TRANSLATIONS = Path(__file__).parents[2] / "custom_components/rack_battery/translations"
# A Pylontech 0x42 request for one pack, and the longest reply it can get.
PYLON_READ = {"request_bytes": 18 + 2, "reply_bytes": 18 + 2 * 128}


async def _form(hass: HomeAssistant, wire: str) -> Any:
    result: Any = await hass.config_entries.flow.async_init(DOMAIN, context={"source": "user"})
    return await hass.config_entries.flow.async_configure(result["flow_id"], {"next_step_id": wire})


async def _pylontech_gateway(hass: HomeAssistant, bus: SimulatedBus, speed: str) -> Any:
    """Fill the Pylon gateway form with the RS485 speed given; return the scan's end."""
    result = await _form(hass, "ascii_tcp")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {
            "host": bus.host,
            "port": bus.port,
            "gateway_baudrate": speed,
            "family": "pylontech_rs485",
        },
    )
    return await finish_scan(hass, result)


def _field(result: Any, name: str) -> Any:
    """Return a form field's key (with its default and suggested value), or None."""
    return next((key for key in result["data_schema"].schema if str(key) == name), None)


def _transport(hass: HomeAssistant, data: dict[str, Any]) -> ModbusTransport | AsciiStreamTransport:
    """Return the transport the running bank of an entry's data uses."""
    spec = ConnectionSpec.from_dict(data)
    bus = bus_registry(hass).get(spec)
    assert bus is not None
    transport = bus.transport(spec)
    assert isinstance(transport, ModbusTransport | AsciiStreamTransport)
    return transport


@pytest.fixture
async def pace_gateway() -> AsyncIterator[SimulatedBus]:
    """Serve two PACE packs as raw RTU over TCP (a transparent gateway)."""
    bank = make_bank(2, first_address=1, seed=7, identity=PACE_PACK)
    line = make_line(bank)
    try:
        host, port = await line.serve_rtu_tcp()
        yield SimulatedBus(bank, host, port)
    finally:
        await line.stop()


@pytest.mark.parametrize(("wire", "default"), [("modbus_rtu_tcp", "9600"), ("ascii_tcp", "115200")])
async def test_the_gateway_forms_ask_the_speed_behind_the_gateway(
    hass: HomeAssistant, wire: str, default: str
) -> None:
    """Offered first is the first family's own speed; "I don't know" is among the choices."""
    result = await _form(hass, wire)
    field = _field(result, "gateway_baudrate")
    assert field is not None
    assert field.default() == default
    selector = result["data_schema"].schema[field]
    assert selector.config["options"][-1] == "unknown"
    assert {"9600", "19200", "115200"} <= set(selector.config["options"])
    assert selector.config["custom_value"] is True
    # Its words, and the words of "I don't know", are there to show.
    strings = json.loads((TRANSLATIONS / "en.json").read_text())
    assert strings["config"]["step"][wire]["data"]["gateway_baudrate"]
    assert strings["config"]["step"][wire]["data_description"]["gateway_baudrate"]
    assert strings["selector"]["gateway_baudrate"]["options"]["unknown"]


@pytest.mark.parametrize("wire", ["modbus_tcp", "modbus_rtu_serial"])
async def test_other_wires_do_not_ask_it(hass: HomeAssistant, wire: str) -> None:
    """A Modbus TCP gateway times the line itself; a serial port has its own baud rate."""
    assert _field(await _form(hass, wire), "gateway_baudrate") is None


async def test_the_speed_given_is_stored_and_times_the_bank(
    hass: HomeAssistant, pylontech_bus: SimulatedBus
) -> None:
    """A bank behind a 9600-baud gateway waits what the wire and the family need, plus the hop."""
    result = await _pylontech_gateway(hass, pylontech_bus, "9600")
    assert result["step_id"] == "confirm", result
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"packs": ["2", "3", "4"]}
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    entry = result["result"]
    assert entry.data["baudrate"] == 9600
    assert entry.state is ConfigEntryState.LOADED

    transport = _transport(hass, dict(entry.data))
    assert transport.timer.baudrate == 9600
    assert transport.timer.hop == GATEWAY_HOP
    # Worked out from the wire: 294 bytes at 9600 baud are 0.306 s, and the
    # Pylontech documents name no answer time (0.5 s assumed), so a reply
    # may take longer than the flat second. Learned from the packs' replies
    # through the gateway, it stays between that and the wire time of the
    # longest reply plus the least answer time, the host's slack and the hop.
    worked_out = derived_timeout(
        baudrate=9600, timing=family_timing("pylontech_rs485"), hop=GATEWAY_HOP, **PYLON_READ
    )
    floor = wire_time(294, 9600) + LATENCY_FLOOR + HOST_SLACK + GATEWAY_HOP
    assert worked_out > RESPONSE_TIMEOUT
    assert any(transport.timer.latencies(address) for address in (2, 3, 4))
    for address in (2, 9):
        timeout = transport.timer.timeout(address, **PYLON_READ)
        assert floor - 1e-9 <= timeout <= worked_out + 1e-9
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize("typed", ["96000", "fast", "0"])
async def test_a_speed_that_is_no_standard_rate_is_refused_with_words(
    hass: HomeAssistant, pylontech_bus: SimulatedBus, typed: str
) -> None:
    """A typo could cut every reply short: the field says what to enter, and nothing is scanned."""
    result = await _form(hass, "ascii_tcp")
    fields = {
        "host": pylontech_bus.host,
        "port": pylontech_bus.port,
        "family": "pylontech_rs485",
    }
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {**fields, "gateway_baudrate": typed}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"gateway_baudrate": "invalid_gateway_baudrate"}
    for language in ("en", "de", "nl"):
        strings = json.loads((TRANSLATIONS / f"{language}.json").read_text())
        assert strings["config"]["error"]["invalid_gateway_baudrate"], language
    # Fixed, the flow goes on.
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {**fields, "gateway_baudrate": "115200"}
    )
    result = await finish_scan(hass, result)
    assert result["step_id"] == "confirm", result


async def test_i_dont_know_keeps_the_flat_timeout(
    hass: HomeAssistant, pylontech_bus: SimulatedBus
) -> None:
    """Without the line's speed nothing is worked out: each request waits the flat second."""
    result = await _pylontech_gateway(hass, pylontech_bus, "unknown")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"packs": ["2", "3", "4"]}
    )
    await hass.async_block_till_done()
    entry = result["result"]
    assert "baudrate" not in entry.data
    transport = _transport(hass, dict(entry.data))
    assert transport.timer.baudrate is None
    assert transport.timer.timeout(2, **PYLON_READ) == RESPONSE_TIMEOUT
    assert transport.timer.timeout(9, **PYLON_READ) == RESPONSE_TIMEOUT
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_reconfigure_keeps_or_changes_the_speed_behind_the_gateway(
    hass: HomeAssistant, pace_gateway: SimulatedBus
) -> None:
    """An older bank (no speed stored) shows "I don't know" and keeps it until changed."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="PACE bank",
        unique_id=f"tcp://{pace_gateway.host}:{pace_gateway.port}#pace_modbus#1",
        data={
            "wire": "modbus_rtu_tcp",
            "family": "pace_modbus",
            "host": pace_gateway.host,
            "port": pace_gateway.port,
            "packs": identities(pace_gateway.bank),
        },
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert _transport(hass, dict(entry.data)).timer.timeout(1, request_bytes=8, reply_bytes=79) == (
        RESPONSE_TIMEOUT
    )

    async def reconfigure(speed: str | None) -> Any:
        flow: Any = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_RECONFIGURE, "entry_id": entry.entry_id}
        )
        assert flow["step_id"] == "reconfigure"
        field = _field(flow, "gateway_baudrate")
        shown = field.description["suggested_value"]
        answer = {"host": pace_gateway.host, "port": pace_gateway.port}
        answer["gateway_baudrate"] = shown if speed is None else speed
        flow = await hass.config_entries.flow.async_configure(flow["flow_id"], answer)
        await hass.async_block_till_done()
        return shown, flow

    # Sent back as shown: kept, the flat second still.
    shown, flow = await reconfigure(None)
    assert shown == "unknown"
    assert flow["reason"] == "reconfigure_successful"
    assert "baudrate" not in entry.data

    # Given: stored, and the bank (set up again) is timed by it.
    shown, flow = await reconfigure("19200")
    assert flow["reason"] == "reconfigure_successful"
    assert entry.data["baudrate"] == 19200
    assert entry.state is ConfigEntryState.LOADED
    transport = _transport(hass, dict(entry.data))
    assert transport.timer.baudrate == 19200
    derived = derived_timeout(
        baudrate=19200,
        timing=family_timing("pace_modbus"),
        hop=GATEWAY_HOP,
        request_bytes=8,
        reply_bytes=79,
    )
    # Between the wire plus PACE's documented 200 ms (and slack and hop) and
    # the worked-out figure, whatever the first polls taught it.
    floor = wire_time(87, 19200) + 0.2 + HOST_SLACK + GATEWAY_HOP
    timeout = transport.timer.timeout(9, request_bytes=8, reply_bytes=79)
    assert floor - 1e-9 <= timeout <= derived + 1e-9 < RESPONSE_TIMEOUT

    # Shown as stored, kept when sent back; a typo is refused on the field.
    shown, flow = await reconfigure(None)
    assert shown == "19200"
    assert entry.data["baudrate"] == 19200
    shown, flow = await reconfigure("1920")
    assert flow["type"] is FlowResultType.FORM
    assert flow["errors"] == {"gateway_baudrate": "invalid_gateway_baudrate"}
    assert entry.data["baudrate"] == 19200

    # "I don't know" again: the speed is gone, and with it the worked-out timeout.
    shown, flow = await reconfigure("unknown")
    assert flow["reason"] == "reconfigure_successful"
    assert "baudrate" not in entry.data
    transport = _transport(hass, dict(entry.data))
    assert transport.timer.timeout(9, request_bytes=8, reply_bytes=79) == RESPONSE_TIMEOUT
    assert await hass.config_entries.async_unload(entry.entry_id)
