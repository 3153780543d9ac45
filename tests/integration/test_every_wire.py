"""Every family on every wire it speaks: found through the config flow, read right.

Each row serves a simulated bank the way a user's hardware reaches it: a
gateway on loopback TCP (Modbus TCP, raw RTU over TCP, Pylon ASCII over
TCP), a pseudo-terminal standing in for a USB RS485 adapter, or a
socketcand daemon on loopback for CAN. The user's path is the same for all:
the wire from the menu, where the bus is, the family, the scan, the packs
confirmed; then each pack's sensors must carry what its BMS measures, within
what that protocol's units can say.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
import contextlib
from dataclasses import dataclass
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.util import slugify
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.rack_battery.buses import BUSES
from custom_components.rack_battery.const import DOMAIN, SCAN_INTERVAL
from custom_components.rack_battery.protocol.bus import BusRegistry
from custom_components.rack_battery.protocol.catalog import FAMILIES
from custom_components.rack_battery.protocol.connection import ConnectionSpec, Wire
from custom_components.rack_battery.protocol.transport.factory import Transport, open_transport
from simulator import (
    jk_pb,
    pace_ascii,
    pace_modbus,
    pace_modbus_line,
    pylontech_ascii,
    pylontech_can,
    seplos_v2,
    seplos_v3,
    sunspec,
    sunspec_line,
)
from simulator.bank import SimBank, SimPack, constant_load, make_bank
from simulator.modbus_line import ModbusLine

from .conftest import finish_scan

# Time moves with the freezer and also goes on by itself: the protocol stack
# waits on real sockets and pseudo-terminals (see test_bank.py).
pytestmark = pytest.mark.freeze_time(tick=True)

# How long a request waits for its reply. Every scan asks each address the
# family allows, and on a serial line (or a gateway that forwards raw bytes)
# an address nobody holds answers with silence, so a scan costs this much per
# empty address. Loopback replies arrive within milliseconds.
RESPONSE = 0.1
# Opening a socketcand bus is a TCP connect and a three-step handshake done
# in an executor thread: it gets the integration's own second.
CAN_OPEN = 1.0
# The simulated CAN master sends its cycle this often (a real one: 1 s). The
# driver waits for a whole cycle before its first read.
CAN_PERIOD = 0.05

type Fields = dict[str, Any]

type Serve = Callable[[SimBank], contextlib.AbstractAsyncContextManager[Fields]]


@dataclass(frozen=True, kw_only=True)
class Resolution:
    """The smallest step of each value on the wire, as the protocol's units set it."""

    voltage: float  # V
    current: float  # A
    soc: float  # %
    temperature: float  # degC


@dataclass(frozen=True, kw_only=True)
class Case:
    """One family on one wire: how the bank is served and what it can report."""

    family: str
    wire: Wire
    serve: Serve
    first_address: int
    packs: int
    resolution: Resolution
    # The hottest temperature the protocol carries for a pack.
    hottest: Callable[[SimPack], float]

    @property
    def id(self) -> str:
        """Name the case in pytest's output."""
        return f"{self.family}-{self.wire.value}"


# --- ways to serve a bank ---------------------------------------------------


def _modbus_line(make_line: Callable[[SimBank], ModbusLine], way: Wire) -> Serve:
    """Serve a bank's RS485 line on a pty, as raw RTU over TCP, or as Modbus TCP."""

    @contextlib.asynccontextmanager
    async def serve(bank: SimBank) -> AsyncIterator[Fields]:
        line = make_line(bank)
        try:
            if way is Wire.MODBUS_RTU_SERIAL:
                yield {"serial_port": line.open_pty(), "baudrate": "19200"}
            elif way is Wire.MODBUS_RTU_TCP:
                host, port = await line.serve_rtu_tcp()
                yield {"host": host, "port": port}
            else:
                host, port = await line.serve_modbus_tcp()
                yield {"host": host, "port": port}
        finally:
            await line.stop()

    return serve


@contextlib.asynccontextmanager
async def _pace_modbus_gateway(bank: SimBank) -> AsyncIterator[Fields]:
    """PACE behind a Modbus TCP gateway (the simulator's Modbus TCP server)."""
    server = await pace_modbus.start_server(bank, "127.0.0.1", 0)
    try:
        yield {"host": server.host, "port": server.port}
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def _sunspec_device(bank: SimBank) -> AsyncIterator[Fields]:
    """A SunSpec device on Modbus TCP (the simulator's Modbus TCP server)."""
    server = await sunspec.start_server(bank, "127.0.0.1", 0)
    try:
        yield {"host": server.host, "port": server.port}
    finally:
        await server.stop()


