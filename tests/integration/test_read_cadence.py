"""How many requests a poll of a Pylontech bank costs, as a wiretap on the gateway counts them.

The master answers 0x42 and 0x44 for its whole group at once: a bank of
four packs is read in two requests, and every pack's entities are filled
from them. The limits each pack asks of the inverter (0x92) come at the
slow cadence and stay on their entities in between. A master whose
firmware refuses the group read is read pack by pack.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import RELOAD_AFTER_UPDATE_DELAY
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.rack_battery.const import DOMAIN, SCAN_INTERVAL
from custom_components.rack_battery.protocol.cadence import SLOW_READ_INTERVAL
from simulator import pylontech_ascii
from simulator.bank import constant_load, make_bank
from simulator.wiretap import Wiretap, start_wiretap

from .conftest import SimulatedBus, setup_bank
from .test_bank import _state

pytestmark = pytest.mark.freeze_time(tick=True)

PACKS = 4


async def _poll(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> None:
    """Let the poll interval pass and poll once, by hand.

    Only by hand: the interval's timer as well could make it two polls,
    and this file counts the requests of one.
    """
    freezer.tick(SCAN_INTERVAL)
    for entry in hass.config_entries.async_loaded_entries(DOMAIN):
        await entry.runtime_data.coordinator.async_refresh()
    await hass.async_block_till_done()


def _commands(tap: Wiretap) -> list[tuple[int, int, int]]:
    """Return (ADR, CID2, command byte) of each request the tap saw."""
    return [(int(r[3:5], 16), int(r[7:9], 16), int(r[13:15], 16)) for r in tap.requests]


async def _tapped(per_pack_firmware: bool) -> AsyncIterator[tuple[SimulatedBus, Wiretap]]:
    bank = make_bank(PACKS, first_address=2, seed=5, load=constant_load(30.0))
    start = (
        pylontech_ascii.start_per_pack_server if per_pack_firmware else pylontech_ascii.start_server
    )
    server = await start(bank, "127.0.0.1", 0)
    tap = await start_wiretap(server.host, server.port)
    try:
        yield SimulatedBus(bank, tap.host, tap.port), tap
    finally:
        await tap.stop()
        await server.stop()


@pytest.fixture
async def group_bus() -> AsyncIterator[tuple[SimulatedBus, Wiretap]]:
    """Four Pylontech packs behind a gateway with a wiretap; the master reads its group."""
    async for each in _tapped(per_pack_firmware=False):
        yield each


@pytest.fixture
async def per_pack_bus() -> AsyncIterator[tuple[SimulatedBus, Wiretap]]:
    """The same, behind a master whose firmware refuses the group read."""
    async for each in _tapped(per_pack_firmware=True):
        yield each


def _limit_entities(hass: HomeAssistant, bus: SimulatedBus) -> list[str]:
    """Enable every pack's charge current limit entity (disabled by default)."""
    registry = er.async_get(hass)
    wanted = [
        f"sensor.pylontech_bank_pack_{pack.address}_charge_current_limit" for pack in bus.bank.packs
    ]
    for entity_id in wanted:
        assert registry.async_get(entity_id) is not None, entity_id
        registry.async_update_entity(entity_id, disabled_by=None)
    return wanted


async def test_group_read_fills_every_pack_in_two_requests(
    hass: HomeAssistant,
    group_bus: tuple[SimulatedBus, Wiretap],
    freezer: FrozenDateTimeFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Four packs cost two requests a poll, and each pack shows its own values."""
    bus, tap = group_bus
    entry = await setup_bank(hass, bus, wire="ascii_tcp")
    limits = _limit_entities(hass, bus)
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    # Home Assistant reloads the entry once more by itself, a little after
    # entities were enabled: let that pass before counting.
    freezer.tick(timedelta(seconds=RELOAD_AFTER_UPDATE_DELAY + 1))
    async_fire_time_changed(hass)
    await hass.async_block_till_done(wait_background_tasks=True)
    await _poll(hass, freezer)
    # The first poll after the start read every pack's limits once.
    assert _state(hass, limits[0]) == pytest.approx(pylontech_ascii.CHARGE_CURRENT_LIMIT)

    bus.bank.step(60)
    tap.requests.clear()
    await _poll(hass, freezer)
    assert _commands(tap) == [(2, 0x42, 0xFF), (2, 0x44, 0xFF)]
    for pack in bus.bank.packs:
        prefix = f"sensor.pylontech_bank_pack_{pack.address}"
        # A value is written again once it moves by what it is shown to
        # (0.01 V, 0.1 A, 0.1 Ah): a minute's drift below that stays unwritten.
        assert _state(hass, f"{prefix}_voltage") == pytest.approx(pack.voltage, abs=0.01)
        assert _state(hass, f"{prefix}_current") == pytest.approx(pack.current, abs=0.1)
        assert _state(hass, f"{prefix}_remaining_capacity") == pytest.approx(
            pack.remaining_capacity, abs=0.1
        )
        assert _state(hass, f"{prefix}_cycles") == pack.cycles
    assert _state(hass, "sensor.pylontech_bank_packs_online") == PACKS

    # The packs now ask for less charge current. Until the slow read is due
    # nobody asks them, and the entities keep the limits last read.
    before = pylontech_ascii.CHARGE_CURRENT_LIMIT
    monkeypatch.setattr(pylontech_ascii, "CHARGE_CURRENT_LIMIT", 20.0)
    for _ in range(3):
        tap.requests.clear()
        await _poll(hass, freezer)
        assert len(tap.requests) == 2
        for entity_id in limits:
            assert _state(hass, entity_id) == pytest.approx(before)

    # Once the slow cadence comes round, each pack's limits are read once.
    freezer.tick(timedelta(seconds=SLOW_READ_INTERVAL))
    tap.requests.clear()
    await _poll(hass, freezer)
    assert _commands(tap) == [
        (2, 0x42, 0xFF),
        (2, 0x44, 0xFF),
        *((pack.address, 0x92, pack.address) for pack in bus.bank.packs),
    ]
    for entity_id in limits:
        assert _state(hass, entity_id) == pytest.approx(20.0)
    tap.requests.clear()
    await _poll(hass, freezer)
    assert len(tap.requests) == 2
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_master_refusing_group_reads_is_read_pack_by_pack(
    hass: HomeAssistant,
    per_pack_bus: tuple[SimulatedBus, Wiretap],
    freezer: FrozenDateTimeFactory,
) -> None:
    """Older master firmware: two requests per pack, and every pack still shown."""
    bus, tap = per_pack_bus
    entry = await setup_bank(hass, bus, wire="ascii_tcp")
    bus.bank.step(60)
    tap.requests.clear()
    await _poll(hass, freezer)
    assert _commands(tap) == [
        (pack.address, cid2, pack.address) for pack in bus.bank.packs for cid2 in (0x42, 0x44)
    ]
    for pack in bus.bank.packs:
        prefix = f"sensor.pylontech_bank_pack_{pack.address}"
        # Within what each is shown to, as above.
        assert _state(hass, f"{prefix}_voltage") == pytest.approx(pack.voltage, abs=0.01)
        assert _state(hass, f"{prefix}_current") == pytest.approx(pack.current, abs=0.1)
    assert await hass.config_entries.async_unload(entry.entry_id)
