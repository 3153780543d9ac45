"""What the bank device tells beyond totals, and what each pack offers on demand."""

from __future__ import annotations

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
import pytest

from .conftest import SimulatedBus, setup_bank
from .test_bank import _poll, _raw, _state

pytestmark = pytest.mark.freeze_time(tick=True)


async def test_spreads_and_time_left(
    hass: HomeAssistant, pace_bus: SimulatedBus, freezer: FrozenDateTimeFactory
) -> None:
    """The bank shows how far apart its packs are, and how long it lasts at
    the present current, or how long until it is full."""
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    packs = pace_bus.bank.packs
    pace_bus.bank.load = lambda _t: 40.0  # a 40 A load, no sun
    pace_bus.bank.step(900)
    await _poll(hass, freezer)

    voltages = [pack.voltage for pack in packs]
    assert _state(hass, "sensor.pace_bank_voltage_spread") == pytest.approx(
        max(voltages) - min(voltages), abs=0.02
    )
    socs = [pack.soc * 100 for pack in packs]
    assert _state(hass, "sensor.pace_bank_state_of_charge_spread") == pytest.approx(
        max(socs) - min(socs), abs=1.0
    )
    remaining = sum(pack.remaining_capacity for pack in packs)
    assert _raw(hass, "sensor.pace_bank_charging_or_discharging") == "discharging"
    assert _state(hass, "sensor.pace_bank_time_to_full_or_empty") == pytest.approx(
        remaining / 40.0, rel=0.005
    )

    pace_bus.bank.load = lambda _t: -25.0  # the charger takes over
    pace_bus.bank.step(60)
    await _poll(hass, freezer)
    missing = sum(pack.full_capacity - pack.remaining_capacity for pack in packs)
    assert _raw(hass, "sensor.pace_bank_charging_or_discharging") == "charging"
    assert _state(hass, "sensor.pace_bank_time_to_full_or_empty") == pytest.approx(
        missing / 25.0, rel=0.005
    )

    # At rest there is no time to tell, and the bank says why.
    pace_bus.bank.load = lambda _t: 0.0
    pace_bus.bank.step(0)
    await _poll(hass, freezer)
    assert _raw(hass, "sensor.pace_bank_charging_or_discharging") == "resting"
    assert _raw(hass, "sensor.pace_bank_time_to_full_or_empty") == STATE_UNKNOWN
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_energy_in_and_out_is_counted_and_kept(
    hass: HomeAssistant, pace_bus: SimulatedBus, freezer: FrozenDateTimeFactory
) -> None:
    """Five minutes of a steady discharge show as kWh out and none in, and the
    total is still there after Home Assistant restarts the bank."""
    pace_bus.bank.load = lambda _t: 40.0
    pace_bus.bank.step(60)
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    assert _state(hass, "sensor.pace_bank_energy_discharged") == 0.0
    power = _state(hass, "sensor.pace_bank_power")
    assert power < -1500  # about 52 V x 40 A, going out

    for _ in range(30):  # 30 polls, 10 s apart; the simulated bank holds still
        await _poll(hass, freezer)
    discharged = _state(hass, "sensor.pace_bank_energy_discharged")
    # 300 s at the bank's power; real time runs on a little beside the
    # frozen clock, hence the 2 %; the state is shown to 10 Wh.
    assert discharged == pytest.approx(-power * 300 / 3_600_000, rel=0.02, abs=0.005)
    assert _state(hass, "sensor.pace_bank_energy_charged") == 0.0
    state = hass.states.get("sensor.pace_bank_energy_discharged")
    assert state is not None
    assert state.attributes["state_class"] == "total_increasing"
    assert state.attributes["unit_of_measurement"] == "kWh"

    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    # The time the bank was away is not guessed at: the total carries on
    # from where it stood.
    assert _state(hass, "sensor.pace_bank_energy_discharged") == pytest.approx(discharged)
    for _ in range(3):  # 30 s at 1.6 kW: more than the 10 Wh it is shown to
        await _poll(hass, freezer)
    assert _state(hass, "sensor.pace_bank_energy_discharged") > discharged
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_single_cells_and_probes_are_there_when_enabled(
    hass: HomeAssistant, pace_bus: SimulatedBus, freezer: FrozenDateTimeFactory
) -> None:
    """Every cell and probe of a pack has an entity, disabled until the user
    turns it on; then it shows that cell's voltage or that probe's reading."""
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    registry = er.async_get(hass)
    wanted = (
        "sensor.pace_bank_pack_2_cell_03_voltage",
        "sensor.pace_bank_pack_2_cell_16_voltage",
        "sensor.pace_bank_pack_2_temperature_1",
        "sensor.pace_bank_pack_2_mosfet_temperature",
    )
    for entity_id in wanted:
        entity = registry.async_get(entity_id)
        assert entity is not None, entity_id
        assert entity.disabled_by is er.RegistryEntryDisabler.INTEGRATION
        assert hass.states.get(entity_id) is None
    # PACE sends no charge or discharge limits: no entity that would stay unknown.
    assert registry.async_get("sensor.pace_bank_pack_2_charge_current_limit") is None

    for entity_id in wanted:
        registry.async_update_entity(entity_id, disabled_by=None)
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    await _poll(hass, freezer)
    pack = pace_bus.bank.pack(2)
    assert _state(hass, wanted[0]) == pytest.approx(pack.cell_voltages[2], abs=0.001)
    assert _state(hass, wanted[1]) == pytest.approx(pack.cell_voltages[15], abs=0.001)
    assert _state(hass, wanted[2]) == pytest.approx(pack.cell_temperatures[0], abs=0.1)
    assert _state(hass, wanted[3]) == pytest.approx(pack.mosfet_temperature, abs=0.1)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_balancing_shows_per_pack(
    hass: HomeAssistant, pace_bus: SimulatedBus, freezer: FrozenDateTimeFactory
) -> None:
    """A pack whose BMS bleeds cells 3 and 7 shows as balancing; the others not."""
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    assert _raw(hass, "binary_sensor.pace_bank_pack_2_balancing") == STATE_OFF
    pace_bus.bank.pack(2).balancing_cells = {3, 7}
    await _poll(hass, freezer)
    assert _raw(hass, "binary_sensor.pace_bank_pack_2_balancing") == STATE_ON
    assert _raw(hass, "binary_sensor.pace_bank_pack_1_balancing") == STATE_OFF
    pace_bus.bank.pack(2).balancing_cells = set()
    await _poll(hass, freezer)
    assert _raw(hass, "binary_sensor.pace_bank_pack_2_balancing") == STATE_OFF
    assert await hass.config_entries.async_unload(entry.entry_id)
