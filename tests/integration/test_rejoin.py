"""Rejoin when matched, in a real Home Assistant against the simulator over real wires.

A reconnect asked for "when matched" while the pack sits too far from the
bank is held: the action returns, the pack's switches say it waits and by
how much, and the first poll the guard allows carries it out by itself.
It can be cancelled, gives up after the user's time with a repair, and
outlives a restart. Every family with a write path is served by
``control_helpers.serve``, behind a wiretap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import ATTR_ENTITY_ID, STATE_OFF, STATE_ON
from homeassistant.core import Event, HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events

from custom_components.rack_battery.const import (
    CONF_CONTROL,
    CONF_REJOIN_TIMEOUT,
    DOMAIN,
    EVENT_CONTROL,
    SCAN_INTERVAL,
)
from custom_components.rack_battery.logbook import describe_control
from custom_components.rack_battery.protocol.catalog import control_of
from simulator.bank import SimBank, SimPack

from .control_helpers import WRITE_FAMILIES, ControlBus, serve
from .test_control import (
    ENTRY_ID,
    _act,
    _act_across_polls,
    _device,
    _entry,
    _set_up,
    _state,
    _switch,
)

pytestmark = pytest.mark.usefixtures("socket_enabled")

ON = {CONF_CONTROL: True}
# Far below the others' state of charge (0.6): volts apart.
DRIFTED_SOC = 0.05
# Close enough that the voltages are within 0.5 V (about 0.2 V apart).
MATCHED_SOC = 0.45


@pytest.fixture(params=WRITE_FAMILIES)
async def control_bus(request: pytest.FixtureRequest) -> AsyncIterator[ControlBus]:
    """Serve three packs of each family whose packs can be put back into the bank."""
    async with serve(str(request.param)) as bus:
        yield bus


def _target(bus: ControlBus) -> SimPack:
    """Return the pack the tests take out and put back: the middle one."""
    return bus.bank.packs[1]


def _joined(bus: ControlBus, pack: SimPack) -> bool:
    """Return whether the pack carries current into it again (its charge path)."""
    return pack.charge_on


async def _poll(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, bank: SimBank, after: timedelta
) -> None:
    """Let time pass on both clocks, poll every bank once, and let what it started finish.

    A Pylontech hold lapses on the bank's clock; a held reconnect is
    carried out in a task of its own, read back over the next polls.
    """
    bank.step(min(after, SCAN_INTERVAL).total_seconds())
    freezer.tick(after)
    for entry in hass.config_entries.async_loaded_entries(DOMAIN):
        await entry.runtime_data.coordinator.async_refresh()
    await hass.async_block_till_done(wait_background_tasks=True)


async def _take_out(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, bus: ControlBus, entry: MockConfigEntry
) -> SimPack:
    """Take the middle pack out (its charge path, where that is all the family undoes),
    let it drift far below the others, and wait out the guard's five minutes."""
    pack = _target(bus)
    if control_of(bus.family).can_isolate:
        await _act(hass, "isolate_pack", _device(hass, entry, pack.address))
    else:
        await hass.services.async_call(
            "switch",
            "turn_off",
            {ATTR_ENTITY_ID: _switch(hass, entry, pack.address, "charge_path")},
            blocking=True,
        )
    assert not _joined(bus, pack)
    pack.soc = DRIFTED_SOC
    await _poll(hass, freezer, bus.bank, timedelta(minutes=6))
    return pack


async def _hold(hass: HomeAssistant, entry: MockConfigEntry, pack: SimPack) -> None:
    await _act(hass, "reconnect_pack", _device(hass, entry, pack.address), when_matched=True)
    await hass.async_block_till_done()


def _attributes(
    hass: HomeAssistant, bus: ControlBus, entry: MockConfigEntry, pack: SimPack
) -> list[dict[str, Any]]:
    """Return the attributes of each switch a reconnect turns on."""
    found = []
    for key in bus.switches:
        state = hass.states.get(_switch(hass, entry, pack.address, key) or "")
        assert state is not None
        found.append(dict(state.attributes))
    return found


def _waiting(
    hass: HomeAssistant, bus: ControlBus, entry: MockConfigEntry, pack: SimPack
) -> list[bool]:
    return [a.get("rejoin") == "waiting" for a in _attributes(hass, bus, entry, pack)]


