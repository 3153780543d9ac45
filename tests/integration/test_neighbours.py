"""A good neighbour: the bank and Home Assistant's own Modbus integration in one house.

Solar homes often read their inverter with core ``modbus``. Installing this
integration must not break it: both read, side by side, in one Home
Assistant, each from its own device, with the pymodbus that Home
Assistant's ``modbus`` pins on the line the tests run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.rack_battery.protocol.drivers.pace_modbus import Register
from simulator import pace_modbus
from simulator.bank import constant_load, make_bank

from .conftest import SimulatedBus
from .findings_helpers import (
    bank_entry,
    poll,
    quiet_bus,  # noqa: F401 - a fixture
    setup_entry,
)

pytestmark = pytest.mark.freeze_time(tick=True)

NEIGHBOUR_SCAN = timedelta(seconds=5)


@pytest.fixture
def expected_lingering_timers() -> bool:
    """Core modbus keeps its next read scheduled when the test ends; it is not ours."""
    return True


@pytest.fixture
async def neighbour() -> AsyncIterator[SimulatedBus]:
    """Another Modbus TCP device on the network, one unit, of the user's own."""
    bank = make_bank(1, seed=3, first_address=1)
    bank.pack(1).soc = 0.42
    bank.load = constant_load(0.0)
    bank.step(0.0)
    server = await pace_modbus.start_server(bank, "127.0.0.1", 0)
    try:
        yield SimulatedBus(bank, server.host, server.port)
    finally:
        await server.stop()


async def test_core_modbus_and_the_bank_both_read(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    quiet_bus: SimulatedBus,  # noqa: F811
    neighbour: SimulatedBus,
) -> None:
    """Core modbus (from YAML) reads its device while the bank reads its packs."""
    assert await async_setup_component(
        hass,
        "modbus",
        {
            "modbus": [
                {
                    "name": "neighbour",
                    "type": "tcp",
                    "host": neighbour.host,
                    "port": neighbour.port,
                    "sensors": [
                        {
                            "name": "Neighbour voltage",
                            "device_address": 1,
                            "address": int(Register.VOLTAGE),
                            "input_type": "holding",
                            "data_type": "uint16",
                            "scale": 0.01,
                            "precision": 2,
                            "unit_of_measurement": "V",
                            "scan_interval": int(NEIGHBOUR_SCAN.total_seconds()),
                        }
                    ],
                }
            ]
        },
    )
    await hass.async_block_till_done()
    await setup_entry(hass, bank_entry(quiet_bus))

    for _ in range(3):
        await poll(hass, freezer, NEIGHBOUR_SCAN)
        freezer.tick(NEIGHBOUR_SCAN)
        async_fire_time_changed(hass)
        await hass.async_block_till_done(wait_background_tasks=True)

    theirs = hass.states.get("sensor.neighbour_voltage")
    assert theirs is not None
    assert theirs.state not in (STATE_UNAVAILABLE, STATE_UNKNOWN), theirs
    assert float(theirs.state) == pytest.approx(neighbour.bank.pack(1).voltage, abs=0.01)

    ours = hass.states.get("sensor.pace_bank_pack_1_voltage")
    assert ours is not None
    assert float(ours.state) == pytest.approx(quiet_bus.bank.pack(1).voltage, abs=0.01)
    # Not the same number read twice: two devices, two values.
    assert quiet_bus.bank.pack(1).voltage != neighbour.bank.pack(1).voltage
