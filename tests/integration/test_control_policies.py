"""Automatic protection in a real Home Assistant, against the simulator over a real wire.

The hot-pack policy takes a critically hot pack out of the bank, waits for
it to cool, and puts it back once the guard lets it join; with the policy
off nothing is written. The wiretap between Home Assistant and the
simulator sees every request frame on the line.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import STATE_OFF, STATE_ON
from homeassistant.core import Event, HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import async_capture_events

from custom_components.rack_battery.const import (
    CONF_CONTROL,
    CONF_POLICY_HOT,
    CONF_POLICY_PROTECTION,
    CONF_POLICY_SWING,
    DOMAIN,
    EVENT_CONTROL,
    SCAN_INTERVAL,
)
from custom_components.rack_battery.logbook import async_describe_events
from custom_components.rack_battery.policy_runner import STORE_POLICY_HOLDS
from simulator.bank import SimBank

from .conftest import rules_input
from .control_helpers import ControlBus, serve
from .test_control import (
    _control_input,
    _device,
    _entry,
    _set_up,
    _state,
    _switch,
)

pytestmark = pytest.mark.usefixtures("socket_enabled")

HOT = 62.0
POLICIES = (CONF_POLICY_PROTECTION, CONF_POLICY_HOT, CONF_POLICY_SWING)


@pytest.fixture(params=["pace_ascii", "jk_pb", "pylontech_rs485"])
async def policy_bus(request: pytest.FixtureRequest) -> AsyncIterator[ControlBus]:
    """Serve three packs of a family with a write path, behind a wiretap."""
    async with serve(str(request.param)) as bus:
        yield bus


def _heat(bank: SimBank, address: int, celsius: float) -> None:
    pack = bank.pack(address)
    pack.ambient = pack.temperature = celsius
    bank.step(0.0)  # no time of its own: polls come every 10 s, as holds need


async def _poll(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    bank: SimBank,
    after: timedelta = SCAN_INTERVAL,
) -> None:
    """Let time pass on both clocks, poll once, and let the policies finish.

    A policy's change is read back at once, except where a Pylontech pack
    returns to its own limits only once the hold has lapsed on the bank's
    clock, a poll or so after the policy let it go: while the policies wait
    for that, the bank is polled again, without moving Home Assistant's
    clock (which would time out the read-back in flight).
    """
    freezer.tick(after)
    (entry,) = hass.config_entries.async_loaded_entries(DOMAIN)
    coordinator = entry.runtime_data.coordinator
    policies = coordinator.controller.policies
    # The bank moves on a poll at a time, as it would between polls: a
    # Pylontech hold is sent again before it lapses, as the coordinator
    # keeps it (a lapse would join the pack with its inrush).
    remaining = min(after.total_seconds(), 60.0)
    while remaining > SCAN_INTERVAL.total_seconds():
        bank.step(SCAN_INTERVAL.total_seconds())
        remaining -= SCAN_INTERVAL.total_seconds()
        await coordinator.async_refresh()
    bank.step(remaining)
    await coordinator.async_refresh()
    for _ in range(4):
        await asyncio.sleep(0)
        if not policies.running:
            break
        bank.step(SCAN_INTERVAL.total_seconds())
        await coordinator.async_refresh()
    assert not policies.running
    await hass.async_block_till_done()


def _logbook(hass: HomeAssistant) -> Callable[[Event], dict[str, str]]:
    """Return how the logbook describes a control event (device names and all)."""
    described: dict[str, Callable[[Event], dict[str, str]]] = {}

    def capture(domain: str, event_type: str, describe: Callable[[Event], dict[str, str]]) -> None:
        described[event_type] = describe

    async_describe_events(hass, capture)
    return described[EVENT_CONTROL]


async def test_the_hot_pack_policy_takes_a_hot_pack_out_and_back_once_cooled_and_matched(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, policy_bus: ControlBus
) -> None:
    """A critically hot pack is isolated by the policy (not by the user);
    a restart remembers who isolated it; cooled, it stays out while its
    voltage is apart (refused once, not every poll), and is put back by the
    policy once it matches; the logbook names the policy every time."""
    bank = policy_bus.bank
    entry = await _set_up(
        hass, await _entry(policy_bus, {CONF_CONTROL: True, CONF_POLICY_HOT: True})
    )
    events = async_capture_events(hass, EVENT_CONTROL)
    describe = _logbook(hass)
    _heat(bank, 3, HOT)
    await _poll(hass, freezer, bank, SCAN_INTERVAL)
    # The finding waits out its debounce (5 minutes); nothing before.
    assert policy_bus.writes() == []
    await _poll(hass, freezer, bank, timedelta(minutes=6))
    assert not bank.pack(3).charge_on
    assert not bank.pack(3).discharge_on
    for key in policy_bus.switches:
        assert _state(hass, _switch(hass, entry, 3, key)) == STATE_OFF
    assert bank.pack(2).discharge_on
    assert bank.pack(4).discharge_on
    assert [(e.data["action"], e.data["who"], e.data["confirmed"]) for e in events] == [
        ("isolate", "hot_pack", True)
    ]
    assert events[0].data["policy_reason"] == "critically_hot"
    assert events[0].data["policy_values"]["limit"] == 55.0
    message = describe(events[0])["message"]
    assert message.startswith(
        f"isolated by the hot pack policy (critically hot: {HOT:.1f} °C, limit 55.0 °C); "
        "the BMS reports charge off, discharge off"
    ), message
    assert describe(events[0])["name"] == "Rack pack 3"
    controller = entry.runtime_data.coordinator.controller
    assert controller.isolated == set()  # the policy's, not the user's
    assert set(controller.policies.holds) == {3}

    # A restart remembers which policy isolated the pack.
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    stored = controller.export_state()[STORE_POLICY_HOLDS]
    assert [(h["address"], h["policy"]) for h in stored] == [(3, "hot_pack")]
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    controller = entry.runtime_data.coordinator.controller
    assert set(controller.policies.holds) == {3}
    assert controller.isolated == set()
    await _poll(hass, freezer, bank, SCAN_INTERVAL)
    assert not bank.pack(3).discharge_on
    assert _state(hass, _switch(hass, entry, 3, "discharge_path")) == STATE_OFF

    # Cooled, but drifted away from the others while out of the bank.
    _heat(bank, 3, 25.0)
    bank.pack(3).soc = 0.05
    bank.step(0.0)  # no time passes: a Pylontech hold is sent every 10 s
    policy_bus.tap.requests.clear()
    await _poll(hass, freezer, bank, SCAN_INTERVAL)
    # The finding clears after 10 minutes, then the pack settles 10 more.
    await _poll(hass, freezer, bank, timedelta(minutes=11))
    await _poll(hass, freezer, bank, timedelta(minutes=11))
    for _ in range(3):
        await _poll(hass, freezer, bank, SCAN_INTERVAL)
    refused = [e for e in events if e.data.get("refused")]
    assert len(refused) == 1, [e.data for e in events]
    assert refused[0].data["refused"] == "voltage_apart"
    assert refused[0].data["who"] == "hot_pack"
    assert float(refused[0].data["refused_values"]["delta"]) > 0.5
    assert describe(refused[0])["message"].startswith(
        "not reconnected by the hot pack policy (clear for "
    )
    assert "the guard refuses (voltage apart)" in describe(refused[0])["message"]
    if policy_bus.family != "pylontech_rs485":  # whose 0 A hold is sent every poll
        assert policy_bus.writes() == []
    assert not bank.pack(3).discharge_on

    # Back within the join limit: the policy puts it back.
    bank.pack(3).soc = bank.pack(2).soc
    bank.step(0.0)
    await _poll(hass, freezer, bank)
    assert bank.pack(3).charge_on
    assert bank.pack(3).discharge_on
    for key in policy_bus.switches:
        assert _state(hass, _switch(hass, entry, 3, key)) == STATE_ON
    done = [e for e in events if e.data["confirmed"]]
    assert [(e.data["action"], e.data["who"]) for e in done] == [
        ("isolate", "hot_pack"),
        ("reconnect", "hot_pack"),
    ]
    assert describe(done[1])["message"].startswith("reconnected by the hot pack policy (clear for ")
    assert controller.policies.holds == {}
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_with_the_policy_off_a_hot_pack_is_left_alone(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, policy_bus: ControlBus
) -> None:
    """Control on, the hot-pack policy off (its default): the pack is
    reported hot, and not one write frame reaches the wire."""
    bank = policy_bus.bank
    entry = await _set_up(hass, await _entry(policy_bus, {CONF_CONTROL: True}))
    events = async_capture_events(hass, EVENT_CONTROL)
    _heat(bank, 3, HOT)
    for after in (SCAN_INTERVAL, timedelta(minutes=6), timedelta(minutes=6)):
        await _poll(hass, freezer, bank, after)
    findings = entry.runtime_data.coordinator.data.analysis.for_pack(3)
    assert any(f.rule == "high_temperature" and f.severity == "critical" for f in findings)
    assert policy_bus.writes() == []
    assert events == []
    assert bank.pack(3).discharge_on
    assert _state(hass, _switch(hass, entry, 3, "discharge_path")) == STATE_ON


async def test_a_pack_the_user_isolated_is_not_put_back_by_a_policy(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, policy_bus: ControlBus
) -> None:
    """The user isolates a pack; it runs hot and cools again: the policy
    never claims it, and never reconnects it."""
    bank = policy_bus.bank
    entry = await _set_up(
        hass, await _entry(policy_bus, {CONF_CONTROL: True, CONF_POLICY_HOT: True})
    )
    await hass.services.async_call(
        DOMAIN, "isolate_pack", {"device_id": _device(hass, entry, 3)}, blocking=True
    )
    events = async_capture_events(hass, EVENT_CONTROL)
    _heat(bank, 3, HOT)
    for after in (SCAN_INTERVAL, timedelta(minutes=6), timedelta(minutes=6)):
        await _poll(hass, freezer, bank, after)
    _heat(bank, 3, 25.0)
    for after in (SCAN_INTERVAL, timedelta(minutes=11), timedelta(minutes=11)):
        await _poll(hass, freezer, bank, after)
    controller = entry.runtime_data.coordinator.controller
    assert controller.isolated == {3}
    assert controller.policies.holds == {}
    assert events == []
    assert not bank.pack(3).discharge_on


async def test_each_policy_is_a_toggle_in_the_control_step_off_by_default(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, policy_bus: ControlBus
) -> None:
    """The control step offers one toggle per policy, each off; turning the
    hot-pack policy on applies from the next poll, without a reload."""
    bank = policy_bus.bank
    entry = await _set_up(hass, await _entry(policy_bus, {CONF_CONTROL: True}))
    coordinator = entry.runtime_data.coordinator
    result: Any = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(result["flow_id"], rules_input())
    assert result["step_id"] == "control"
    defaults = {
        str(key): key.default() for key in result["data_schema"].schema if str(key) in POLICIES
    }
    assert defaults == dict.fromkeys(POLICIES, False)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**_control_input(enabled=True), CONF_POLICY_HOT: True}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.options[CONF_POLICY_HOT] is True
    assert entry.options[CONF_POLICY_PROTECTION] is False
    assert entry.runtime_data.coordinator is coordinator  # not reloaded
    _heat(bank, 3, HOT)
    for after in (SCAN_INTERVAL, timedelta(minutes=6)):
        await _poll(hass, freezer, bank, after)
    assert not bank.pack(3).discharge_on
    assert set(coordinator.controller.policies.holds) == {3}


async def test_the_protection_policy_takes_out_a_pack_whose_bms_acted(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, policy_bus: ControlBus
) -> None:
    """A pack's BMS trips on an over-current: the policy takes it out at the
    next poll, and puts it back once the BMS has reported nothing for ten
    minutes (its trip reset)."""
    bank = policy_bus.bank
    entry = await _set_up(
        hass, await _entry(policy_bus, {CONF_CONTROL: True, CONF_POLICY_PROTECTION: True})
    )
    events = async_capture_events(hass, EVENT_CONTROL)
    bank.pack(4).protections = {"discharge_overcurrent"}
    await _poll(hass, freezer, bank, SCAN_INTERVAL)
    assert not bank.pack(4).charge_on
    assert not bank.pack(4).discharge_on
    assert [(e.data["action"], e.data["who"], e.data["policy_values"]) for e in events] == [
        ("isolate", "bms_protection", {"protections": "discharge_overcurrent"})
    ]
    bank.reset_trip(4)
    for after in (SCAN_INTERVAL, timedelta(minutes=9)):
        await _poll(hass, freezer, bank, after)
    assert not bank.pack(4).discharge_on  # not yet ten minutes
    await _poll(hass, freezer, bank, timedelta(minutes=2))
    await _poll(hass, freezer, bank)
    assert bank.pack(4).charge_on
    assert bank.pack(4).discharge_on
    assert [(e.data["action"], e.data["who"]) for e in events if e.data["confirmed"]] == [
        ("isolate", "bms_protection"),
        ("reconnect", "bms_protection"),
    ]
    assert entry.runtime_data.coordinator.controller.policies.holds == {}