def _actions(events: list[Event]) -> list[tuple[str, bool | None]]:
    return [(e.data["action"], e.data.get("held")) for e in events]


async def test_a_reconnect_apart_is_held_and_carried_out_once_matched(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, control_bus: ControlBus
) -> None:
    """Held while the pack is volts away from the bank, shown on its switches,
    and carried out by itself at the first poll the guard allows; the
    simulated inrush stays under the pack's charge limit."""
    bus = control_bus
    entry = await _set_up(hass, await _entry(bus, ON))
    pack = _target(bus)
    device_id = _device(hass, entry, pack.address)
    await _take_out(hass, freezer, bus, entry)
    events = async_capture_events(hass, EVENT_CONTROL)
    await _act(hass, "reconnect_pack", device_id, when_matched=True)
    assert _actions(events) == [("hold_rejoin", None)]
    held = events[0].data
    assert held["reason"] == "voltage_apart"
    assert held["values"]["delta"] > held["values"]["limit"] == 0.5
    for attributes in _attributes(hass, bus, entry, pack):
        assert attributes["rejoin"] == "waiting"
        assert attributes["voltage_apart"] == held["values"]["delta"]
        assert attributes["join_limit"] == 0.5
        assert attributes["gives_up_at"] == held["give_up_at"]
    assert describe_control(held, "Rack pack 3")["message"] == (
        f"waiting to rejoin, asked by user: {held['values']['delta']} V apart, limit 0.5 V"
    )
    # Still apart: it waits, and nothing closes the pack's paths.
    for _ in range(3):
        await _poll(hass, freezer, bus.bank, SCAN_INTERVAL)
        assert not _joined(bus, pack)
        assert all(_waiting(hass, bus, entry, pack))
    assert _actions(events) == [("hold_rejoin", None)]
    # The bank comes within the limit: the next polls carry it out.
    pack.soc = MATCHED_SOC
    for _ in range(4):
        await _poll(hass, freezer, bus.bank, SCAN_INTERVAL)
        if len(events) > 1:
            break
    assert _actions(events) == [("hold_rejoin", None), ("reconnect", True)]
    done = events[1].data
    assert done["confirmed"] is True
    assert done["who"] == "user"
    assert _joined(bus, pack)
    assert pack.last_inrush is not None
    assert 0 < pack.last_inrush < pack.charge_current_limit
    assert "charge_overcurrent" not in pack.protections
    for key in bus.switches:
        assert _state(hass, _switch(hass, entry, pack.address, key)) == STATE_ON
    assert not any(_waiting(hass, bus, entry, pack))
    assert entry.runtime_data.coordinator.controller.isolated == set()
    assert describe_control(done, "Rack pack 3")["message"].startswith(
        "reconnected by user, held until the voltages matched; the BMS reports charge on"
    )


async def test_other_refusals_are_not_held(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, control_bus: ControlBus
) -> None:
    """Only the voltage waits: a reconnect asked a moment after the pack
    was taken out is refused at once, "when matched" or not."""
    bus = control_bus
    entry = await _set_up(hass, await _entry(bus, ON))
    pack = _target(bus)
    if control_of(bus.family).can_isolate:
        await _act(hass, "isolate_pack", _device(hass, entry, pack.address))
    else:
        await hass.services.async_call(
            "switch",
            "turn_off",
            {ATTR_ENTITY_ID: _switch(hass, entry, pack.address, "charge_path")},
            blocking=True,
        )
    pack.soc = DRIFTED_SOC
    bus.bank.step(1.0)
    await entry.runtime_data.coordinator.async_refresh()
    with pytest.raises(ServiceValidationError) as refused:
        await _hold(hass, entry, pack)
    assert refused.value.translation_key == "refused_too_soon"
    assert entry.runtime_data.coordinator.controller.held == {}
    assert not any(_waiting(hass, bus, entry, pack))