def _pylon_line(module: Any, way: Wire) -> Serve:
    """Serve a Pylon-framed line behind a transparent gateway or on a pty."""

    @contextlib.asynccontextmanager
    async def serve(bank: SimBank) -> AsyncIterator[Fields]:
        if way is Wire.ASCII_TCP:
            server = await module.start_server(bank, "127.0.0.1", 0)
            fields: Fields = {"host": server.host, "port": server.port}
        else:
            server = await module.start_pty(bank)
            fields = {"serial_port": server.path, "baudrate": "9600"}
        try:
            yield fields
        finally:
            await server.stop()

    return serve


@contextlib.asynccontextmanager
async def _socketcand(bank: SimBank) -> AsyncIterator[Fields]:
    """A Pylontech master broadcasting through a socketcand daemon on loopback."""
    server = await pylontech_can.start_server(bank, "127.0.0.1", 0, period=CAN_PERIOD)
    try:
        yield {
            "can_interface": "socketcand",
            "can_channel": f"{server.host}:{server.port}/{server.channel}",
            "baudrate": 500_000,
        }
    finally:
        await server.stop()


# --- what each protocol can say ---------------------------------------------


def _every_sensor(pack: SimPack) -> float:
    return max(*pack.cell_temperatures, pack.mosfet_temperature, pack.ambient)


def _pylontech_sensors(pack: SimPack) -> float:
    # The board, the four cell groups and the MOSFET.
    return max(pack.temperature, *pack.cell_temperatures, pack.mosfet_temperature)


def _cells_only(pack: SimPack) -> float:
    return max(pack.cell_temperatures)


# PACE Modbus V1.3: 10 mV, 10 mA, 1 %, 0.1 degC.
PACE_MODBUS = Resolution(voltage=0.01, current=0.01, soc=1, temperature=0.1)
# Seplos V3: 10 mV, 10 mA, 0.1 %, 0.1 K.
SEPLOS_V3 = Resolution(voltage=0.01, current=0.01, soc=0.1, temperature=0.1)
# JK-PB: 1 mV, 1 mA, 1 %, 0.1 degC.
JK_PB = Resolution(voltage=0.001, current=0.001, soc=1, temperature=0.1)
# Pylon ASCII, whose units each vendor sets (pylon/profiles.py); the state
# of charge is remaining over full capacity, so it is as fine as those are.
# Pylontech: 1 mV, 100 mA, 1 mAh, 0.1 K.
PYLONTECH_RS485 = Resolution(voltage=0.001, current=0.1, soc=0.1, temperature=0.1)
# PACE: 1 mV, 10 mA, 10 mAh, 0.1 K.
PACE_ASCII = Resolution(voltage=0.001, current=0.01, soc=0.1, temperature=0.1)
# Seplos V2: 10 mV, 10 mA, 10 mAh, 0.1 K.
SEPLOS_V2 = Resolution(voltage=0.01, current=0.01, soc=0.1, temperature=0.1)
# SunSpec as this device declares it: 10 mV, 10 mA, 0.1 %, 0.1 degC.
SUNSPEC = Resolution(voltage=0.01, current=0.01, soc=0.1, temperature=0.1)
# Pylontech CAN 0x355/0x356: whole percent, 10 mV, 100 mA, 0.1 degC.
PYLONTECH_CAN = Resolution(voltage=0.01, current=0.1, soc=1, temperature=0.1)


def _row(
    family: str,
    wire: Wire,
    serve: Serve,
    resolution: Resolution,
    hottest: Callable[[SimPack], float],
    *,
    first_address: int = 1,
    packs: int = 3,
) -> Case:
    return Case(
        family=family,
        wire=wire,
        serve=serve,
        first_address=first_address,
        packs=packs,
        resolution=resolution,
        hottest=hottest,
    )


