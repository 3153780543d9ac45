"""The bank and its packs as Home Assistant shows them."""

from __future__ import annotations

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.rack_battery.const import DOMAIN, SCAN_INTERVAL
from simulator.bank import SimPack

from .conftest import SimulatedBus, setup_bank

# Time moves with the freezer, and also goes on by itself: the protocol stack
# waits on real loopback sockets (pymodbus pauses while connecting), which a
# clock that stands still would never let finish.
pytestmark = pytest.mark.freeze_time(tick=True)

PACK_KEYS = (
    "voltage",
    "current",
    "power",
    "state_of_charge",
    "state_of_health",
    "remaining_capacity",
    "full_capacity",
    "cycles",
    "lowest_cell_voltage",
    "highest_cell_voltage",
    "cell_voltage_spread",
    "highest_temperature",
)


def _raw(hass: HomeAssistant, entity_id: str) -> str:
    state = hass.states.get(entity_id)
    assert state is not None, entity_id
    return state.state


def _state(hass: HomeAssistant, entity_id: str) -> float:
    return float(_raw(hass, entity_id))


def _entry_state(entry: ConfigEntry) -> ConfigEntryState:
    """Read the entry's state afresh (it changes behind the type checker's back)."""
    return entry.state


async def _poll(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> None:
    """Let the poll interval pass and have the bank read again."""
    freezer.tick(SCAN_INTERVAL)
    async_fire_time_changed(hass)
    # Whether the interval's timer has fired by now depends on how the loop's
    # clock lines up with the frozen one; refreshing here makes sure this
    # poll happens at the moved time, over the real socket.
    for entry in hass.config_entries.async_loaded_entries(DOMAIN):
        await entry.runtime_data.coordinator.async_refresh()
    await hass.async_block_till_done(wait_background_tasks=True)


def _assert_pack_matches(hass: HomeAssistant, prefix: str, pack: SimPack) -> None:
    """Check a pack's sensors against the simulator within PACE's resolution."""
    assert _state(hass, f"{prefix}_voltage") == pytest.approx(pack.voltage, abs=0.01)
    assert _state(hass, f"{prefix}_current") == pytest.approx(pack.current, abs=0.01)
    assert _state(hass, f"{prefix}_power") == pytest.approx(pack.voltage * pack.current, abs=1.0)
    assert _state(hass, f"{prefix}_state_of_charge") == pytest.approx(pack.soc * 100, abs=1)
    assert _state(hass, f"{prefix}_state_of_health") == pytest.approx(pack.soh, abs=1)
    assert _state(hass, f"{prefix}_remaining_capacity") == pytest.approx(
        pack.remaining_capacity, abs=0.01
    )
    assert _state(hass, f"{prefix}_full_capacity") == pytest.approx(pack.full_capacity, abs=0.01)
    assert _state(hass, f"{prefix}_cycles") == pack.cycles
    cells = pack.cell_voltages
    assert _state(hass, f"{prefix}_lowest_cell_voltage") == pytest.approx(min(cells), abs=0.001)
    assert _state(hass, f"{prefix}_highest_cell_voltage") == pytest.approx(max(cells), abs=0.001)
    assert _state(hass, f"{prefix}_cell_voltage_spread") == pytest.approx(
        (max(cells) - min(cells)) * 1000, abs=2
    )
    hottest = max(*pack.cell_temperatures, pack.mosfet_temperature, pack.ambient)
    assert _state(hass, f"{prefix}_highest_temperature") == pytest.approx(hottest, abs=0.1)


async def test_every_pack_shows_the_simulated_values(
    hass: HomeAssistant, pace_bus: SimulatedBus, freezer: FrozenDateTimeFactory
) -> None:
    """Each pack's sensors carry what its BMS measures, within 10 mV / 10 mA / 0.1 degC."""
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    # Put the bank under load so currents differ from pack to pack.
    pace_bus.bank.load = lambda _t: 45.0
    pace_bus.bank.step(600)
    await _poll(hass, freezer)

    for pack in pace_bus.bank.packs:
        _assert_pack_matches(hass, f"sensor.pace_bank_pack_{pack.address}", pack)

    # The aged pack shows its lost capacity.
    aged = pace_bus.bank.pack(4)
    assert _state(hass, "sensor.pace_bank_pack_4_state_of_health") == pytest.approx(80, abs=1)
    assert aged.full_capacity == pytest.approx(80.0)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_bank_totals(
    hass: HomeAssistant, pace_bus: SimulatedBus, freezer: FrozenDateTimeFactory
) -> None:
    """The bank device sums the packs and weighs state of charge by capacity."""
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    pace_bus.bank.load = lambda _t: -30.0  # charging
    pace_bus.bank.step(300)
    await _poll(hass, freezer)

    packs = pace_bus.bank.packs
    assert _state(hass, "sensor.pace_bank_current") == pytest.approx(30.0, abs=0.05)
    assert _state(hass, "sensor.pace_bank_voltage") == pytest.approx(
        sum(p.voltage for p in packs) / len(packs), abs=0.01
    )
    assert _state(hass, "sensor.pace_bank_power") == pytest.approx(
        sum(p.voltage * p.current for p in packs), abs=4.0
    )
    weighted = sum(p.soc * 100 * p.full_capacity for p in packs) / sum(
        p.full_capacity for p in packs
    )
    assert _state(hass, "sensor.pace_bank_state_of_charge") == pytest.approx(weighted, abs=1)
    assert _state(hass, "sensor.pace_bank_remaining_capacity") == pytest.approx(
        sum(p.remaining_capacity for p in packs),
        abs=0.5,  # shown to a whole Ah
    )
    assert _state(hass, "sensor.pace_bank_packs_online") == 4
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_devices_hang_off_the_bank(hass: HomeAssistant, pace_bus: SimulatedBus) -> None:
    """Every pack is a device of its own, reached via the bank's device."""
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    devices = {
        identifier: device
        for device in dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
        for (_, identifier) in device.identifiers
    }
    assert len(devices) == 1 + len(pace_bus.bank.packs)
    bank = devices[entry.entry_id]
    assert bank.name == "PACE bank"
    for pack in pace_bus.bank.packs:
        device = devices[f"pace_modbus_{pack.serial}"]
        assert device.via_device_id == bank.id
        assert device.serial_number == pack.serial
        assert device.name == f"PACE bank pack {pack.address}"
    entities = er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    sensors = [entity for entity in entities if entity.domain == "sensor"]
    # Single cells, probes and limits are there, but disabled until wanted.
    enabled = [entity for entity in sensors if entity.disabled_by is None]
    # The bank's 12, its 3 for the energy dashboard, and its 2 safe currents.
    assert len(enabled) == 12 + 3 + 2 + 4 * len(PACK_KEYS)
    assert len(sensors) - len(enabled) == 4 * (16 + 5 + 1)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_silent_pack_goes_unavailable_alone(
    hass: HomeAssistant,
    pace_bus: SimulatedBus,
    freezer: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A pack that drops off the bus blanks only its own entities, and returns."""
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    pace_bus.bank.take_off_bus(3)
    await _poll(hass, freezer)

    for key in PACK_KEYS:
        assert _raw(hass, f"sensor.pace_bank_pack_3_{key}") == STATE_UNAVAILABLE
        assert _raw(hass, f"sensor.pace_bank_pack_2_{key}") != STATE_UNAVAILABLE
    assert _state(hass, "sensor.pace_bank_packs_online") == 3
    assert _state(hass, "sensor.pace_bank_remaining_capacity") == pytest.approx(
        sum(p.remaining_capacity for p in pace_bus.bank.packs if p.address != 3), abs=0.5
    )

    # Silence is logged once, not on every poll.
    await _poll(hass, freezer)
    assert caplog.text.count("pack 3 did not answer") == 1

    pace_bus.bank.put_on_bus(3)
    await _poll(hass, freezer)
    for key in PACK_KEYS:
        assert _raw(hass, f"sensor.pace_bank_pack_3_{key}") != STATE_UNAVAILABLE
    assert _state(hass, "sensor.pace_bank_packs_online") == 4
    assert "pack 3 is answering again" in caplog.text
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_dead_bus_blanks_the_bank_and_recovers(
    hass: HomeAssistant, pace_bus: SimulatedBus, freezer: FrozenDateTimeFactory
) -> None:
    """When no pack answers at all, the bank and every pack go unavailable."""
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    for pack in pace_bus.bank.packs:
        pace_bus.bank.take_off_bus(pack.address)
    await _poll(hass, freezer)
    assert _raw(hass, "sensor.pace_bank_voltage") == STATE_UNAVAILABLE
    assert _raw(hass, "sensor.pace_bank_pack_1_voltage") == STATE_UNAVAILABLE

    for pack in pace_bus.bank.packs:
        pace_bus.bank.put_on_bus(pack.address)
    await _poll(hass, freezer)
    assert _raw(hass, "sensor.pace_bank_voltage") != STATE_UNAVAILABLE
    assert _raw(hass, "sensor.pace_bank_pack_1_voltage") != STATE_UNAVAILABLE
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_unload_and_reload(
    hass: HomeAssistant, pace_bus: SimulatedBus, freezer: FrozenDateTimeFactory
) -> None:
    """Unloading releases the bus; reloading reads the bank again."""
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert _entry_state(entry) is ConfigEntryState.NOT_LOADED
    assert _raw(hass, "sensor.pace_bank_pack_1_voltage") == STATE_UNAVAILABLE

    pace_bus.bank.load = lambda _t: 20.0
    pace_bus.bank.step(60)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert _entry_state(entry) is ConfigEntryState.LOADED
    _assert_pack_matches(hass, "sensor.pace_bank_pack_1", pace_bus.bank.pack(1))

    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert _entry_state(entry) is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_setup_retries_while_the_gateway_is_down(
    hass: HomeAssistant, pace_bus: SimulatedBus, closed_port: int
) -> None:
    """A bank whose gateway is off at start-up is retried, not failed for good."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="PACE bank",
        unique_id=f"127.0.0.1:{closed_port}",
        data={
            "wire": "modbus_tcp",
            "family": "pace_modbus",
            "host": "127.0.0.1",
            "port": closed_port,
            "packs": [{"address": 1, "family": "pace_modbus", "serial": "X1"}],
        },
    )
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert _entry_state(entry) is ConfigEntryState.SETUP_RETRY
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_pylontech_packs_show_their_values(
    hass: HomeAssistant, pylontech_bus: SimulatedBus, freezer: FrozenDateTimeFactory
) -> None:
    """Pylontech packs over the ASCII protocol read within its resolution."""
    entry = await setup_bank(hass, pylontech_bus, wire="ascii_tcp")
    pylontech_bus.bank.load = lambda _t: 30.0
    pylontech_bus.bank.step(120)
    await _poll(hass, freezer)
    for pack in pylontech_bus.bank.packs:
        prefix = f"sensor.pylontech_bank_pack_{pack.address}"
        assert _state(hass, f"{prefix}_voltage") == pytest.approx(pack.voltage, abs=0.001)
        # Pylontech sends current in 0.1 A steps.
        assert _state(hass, f"{prefix}_current") == pytest.approx(pack.current, abs=0.05)
        assert _state(hass, f"{prefix}_remaining_capacity") == pytest.approx(
            pack.remaining_capacity, abs=0.001
        )
        assert _state(hass, f"{prefix}_state_of_charge") == pytest.approx(pack.soc * 100, abs=1)
    assert _state(hass, "sensor.pylontech_bank_packs_online") == 3
    assert await hass.config_entries.async_unload(entry.entry_id)