async def test_a_held_reconnect_can_be_cancelled(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, control_bus: ControlBus
) -> None:
    """Cancelled by the cancel action, or by taking the pack out again: the
    pack stays out when the voltages later match."""
    bus = control_bus
    entry = await _set_up(hass, await _entry(bus, ON))
    events = async_capture_events(hass, EVENT_CONTROL)
    pack = await _take_out(hass, freezer, bus, entry)
    device_id = _device(hass, entry, pack.address)
    await _hold(hass, entry, pack)
    assert all(_waiting(hass, bus, entry, pack))
    await _act(hass, "cancel_rejoin", device_id)
    await hass.async_block_till_done()
    assert not any(_waiting(hass, bus, entry, pack))
    # Held again, then taken out again, which cancels it too.
    await _hold(hass, entry, pack)
    assert all(_waiting(hass, bus, entry, pack))
    if control_of(bus.family).can_isolate:
        await _act(hass, "isolate_pack", device_id)
    else:
        await hass.services.async_call(
            "switch",
            "turn_off",
            {ATTR_ENTITY_ID: _switch(hass, entry, pack.address, "charge_path")},
            blocking=True,
        )
    await hass.async_block_till_done()
    assert not any(_waiting(hass, bus, entry, pack))
    pack.soc = MATCHED_SOC
    for _ in range(3):
        await _poll(hass, freezer, bus.bank, SCAN_INTERVAL)
    assert not _joined(bus, pack)
    actions = [a for a, _ in _actions(events)]
    assert actions[-4:] == ["hold_rejoin", "cancel_rejoin", "hold_rejoin", "cancel_rejoin"]
    assert "reconnect" not in actions
    for key in bus.switches:
        assert _state(hass, _switch(hass, entry, pack.address, key)) == STATE_OFF


async def test_a_held_reconnect_gives_up_with_a_repair(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, control_bus: ControlBus
) -> None:
    """Past the user's time it gives up: a repair names the pack and the
    numbers, and the pack stays out even once the voltages match."""
    bus = control_bus
    entry = await _set_up(hass, await _entry(bus, {**ON, CONF_REJOIN_TIMEOUT: 10}))
    pack = await _take_out(hass, freezer, bus, entry)
    await _hold(hass, entry, pack)
    await _poll(hass, freezer, bus.bank, timedelta(minutes=9))
    assert all(_waiting(hass, bus, entry, pack))
    await _poll(hass, freezer, bus.bank, timedelta(minutes=2))
    assert not any(_waiting(hass, bus, entry, pack))
    repair = ir.async_get(hass).async_get_issue(DOMAIN, f"rejoin_gave_up_{ENTRY_ID}_{pack.address}")
    assert repair is not None
    assert repair.translation_key == "rejoin_gave_up_voltage_apart"
    numbers = repair.translation_placeholders or {}
    assert numbers["pack"] == f"Rack pack {pack.address}"
    assert numbers["minutes"] == "10"
    assert float(numbers["delta"]) > float(numbers["limit"]) == 0.5
    assert float(numbers["pack_voltage"]) < float(numbers["bus_voltage"])
    pack.soc = MATCHED_SOC
    for _ in range(3):
        await _poll(hass, freezer, bus.bank, SCAN_INTERVAL)
    assert not _joined(bus, pack)
    # Asked again now, it is carried out at once, and the repair goes.
    await _act_across_polls(hass, bus.bank, "reconnect_pack", _device(hass, entry, pack.address))
    assert _joined(bus, pack)
    assert (
        ir.async_get(hass).async_get_issue(DOMAIN, f"rejoin_gave_up_{ENTRY_ID}_{pack.address}")
        is None
    )


async def test_a_held_reconnect_survives_a_restart(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, control_bus: ControlBus
) -> None:
    """Reloaded, the bank still waits to put the pack back, still only through
    the guard: apart, it stays out; matched, it is reconnected."""
    bus = control_bus
    entry = await _set_up(hass, await _entry(bus, ON))
    pack = await _take_out(hass, freezer, bus, entry)
    await _hold(hass, entry, pack)
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert all(_waiting(hass, bus, entry, pack))
    events = async_capture_events(hass, EVENT_CONTROL)
    await _poll(hass, freezer, bus.bank, SCAN_INTERVAL)
    assert not _joined(bus, pack)
    pack.soc = MATCHED_SOC
    for _ in range(4):
        await _poll(hass, freezer, bus.bank, SCAN_INTERVAL)
        if events:
            break
    assert _actions(events) == [("reconnect", True)]
    assert events[0].data["confirmed"] is True
    assert _joined(bus, pack)
    assert 0 < (pack.last_inrush or 0.0) < pack.charge_current_limit
    assert not any(_waiting(hass, bus, entry, pack))