CASES: tuple[Case, ...] = (
    _row("pace_modbus", Wire.MODBUS_TCP, _pace_modbus_gateway, PACE_MODBUS, _every_sensor),
    *(
        _row(
            "pace_modbus",
            wire,
            _modbus_line(pace_modbus_line.make_line, wire),
            PACE_MODBUS,
            _every_sensor,
        )
        for wire in (Wire.MODBUS_RTU_SERIAL, Wire.MODBUS_RTU_TCP)
    ),
    *(
        # Pack 0 is the master, as on a real Seplos bank.
        _row(
            "seplos_v3",
            wire,
            _modbus_line(seplos_v3.make_line, wire),
            SEPLOS_V3,
            _every_sensor,
            first_address=0,
        )
        for wire in (Wire.MODBUS_RTU_SERIAL, Wire.MODBUS_RTU_TCP, Wire.MODBUS_TCP)
    ),
    *(
        _row("jk_pb", wire, _modbus_line(jk_pb.make_line, wire), JK_PB, _every_sensor)
        for wire in (Wire.MODBUS_RTU_SERIAL, Wire.MODBUS_RTU_TCP, Wire.MODBUS_TCP)
    ),
    *(
        # Pylontech addresses start at 2 (the master's DIP setting).
        _row(
            "pylontech_rs485",
            wire,
            _pylon_line(pylontech_ascii, wire),
            PYLONTECH_RS485,
            _pylontech_sensors,
            first_address=2,
        )
        for wire in (Wire.ASCII_TCP, Wire.ASCII_SERIAL)
    ),
    *(
        _row(
            "pace_ascii",
            wire,
            _pylon_line(pace_ascii, wire),
            PACE_ASCII,
            _every_sensor,
        )
        for wire in (Wire.ASCII_SERIAL, Wire.ASCII_TCP)
    ),
    *(
        _row(
            "seplos_v2",
            wire,
            _pylon_line(seplos_v2, wire),
            SEPLOS_V2,
            _every_sensor,
        )
        for wire in (Wire.ASCII_SERIAL, Wire.ASCII_TCP)
    ),
    # The CAN bank is one device, the master's aggregate, at address 0.
    _row(
        "pylontech_can",
        Wire.CAN,
        _socketcand,
        PYLONTECH_CAN,
        _cells_only,
        first_address=0,
        packs=4,
    ),
    # SunSpec 805 carries a temperature per cell (its group's sensor) only.
    _row("sunspec", Wire.MODBUS_TCP, _sunspec_device, SUNSPEC, _cells_only),
    *(
        _row(
            "sunspec",
            wire,
            _modbus_line(sunspec_line.make_line, wire),
            SUNSPEC,
            _cells_only,
        )
        for wire in (Wire.MODBUS_RTU_SERIAL, Wire.MODBUS_RTU_TCP)
    ),
)


def test_the_table_covers_every_family_on_every_wire() -> None:
    """A family or wire added to the catalog needs a row here."""
    assert sorted((case.family, case.wire) for case in CASES) == sorted(
        (family.key, wire) for family in FAMILIES.values() for wire in family.wires
    )


# --- the test ---------------------------------------------------------------


@pytest.fixture
def quick_buses(hass: HomeAssistant) -> None:
    """Give the integration a bus registry whose requests wait RESPONSE, not a second."""

    def opener(spec: ConnectionSpec) -> Transport:
        return open_transport(spec, timeout=CAN_OPEN if spec.wire is Wire.CAN else RESPONSE)

    hass.data[BUSES] = BusRegistry(timeout=RESPONSE, opener=opener)


def _state(hass: HomeAssistant, entity_id: str) -> float:
    state = hass.states.get(entity_id)
    assert state is not None, entity_id
    return float(state.state)


