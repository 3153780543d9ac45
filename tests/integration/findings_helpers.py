"""A simulated PACE bank in a real Home Assistant, with a clock the test moves.

The bank is set up from a config entry holding what a scan of the simulator
reports (so a test can pre-set options or seed storage under a known entry
id); every poll goes over real loopback Modbus TCP to the simulator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.rack_battery.bank.model import PackIdentity
from custom_components.rack_battery.const import DOMAIN, SCAN_INTERVAL
from simulator import pace_modbus
from simulator.bank import SimBank, constant_load, make_bank

from .conftest import SimulatedBus

ENTRY_ID = "01JBANKFINDINGS0000000000"
MIN = timedelta(minutes=1)


def quiet_bank() -> SimBank:
    """Return four healthy PACE packs at one state of charge: nothing is wrong."""
    bank = make_bank(4, seed=7, first_address=1)
    for pack in bank.packs:
        pack.soc = 0.6
    bank.load = constant_load(0.0)
    bank.step(0.0)
    return bank


@pytest.fixture
async def quiet_bus() -> AsyncIterator[SimulatedBus]:
    """Serve a quiet bank of four PACE packs over Modbus TCP."""
    bank = quiet_bank()
    server = await pace_modbus.start_server(bank, "127.0.0.1", 0)
    try:
        yield SimulatedBus(bank, server.host, server.port)
    finally:
        await server.stop()


def identities(bank: SimBank) -> list[dict[str, Any]]:
    """Return what a scan of the simulated bank stores for each pack."""
    return [
        asdict(
            PackIdentity(
                address=pack.address,
                family="pace_modbus",
                model=pack.model,
                serial=pack.serial,
                firmware=pack.firmware,
                cell_count=len(pack.cell_offsets),
                design_capacity=pack.design_capacity,
            )
        )
        for pack in bank.packs
    ]


def bank_entry(bus: SimulatedBus, options: dict[str, Any] | None = None) -> MockConfigEntry:
    """Return the config entry of the simulated bank."""
    return MockConfigEntry(
        domain=DOMAIN,
        entry_id=ENTRY_ID,
        title="PACE bank",
        unique_id=f"{bus.host}:{bus.port}",
        data={
            "wire": "modbus_tcp",
            "family": "pace_modbus",
            "host": bus.host,
            "port": bus.port,
            "packs": identities(bus.bank),
        },
        options=options or {},
    )


async def setup_entry(hass: HomeAssistant, entry: MockConfigEntry) -> MockConfigEntry:
    """Add the entry and set the bank up."""
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def poll(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, after: timedelta = SCAN_INTERVAL
) -> None:
    """Move the clock and have the bank read again (as test_bank's _poll does).

    Whether the interval's timer fires by itself depends on how the loop's
    clock lines up with the frozen one; refreshing here makes sure a poll
    happens at the moved time, over the real socket.
    """
    freezer.tick(after)
    async_fire_time_changed(hass)
    for entry in hass.config_entries.async_loaded_entries(DOMAIN):
        await entry.runtime_data.coordinator.async_refresh()
    await hass.async_block_till_done(wait_background_tasks=True)


async def run(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    bank: SimBank,
    duration: timedelta,
    *,
    every: timedelta = MIN,
    before_poll: Callable[[SimBank, int], None] | None = None,
) -> None:
    """Poll the bank every ``every`` for ``duration``; a hook may change it first."""
    for index in range(round(duration / every)):
        if before_poll is not None:
            before_poll(bank, index)
        await poll(hass, freezer, every)


def issue(hass: HomeAssistant, finding_id: str) -> ir.IssueEntry | None:
    """Return the repair of a finding of the test bank."""
    return ir.async_get(hass).async_get_issue(DOMAIN, f"{ENTRY_ID}_{finding_id}")


def repairs(hass: HomeAssistant) -> set[str]:
    """Return the finding ids of every repair of the test bank."""
    prefix = f"{ENTRY_ID}_"
    return {
        key.removeprefix(prefix)
        for (domain, key) in ir.async_get(hass).issues
        if domain == DOMAIN and key.startswith(prefix)
    }


def device_id(hass: HomeAssistant, bank: SimBank, address: int | None) -> str:
    """Return the device of a pack (by its serial) or of the bank."""
    key = ENTRY_ID if address is None else f"pace_modbus_{bank.pack(address).serial}"
    for device in dr.async_entries_for_config_entry(dr.async_get(hass), ENTRY_ID):
        if (DOMAIN, key) in device.identifiers:
            return device.id
    raise AssertionError(f"no device {key}")


def problem_entity(address: int | None) -> str:
    """Return the problem binary sensor of a pack or of the bank."""
    if address is None:
        return "binary_sensor.pace_bank_problem"
    return f"binary_sensor.pace_bank_pack_{address}_problem"