async def _poll(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> None:
    """Let the poll interval pass and have the bank read again (as test_bank does)."""
    freezer.tick(SCAN_INTERVAL)
    async_fire_time_changed(hass)
    for entry in hass.config_entries.async_loaded_entries(DOMAIN):
        await entry.runtime_data.coordinator.async_refresh()
    await hass.async_block_till_done(wait_background_tasks=True)


def _expected(case: Case, bank: SimBank) -> dict[int, tuple[float, float, float, float]]:
    """Return, by address, the voltage, current, SoC (%) and hottest temperature shown."""
    if case.wire is Wire.CAN:
        packs = bank.packs
        full = sum(pack.full_capacity for pack in packs)
        return {
            0: (
                sum(pack.voltage for pack in packs) / len(packs),
                sum(pack.current for pack in packs),
                100 * sum(pack.remaining_capacity for pack in packs) / full,
                # 0x356 carries the mean of the packs' cell temperatures.
                sum(sum(p.cell_temperatures) / len(p.cell_temperatures) for p in packs)
                / len(packs),
            )
        }
    return {
        pack.address: (pack.voltage, pack.current, pack.soc * 100, case.hottest(pack))
        for pack in bank.packs
    }


@pytest.mark.usefixtures("quick_buses")
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_family_on_wire_is_found_and_read(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, case: Case
) -> None:
    """The bank is scanned through the config flow; each pack shows its BMS's values."""
    bank = make_bank(case.packs, first_address=case.first_address, seed=5, load=constant_load(40))
    # Ten minutes of discharge, so that packs differ in current and charge.
    bank.step(600)
    async with case.serve(bank) as fields:
        result: Any = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_USER}
        )
        assert case.wire.value in result["menu_options"]
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"next_step_id": case.wire.value}
        )
        assert result["type"] is FlowResultType.FORM
        assert result["step_id"] == case.wire.value
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {**fields, "family": case.family}
        )
        assert result.get("errors") in (None, {}), result
        result = await finish_scan(hass, result)
        assert result["step_id"] == "confirm", result

        addresses = list(_expected(case, bank))
        assert result["description_placeholders"]["count"] == str(len(addresses))
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"packs": [str(address) for address in addresses]}
        )
        await hass.async_block_till_done()
        assert result["type"] is FlowResultType.CREATE_ENTRY
        assert result["data"]["wire"] == case.wire.value
        assert result["data"]["family"] == case.family
        assert [pack["address"] for pack in result["data"]["packs"]] == addresses
        # Where the protocol carries a serial, it is the pack's own.
        serials = {pack.address: pack.serial for pack in bank.packs}
        for found in result["data"]["packs"]:
            if found["serial"] and case.wire is not Wire.CAN:
                assert serials[found["address"]] in found["serial"], found
        entry = result["result"]
        assert entry.state is ConfigEntryState.LOADED

        await _poll(hass, freezer)
        step = case.resolution
        for address, (volts, amps, soc, hottest) in _expected(case, bank).items():
            prefix = f"sensor.{slugify(entry.title)}_pack_{address}"
            # A value is within one step of the protocol's unit (rounding
            # takes half of it; a mean of rounded values can take the rest).
            assert _state(hass, f"{prefix}_voltage") == pytest.approx(volts, abs=step.voltage)
            assert _state(hass, f"{prefix}_current") == pytest.approx(amps, abs=step.current)
            assert _state(hass, f"{prefix}_state_of_charge") == pytest.approx(soc, abs=step.soc)
            assert _state(hass, f"{prefix}_highest_temperature") == pytest.approx(
                hottest, abs=step.temperature
            )

        # No value that never comes: after a few polls every entity the bank
        # shows has a value. An event entity is the exception Home Assistant
        # makes itself: it has no state until its first event.
        bank.step(60)
        await _poll(hass, freezer)
        await _poll(hass, freezer)
        registry = er.async_get(hass)
        shown = [
            entity.entity_id
            for entity in er.async_entries_for_config_entry(registry, entry.entry_id)
            if entity.disabled_by is None and entity.domain != "event"
        ]
        unknown = [
            entity_id
            for entity_id in shown
            if (state := hass.states.get(entity_id)) is None
            or state.state in (STATE_UNKNOWN, STATE_UNAVAILABLE)
        ]
        assert shown
        assert unknown == [], unknown
        assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.usefixtures("quick_buses")
async def test_a_seplos_v3_pack_shows_its_maker_and_serial(hass: HomeAssistant) -> None:
    """The version block's text, high byte first as real packs send it, names each pack."""
    bank = make_bank(2, first_address=1, seed=5, load=constant_load(10))
    for pack in bank.packs:
        pack.manufacturer = "SEPLOS"
        pack.model = "BMS48100"
    async with _modbus_line(seplos_v3.make_line, Wire.MODBUS_RTU_TCP)(bank) as fields:
        result: Any = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_USER}
        )
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"next_step_id": Wire.MODBUS_RTU_TCP.value}
        )
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {**fields, "family": "seplos_v3"}
        )
        result = await finish_scan(hass, result)
        assert result["step_id"] == "confirm", result
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"packs": ["1", "2"]}
        )
        await hass.async_block_till_done()
        assert result["type"] is FlowResultType.CREATE_ENTRY
        entry = result["result"]
        # async_get_device(identifiers=...) is deprecated from 2026.x on, and
        # its replacement is not in 2025.4: look among the bank's devices.
        devices = {
            identifier: device
            for device in dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
            for (_, identifier) in device.identifiers
        }
        for pack in bank.packs:
            # Keyed by the pack's own serial, not by the slot it sits in.
            device = devices.get(f"seplos_v3_{pack.serial}")
            assert device is not None, pack.serial
            assert device.manufacturer == "SEPLOS"
            assert device.model == "BMS48100"
            assert device.serial_number == pack.serial
        assert await hass.config_entries.async_unload(entry.entry_id)
