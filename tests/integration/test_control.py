"""Control in a real Home Assistant: off until turned on, guarded, read back.

Each family with a write path (PACE ASCII, Pylontech RS485, JK-PB, Seplos
V3, SunSpec) is served by the simulator over a real wire
(``control_helpers.serve``), with a wiretap between Home Assistant and the
simulator that records every request frame that reaches the line.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import timedelta
import re
from typing import Any

from freezegun.api import FrozenDateTimeFactory, freeze_factories
from homeassistant.const import (
    ATTR_DEVICE_ID,
    ATTR_ENTITY_ID,
    STATE_OFF,
    STATE_ON,
)
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType, InvalidData
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr, entity_registry as er, issue_registry as ir
from homeassistant.helpers.translation import async_get_translations
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
    async_fire_time_changed,
)

from custom_components.rack_battery.bank.control import Decision, Direction, Reason, pack_limits
from custom_components.rack_battery.const import CONF_CONTROL, DOMAIN, EVENT_CONTROL, SCAN_INTERVAL
from custom_components.rack_battery.controller import refusal_key
from custom_components.rack_battery.entity import pack_device_key
from custom_components.rack_battery.logbook import describe_control
from custom_components.rack_battery.protocol.catalog import (
    FAMILIES,
    Undo,
    control_of,
    open_driver,
)
from custom_components.rack_battery.protocol.connection import ConnectionSpec
from custom_components.rack_battery.switch import switch_descriptions
from simulator import pylontech_ascii as sim_pylon
from simulator.bank import HOLD_SECONDS, SimBank, WriteFault, constant_load

from .conftest import rules_input
from .control_helpers import (
    WRITE_FAMILIES,
    ControlBus,
    assert_no_control_entities,
    serve,
    try_every_control,
)

pytestmark = pytest.mark.usefixtures("socket_enabled")

ENTRY_ID = "01JBANKCONTROL00000000000"


@pytest.fixture(params=WRITE_FAMILIES)
async def control_bus(request: pytest.FixtureRequest) -> AsyncIterator[ControlBus]:
    """Serve three packs of each family with a write path, behind a wiretap."""
    async with serve(str(request.param)) as bus:
        yield bus


@pytest.fixture
async def pylontech_control_bus() -> AsyncIterator[ControlBus]:
    """Serve three Pylontech packs, whose limits lapse unless sent again."""
    async with serve("pylontech_rs485") as bus:
        yield bus


async def _entry(bus: ControlBus, options: dict[str, Any] | None = None) -> MockConfigEntry:
    """Return the bank's entry, holding what a scan of the simulator finds."""
    data = {"wire": bus.wire, "family": bus.family, "host": bus.tap.host, "port": bus.tap.port}
    driver = open_driver(ConnectionSpec.from_dict(data), bus.family, timeout=0.5)
    await driver.connect()
    try:
        packs = [asdict(await driver.read_identity(pack.address)) for pack in bus.bank.packs]
    finally:
        await driver.close()
    return MockConfigEntry(
        domain=DOMAIN,
        entry_id=ENTRY_ID,
        title="Rack",
        unique_id=f"{bus.tap.host}:{bus.tap.port}",
        data={**data, "packs": packs},
        options=options or {},
    )


async def _set_up(hass: HomeAssistant, entry: MockConfigEntry) -> MockConfigEntry:
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def _poll(hass: HomeAssistant, freezer: FrozenDateTimeFactory, after: timedelta) -> None:
    """Let time pass, then poll every bank once.

    Once, and by hand: a timer's poll as well would send a Pylontech hold
    twice, or not at all when it runs in the background past this call.
    """
    freezer.tick(after)
    for entry in hass.config_entries.async_loaded_entries(DOMAIN):
        await entry.runtime_data.coordinator.async_refresh()
    await hass.async_block_till_done()


def _device(hass: HomeAssistant, entry: MockConfigEntry, address: int) -> str:
    identity = entry.runtime_data.coordinator.packs[address]
    wanted = (DOMAIN, pack_device_key(entry, identity))
    devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
    found = [device.id for device in devices if wanted in device.identifiers]
    assert len(found) == 1, found
    return found[0]


def _switch(hass: HomeAssistant, entry: MockConfigEntry, address: int, key: str) -> str | None:
    identity = entry.runtime_data.coordinator.packs[address]
    return er.async_get(hass).async_get_entity_id(
        "switch", DOMAIN, f"{pack_device_key(entry, identity)}_{key}"
    )


def _state(hass: HomeAssistant, entity_id: str | None) -> str:
    assert entity_id is not None
    state = hass.states.get(entity_id)
    assert state is not None
    return state.state


async def _act(hass: HomeAssistant, service: str, device_id: str, **data: Any) -> None:
    await hass.services.async_call(
        DOMAIN, service, {ATTR_DEVICE_ID: device_id, **data}, blocking=True
    )


async def _act_across_polls(
    hass: HomeAssistant, bank: SimBank, service: str, device_id: str
) -> None:
    """Call an action that waits for the next polls to read its change back.

    The bank's clock moves on with each poll (a hold lapses in it).

    Each poll here waits for the bus behind the write in flight. A BMS that
    never answers holds the bus until the write's reply timeout, and under
    the ``freezer`` fixture the event loop's clock stands still, so that
    timeout never comes and the test would wait for good: such a BMS is
    served only on a running clock, and this says so instead of hanging.
    """
    if freeze_factories and any(p.write_fault is WriteFault.IGNORE for p in bank.packs):
        pytest.fail("a write nobody answers times out only on a running clock: drop `freezer`")
    call = asyncio.ensure_future(_act(hass, service, device_id))
    for _ in range(4):
        await asyncio.sleep(0)
        if call.done():
            break
        bank.step(SCAN_INTERVAL.total_seconds())
        # The poll is asked for without moving Home Assistant's clock, which
        # would time out the write in flight; nor waiting for Home Assistant
        # to be idle: the action is running.
        for entry in hass.config_entries.async_loaded_entries(DOMAIN):
            await entry.runtime_data.coordinator.async_refresh()
    await call
    await hass.async_block_till_done()


ON = {CONF_CONTROL: True}


async def test_control_off_writes_nothing_whatever_the_user_does(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, control_bus: ControlBus
) -> None:
    """Until the user turns control on there is no switch and no number,
    every action and every control a user can reach is refused or finds
    nothing, and not one write frame reaches the wire.

    The safe currents read all along: three packs, each its own limit; a
    SunSpec string reports no limit and no capacity, so its bank has no
    safe-current sensors, rather than ones at 0 A (which would stop an
    inverter capped by them) or ones unknown for good.
    """
    entry = await _set_up(hass, await _entry(control_bus))
    assert_no_control_entities(hass, entry)
    # Each pack's limit: its BMS's, else 1 C of its design capacity.
    own = _own_limits(entry, Direction.DISCHARGE)
    if control_bus.family == "sunspec":
        assert own == [None, None, None]
        assert hass.states.get("sensor.rack_safe_discharge_current") is None
        assert hass.states.get("sensor.rack_safe_charge_current") is None
    else:
        assert min(x or 0.0 for x in own) > 0
        safe = float(_state(hass, "sensor.rack_safe_discharge_current"))
        assert safe == pytest.approx(3 * min(x or 0.0 for x in own), abs=0.1)
        assert float(_state(hass, "sensor.rack_safe_charge_current")) > 0
    await try_every_control(hass, entry, "rack")
    # The options: the rules, then the control step, left off.
    result: Any = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(result["flow_id"], rules_input())
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "control"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], _control_input(enabled=False)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    await _poll(hass, freezer, SCAN_INTERVAL)
    assert_no_control_entities(hass, entry)
    await try_every_control(hass, entry, "rack")
    await _poll(hass, freezer, SCAN_INTERVAL)
    assert control_bus.tap.requests  # it was read all along
    assert control_bus.writes() == []


def _control_input(*, enabled: bool, join: float = 0.5) -> dict[str, Any]:
    return {
        "control_enabled": enabled,
        "control_min_connected": 1,
        "control_margin_percent": 10,
        "control_max_join_voltage": join,
        "control_min_interval_minutes": 5,
    }


async def test_turning_control_on_creates_the_switches(
    hass: HomeAssistant, control_bus: ControlBus
) -> None:
    """The control step turns control on: each pack gets its switches, on,
    as the BMS reports them; turning it off again removes them."""
    entry = await _set_up(hass, await _entry(control_bus))
    result: Any = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(result["flow_id"], rules_input())
    # The join limit cannot be set above 1.5 V.
    with pytest.raises(InvalidData, match="control_max_join_voltage"):
        await hass.config_entries.options.async_configure(
            result["flow_id"], _control_input(enabled=True, join=3.0)
        )
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], _control_input(enabled=True, join=1.5)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.options[CONF_CONTROL] is True
    assert entry.options["control_max_join_voltage"] == 1.5
    for pack in control_bus.bank.packs:
        for key in control_bus.switches:
            assert _state(hass, _switch(hass, entry, pack.address, key)) == STATE_ON
    assert len(hass.states.async_entity_ids("switch")) == 3 * len(control_bus.switches)
    assert control_bus.writes() == []
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(result["flow_id"], rules_input())
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], _control_input(enabled=False)
    )
    await hass.async_block_till_done()
    assert all(
        hass.states.get(entity_id).state == "unavailable"  # type: ignore[union-attr]
        for entity_id in hass.states.async_entity_ids("switch")
    )


async def test_the_last_pack_stays_connected(hass: HomeAssistant, control_bus: ControlBus) -> None:
    """Two packs isolated one after the other; the third is refused.

    Isolating opens every path the family can switch back: a Seplos V3's
    charge path alone (its discharge FETs, once off, have no command to
    turn them on again), so its isolated packs still discharge, and the
    last pack is refused for charging, as in every family.
    """
    first, middle, last = control_bus.addresses
    bank = control_bus.bank
    entry = await _set_up(hass, await _entry(control_bus, ON))
    for address in (middle, last):
        await _act(hass, "isolate_pack", _device(hass, entry, address))
    with pytest.raises(ServiceValidationError) as refused:
        await _act(hass, "isolate_pack", _device(hass, entry, first))
    assert refused.value.translation_key == "refused_last_pack_charge"
    await _assert_worded_in_each_language(hass, refused.value)
    assert bank.pack(first).charge_on
    assert bank.pack(first).discharge_on
    discharge_switched = control_of(control_bus.family).discharge_path
    for address in (middle, last):
        assert not bank.pack(address).charge_on
        assert bank.pack(address).discharge_on is not discharge_switched
    for key in control_bus.switches:
        assert _state(hass, _switch(hass, entry, first, key)) == STATE_ON
        assert _state(hass, _switch(hass, entry, middle, key)) == STATE_OFF


@pytest.mark.parametrize("family", ["seplos_v3", "jk_pb"])
async def test_a_pack_at_the_modbus_broadcast_unit_is_never_switched(
    hass: HomeAssistant, family: str
) -> None:
    """A pack at unit 0 (a Seplos V3 bank's master) gets no switch, and an
    action aimed at it is refused with why: a write to unit 0 would reach
    every pack on the line. The other packs are switched as usual."""
    async with serve(family, first_address=0) as bus:
        entry = await _set_up(hass, await _entry(bus, ON))
        for key in bus.switches:
            assert _switch(hass, entry, 0, key) is None
            assert _state(hass, _switch(hass, entry, 1, key)) == STATE_ON
        with pytest.raises(ServiceValidationError) as refused:
            await _act(hass, "isolate_pack", _device(hass, entry, 0))
        assert refused.value.translation_key == "broadcast_unit"
        assert (refused.value.translation_placeholders or {})["unit"] == "0"
        for language in ("en", "de", "nl"):
            message = await _render(hass, refused.value, language)
            assert "Rack pack 0" in message, message
            assert "Modbus" in message, message
            assert "{" not in message, message
        assert bus.writes() == []
        await _act(hass, "isolate_pack", _device(hass, entry, 1))
        assert not bus.bank.pack(1).charge_on
        assert bus.bank.pack(0).charge_on
        assert await hass.config_entries.async_unload(entry.entry_id)


def _own_limits(entry: MockConfigEntry, direction: Direction) -> list[float | None]:
    """Return each pack's limit one way as the guard takes it: its BMS's, else by capacity."""
    coordinator = entry.runtime_data.coordinator
    index = 0 if direction is Direction.CHARGE else 1
    return [
        pack_limits(reading, coordinator.packs[address].design_capacity)[index]
        for address, reading in coordinator.data.snapshot.readings.items()
    ]


async def _load(entry: MockConfigEntry, bank: SimBank, amps: float) -> None:
    """Let the bank draw a current (charging below 0), and poll it."""
    bank.load = constant_load(amps)
    bank.step(1.0)
    await entry.runtime_data.coordinator.async_refresh()


async def test_isolating_while_the_rest_cannot_carry_the_load_is_refused(
    hass: HomeAssistant, control_bus: ControlBus
) -> None:
    """Under a load the other two packs cannot carry with the margin, the
    refusal names the numbers, and nothing is written.

    A Seplos V3 is isolated by its charge path alone: under a discharge
    load the others cannot carry, its isolation is refused only while the
    bank charges (with the charge numbers); while it discharges, the pack
    is taken out of charging and goes on carrying its share.

    A SunSpec string reports no current limit and no capacity: there are
    no numbers to refuse a load by, so under load the refusal says that
    nothing shows the others can carry it, and at rest the pack is
    isolated.
    """
    _first, middle, _last = control_bus.addresses
    bank = control_bus.bank
    caps = control_of(control_bus.family)
    entry = await _set_up(hass, await _entry(control_bus, ON))
    device_id = _device(hass, entry, middle)
    discharge = _own_limits(entry, Direction.DISCHARGE)
    charge = _own_limits(entry, Direction.CHARGE)
    if control_bus.family == "sunspec":
        assert discharge == charge == [None, None, None]
        assert hass.states.get("sensor.rack_safe_discharge_current") is None
        await _load(entry, bank, 30.0)
        control_bus.tap.requests.clear()
        with pytest.raises(ServiceValidationError) as refused:
            await _act(hass, "isolate_pack", device_id)
        assert refused.value.translation_key == "refused_limits_unknown_discharge"
        await _assert_worded_in_each_language(hass, refused.value)
        assert float((refused.value.translation_placeholders or {})["current"]) == pytest.approx(
            30.0, abs=0.5
        )
        assert control_bus.writes() == []
        assert bank.pack(middle).discharge_on
        await _load(entry, bank, 0.0)
        await _act(hass, "isolate_pack", device_id)
        assert not bank.pack(middle).charge_on
        assert not bank.pack(middle).discharge_on
        assert _state(hass, _switch(hass, entry, middle, "connected")) == STATE_OFF
        return
    # Just above what two packs can carry with 10 % to spare, each way.
    over_discharge = min(x or 0.0 for x in discharge) * 2 / 1.1 + 5.0
    over_charge = min(x or 0.0 for x in charge) * 2 / 1.1 + 5.0
    # The way the family's isolation is refused: discharging, where it opens
    # the discharge path; charging, where it opens the charge path alone.
    direction = "discharge" if caps.discharge_path else "charge"
    await _load(entry, bank, over_discharge if caps.discharge_path else -over_charge)
    control_bus.tap.requests.clear()
    with pytest.raises(ServiceValidationError) as refused:
        await _act(hass, "isolate_pack", device_id)
    assert refused.value.translation_key == f"refused_overload_{direction}"
    await _assert_worded_in_each_language(hass, refused.value)
    numbers = refused.value.translation_placeholders or {}
    assert numbers["others"] == "2"
    assert numbers["direction"] == direction
    assert float(numbers["current"]) > float(numbers["capacity"]) / 1.1
    assert control_bus.writes() == []
    for key in control_bus.switches:
        assert _state(hass, _switch(hass, entry, middle, key)) == STATE_ON
    if caps.discharge_path:
        return
    # A Seplos V3 discharging: the pack keeps carrying its share, only its
    # charging stops.
    await _load(entry, bank, over_discharge)
    await _act(hass, "isolate_pack", device_id)
    assert not bank.pack(middle).charge_on
    assert bank.pack(middle).discharge_on
    bank.step(1.0)
    assert bank.pack(middle).current < 0
    assert _state(hass, _switch(hass, entry, middle, "charge_path")) == STATE_OFF


async def test_isolate_and_reconnect_a_pack(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, control_bus: ControlBus
) -> None:
    """A pack is isolated and reconnected within the voltage limit; the
    switches show what the BMS reads back, and each change is an event.

    A Seplos V3 is isolated by its charge path alone and goes on
    discharging; a SunSpec string's one "Connected" switch opens both
    paths at once, where the others switch each path on its own.
    """
    _first, middle, last = control_bus.addresses
    bank = control_bus.bank
    caps = control_of(control_bus.family)
    name = f"Rack pack {middle}"
    entry = await _set_up(hass, await _entry(control_bus, ON))
    events = async_capture_events(hass, EVENT_CONTROL)
    device_id = _device(hass, entry, middle)
    await _act(hass, "isolate_pack", device_id)
    assert not bank.pack(middle).charge_on
    assert bank.pack(middle).discharge_on is not caps.discharge_path
    for key in control_bus.switches:
        assert _state(hass, _switch(hass, entry, middle, key)) == STATE_OFF
    # Too soon to undo (the guard's five minutes).
    with pytest.raises(ServiceValidationError) as refused:
        await _act(hass, "reconnect_pack", device_id)
    assert refused.value.translation_key == "refused_too_soon"
    bank.step(60.0)
    await _poll(hass, freezer, timedelta(minutes=6))
    # A Pylontech pack returns to its own limits once the hold lapses,
    # within the next poll.
    await _act_across_polls(hass, bank, "reconnect_pack", device_id)
    assert bank.pack(middle).charge_on
    assert bank.pack(middle).discharge_on
    for key in control_bus.switches:
        assert _state(hass, _switch(hass, entry, middle, key)) == STATE_ON
    assert [(e.data["action"], e.data["who"], e.data["confirmed"]) for e in events] == [
        ("isolate", "user", True),
        ("reconnect", "user", True),
    ]
    assert events[0].data["device_id"] == device_id
    # The logbook says who did what and what the BMS read back.
    described = describe_control(events[0].data, name)
    assert described["name"] == name
    discharge = "off" if caps.discharge_path else "on"
    assert described["message"].startswith(
        f"isolated by user; the BMS reports charge off, discharge {discharge} ("
    )
    # A switch turns what it names, through the same guard: one path on its
    # own, or both at once where the BMS has one switch.
    await _poll(hass, freezer, timedelta(minutes=6))
    (key, *others) = control_bus.switches
    await hass.services.async_call(
        "switch", "turn_off", {ATTR_ENTITY_ID: _switch(hass, entry, last, key)}, blocking=True
    )
    assert not bank.pack(last).charge_on
    assert bank.pack(last).discharge_on is not caps.paths_together
    assert _state(hass, _switch(hass, entry, last, key)) == STATE_OFF
    for other in others:
        assert _state(hass, _switch(hass, entry, last, other)) == STATE_ON


@pytest.mark.parametrize("fault", [WriteFault.ACK_ONLY, WriteFault.IGNORE])
async def test_a_write_that_does_not_take_is_an_error_and_a_repair(
    hass: HomeAssistant, control_bus: ControlBus, fault: WriteFault
) -> None:
    """A BMS that ignores the write, or acknowledges it and does not switch:
    the caller gets an error and a repair names the pack.

    On a running clock (no ``freezer``): the unanswered write must time out.
    """
    _first, middle, _last = control_bus.addresses
    name = f"Rack pack {middle}"
    entry = await _set_up(hass, await _entry(control_bus, ON))
    control_bus.bank.pack(middle).write_fault = fault
    control_bus.tap.requests.clear()
    with pytest.raises(HomeAssistantError) as failed:
        await _act_across_polls(
            hass, control_bus.bank, "isolate_pack", _device(hass, entry, middle)
        )
    # The write reached the wire, to that pack.
    assert control_bus.writes()
    # No answer fails the write at once; an answer without the switch fails
    # the read-back.
    expected = "write_failed" if fault is WriteFault.IGNORE else "write_not_taken"
    assert failed.value.translation_key == expected
    assert (failed.value.translation_placeholders or {})["pack"] == name
    repair = ir.async_get(hass).async_get_issue(DOMAIN, f"control_not_taken_{ENTRY_ID}_{middle}")
    assert repair is not None
    assert repair.translation_placeholders == {"pack": name, "bank": "Rack"}
    assert control_bus.bank.pack(middle).charge_on
    assert control_bus.bank.pack(middle).discharge_on
    for key in control_bus.switches:
        assert _state(hass, _switch(hass, entry, middle, key)) == STATE_ON


async def test_a_pack_isolated_stays_isolated_after_a_restart(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, control_bus: ControlBus
) -> None:
    """The isolated pack is remembered: after a reload (its hold, where the
    BMS lets one lapse, released and lapsed meanwhile) it shows isolated.

    Only a Pylontech pack needs its limits sent again to stay out, and only
    it returns to the bank once the integration is unloaded; a Seplos V3
    stays out of charging alone, discharging all along.
    """
    _first, middle, _last = control_bus.addresses
    bank = control_bus.bank
    caps = control_of(control_bus.family)
    lapses = caps.undo is Undo.LAPSES
    entry = await _set_up(hass, await _entry(control_bus, ON))
    await _act(hass, "isolate_pack", _device(hass, entry, middle))
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    bank.step(HOLD_SECONDS + 1)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.runtime_data.coordinator.controller.isolated == {middle}
    for key in control_bus.switches:
        assert _state(hass, _switch(hass, entry, middle, key)) == STATE_OFF
    assert not bank.pack(middle).charge_on
    assert bank.pack(middle).discharge_on is not caps.discharge_path
    # Held again every poll, well inside the BMS's hold time.
    for _ in range(3):
        control_bus.tap.requests.clear()
        bank.step(HOLD_SECONDS * 0.8)
        await _poll(hass, freezer, SCAN_INTERVAL)
        assert not bank.pack(middle).charge_on
        assert bool(control_bus.writes()) is lapses
    # Unloaded, the hold is no longer sent and lapses.
    assert await hass.config_entries.async_unload(entry.entry_id)
    bank.step(HOLD_SECONDS + 1)
    assert bank.pack(middle).charge_on is lapses
    assert bank.pack(middle).discharge_on is (lapses or not caps.discharge_path)


async def test_a_bms_that_ignores_the_write_is_an_error_and_a_repair(
    hass: HomeAssistant, control_bus: ControlBus
) -> None:
    """A BMS that does not answer the write: the caller gets an error at
    once, a repair names the pack, and the pack is as it was."""
    _first, middle, _last = control_bus.addresses
    entry = await _set_up(hass, await _entry(control_bus, ON))
    control_bus.bank.pack(middle).write_fault = WriteFault.IGNORE
    with pytest.raises(HomeAssistantError) as failed:
        await _act(hass, "isolate_pack", _device(hass, entry, middle))
    assert failed.value.translation_key == "write_failed"
    assert (failed.value.translation_placeholders or {})["pack"] == f"Rack pack {middle}"
    repair = ir.async_get(hass).async_get_issue(DOMAIN, f"control_not_taken_{ENTRY_ID}_{middle}")
    assert repair is not None
    assert control_bus.bank.pack(middle).charge_on
    assert control_bus.bank.pack(middle).discharge_on


async def test_a_current_limit_where_the_family_can_throttle(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, control_bus: ControlBus
) -> None:
    """Pylontech takes a charge limit, held every poll; a family whose BMS
    takes no limits refuses the action, having written nothing."""
    bank = control_bus.bank
    entry = await _set_up(hass, await _entry(control_bus, ON))
    device_id = _device(hass, entry, 2)
    control_bus.tap.requests.clear()
    if control_bus.family != "pylontech_rs485":
        with pytest.raises(ServiceValidationError) as refused:
            await _act(hass, "set_current_limit", device_id, charge_limit=20.0)
        assert refused.value.translation_key == "not_offered"
        assert control_bus.writes() == []
        return
    await _act(hass, "set_current_limit", device_id, charge_limit=20.0)
    reading = entry.runtime_data.coordinator.data.snapshot.readings[2]
    assert reading.charge_current_limit == 20.0
    for _ in range(3):
        control_bus.tap.requests.clear()
        bank.step(HOLD_SECONDS * 0.8)
        await _poll(hass, freezer, SCAN_INTERVAL)
        assert len(control_bus.writes()) == 1
        assert bank.pack(2).reported_charge_limit == 20.0


async def test_a_held_limit_is_sent_between_polls_before_it_can_lapse(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, pylontech_control_bus: ControlBus
) -> None:
    """A Pylontech BMS lets a limit go 10 s after it was last sent, and a poll
    comes every 10 s: the limit is sent again between polls once half of
    that has passed, and not sooner, so no late poll lets the pack go."""
    bus = pylontech_control_bus
    entry = await _set_up(hass, await _entry(bus, ON))
    await _act(hass, "set_current_limit", _device(hass, entry, 2), charge_limit=20.0)
    await _poll(hass, freezer, SCAN_INTERVAL)  # the limits were sent in this poll's turn

    bus.tap.requests.clear()
    freezer.tick(timedelta(seconds=HOLD_SECONDS / 4 + 0.1))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert bus.writes() == []  # a quarter of the hold time: nothing yet

    controller = entry.runtime_data.coordinator.controller
    freezer.tick(timedelta(seconds=HOLD_SECONDS / 4))
    async_fire_time_changed(hass)
    sending = controller.sending_holds
    assert isinstance(sending, asyncio.Task)
    await sending
    # Past half the hold time, before the next poll: the hold alone, no read.
    assert len(bus.writes()) == 1
    assert bus.tap.requests == bus.writes()
    assert bus.writes()[0][3:5] == b"02"
    assert bus.bank.pack(2).hold is not None

    assert await hass.config_entries.async_unload(entry.entry_id)
    bus.tap.requests.clear()
    freezer.tick(timedelta(seconds=HOLD_SECONDS))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert bus.writes() == []  # released on unload: nothing is kept any more


async def test_the_safe_limits_weigh_the_packs_resistance(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, pylontech_control_bus: ControlBus
) -> None:
    """Once the analyzer has seen load steps, the bank's safe discharge
    current is shared by the packs' resistance: pack 4 with three times
    the others' resistance takes less, and the other two bind sooner than
    equal shares would say. Control need not be on to read it."""
    bank = pylontech_control_bus.bank
    for pack, ohms in zip(bank.packs, (0.012, 0.012, 0.036), strict=True):
        pack.internal_resistance = ohms
    entry = await _set_up(hass, await _entry(pylontech_control_bus))
    limit = sim_pylon.DISCHARGE_CURRENT_LIMIT  # each pack's own, 74 A
    # Equal shares before any step: three packs of 74 A.
    assert float(_state(hass, "sensor.rack_safe_discharge_current")) == 3 * limit
    for amps in (20.0, 80.0, 20.0, 80.0, 20.0, 80.0):
        bank.load = constant_load(amps)
        bank.step(SCAN_INTERVAL.total_seconds())
        await _poll(hass, freezer, SCAN_INTERVAL)
    estimates = entry.runtime_data.coordinator.analyzer.resistance_estimates()
    assert all(estimates[p.address].samples >= 3 for p in bank.packs)
    # By the packs' own resistance (12, 12 and 36 mOhm): conductances 83.3,
    # 83.3 and 27.8 S; packs 2 and 3 take 3/7 each and reach 74 A at
    # 172.7 A of bank current (equal shares: 222 A).
    conductance = {p.address: 1 / p.internal_resistance for p in bank.packs}
    share = conductance[2] / sum(conductance.values())
    assert round(limit / share, 1) == 172.7
    safe = float(_state(hass, "sensor.rack_safe_discharge_current"))
    assert safe == pytest.approx(limit / share, rel=0.05)


def _number(hass: HomeAssistant, entry: MockConfigEntry, address: int, key: str) -> str | None:
    identity = entry.runtime_data.coordinator.packs[address]
    return er.async_get(hass).async_get_entity_id(
        "number", DOMAIN, f"{pack_device_key(entry, identity)}_{key}"
    )


async def _set_number(hass: HomeAssistant, entity_id: str | None, value: float) -> None:
    await hass.services.async_call(
        "number", "set_value", {ATTR_ENTITY_ID: entity_id, "value": value}, blocking=True
    )


async def test_the_current_limits_as_numbers(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, control_bus: ControlBus
) -> None:
    """Where the family takes limits, each pack has a charge and a discharge
    limit to set: it shows what the BMS reports, runs up to the pack's own
    limit, goes through the guard, is held every poll, and set back to the
    pack's own limit lets the pack return to its own."""
    bank = control_bus.bank
    entry = await _set_up(hass, await _entry(control_bus, ON))
    if control_bus.family != "pylontech_rs485":
        # FETs only: switches, no numbers.
        assert hass.states.async_entity_ids("number") == []
        assert hass.states.async_entity_ids("switch")
        return
    assert len(hass.states.async_entity_ids("number")) == 2 * len(bank.packs)
    charge = _number(hass, entry, 2, "max_charge_current")
    own = sim_pylon.CHARGE_CURRENT_LIMIT  # what the simulated pack reports of its own
    state = hass.states.get(charge)  # type: ignore[arg-type]
    assert state is not None
    assert float(state.state) == own
    assert state.attributes["min"] == 0
    assert state.attributes["max"] == own
    assert state.attributes["unit_of_measurement"] == "A"
    assert state.attributes["friendly_name"] == "Rack pack 2 Max charge current"

    # Throttled to 20 A: a 0x94 to pack 2 on the wire (sent, then held in
    # the read-back's poll), the BMS reports 20 A, and the number shows
    # what it reports.
    control_bus.tap.requests.clear()
    await _set_number(hass, charge, 20.0)
    assert len(set(control_bus.writes())) == 1
    assert control_bus.writes()[0][3:5] == b"02"
    assert bank.pack(2).reported_charge_limit == 20.0
    assert _state(hass, charge) == "20.0"
    for _ in range(2):
        control_bus.tap.requests.clear()
        bank.step(HOLD_SECONDS * 0.8)
        await _poll(hass, freezer, SCAN_INTERVAL)
        assert len(control_bus.writes()) == 1
        assert _state(hass, charge) == "20.0"

    # Pack 3's discharge limit to 0 A under a load the other two cannot
    # carry: refused with the numbers, nothing written, nothing changed.
    coordinator = entry.runtime_data.coordinator
    limits = [
        coordinator.data.snapshot.readings[p.address].discharge_current_limit for p in bank.packs
    ]
    bank.load = constant_load(min(x or 0.0 for x in limits) * 2 / 1.1 + 5.0)
    bank.step(1.0)
    await _poll(hass, freezer, timedelta(seconds=1))
    discharge = _number(hass, entry, 3, "max_discharge_current")
    before = _state(hass, discharge)
    control_bus.tap.requests.clear()
    with pytest.raises(ServiceValidationError) as refused:
        await _set_number(hass, discharge, 0.0)
    assert refused.value.translation_key == "refused_overload_discharge"
    assert control_bus.writes() == []
    assert _state(hass, discharge) == before
    assert bank.pack(3).discharge_on

    # Back to the pack's own limit, five minutes on: the hold is released,
    # and once it has lapsed the pack reports its own limit again.
    bank.load = constant_load(0.0)
    bank.step(1.0)
    await _poll(hass, freezer, timedelta(minutes=6))
    await _set_number(hass, charge, own)
    control_bus.tap.requests.clear()
    bank.step(HOLD_SECONDS + 1)
    await _poll(hass, freezer, SCAN_INTERVAL)
    assert control_bus.writes() == []
    assert bank.pack(2).hold is None
    assert float(_state(hass, charge)) == own


# The English words for a direction, in any of their forms.
_ENGLISH_DIRECTION = re.compile(r"\b(dis)?charg(e|es|ed|ing)\b", re.IGNORECASE)


async def _render(hass: HomeAssistant, err: HomeAssistantError, language: str) -> str:
    """Return an error's message as Home Assistant words it in a language."""
    strings = await async_get_translations(hass, language, "exceptions", {DOMAIN})
    template = strings[f"component.{DOMAIN}.exceptions.{err.translation_key}.message"]
    return template.format(**(err.translation_placeholders or {}))


async def _assert_worded_in_each_language(hass: HomeAssistant, err: HomeAssistantError) -> None:
    """The English message names its direction; the German and Dutch ones
    name it in their own words, with no English left in."""
    english = await _render(hass, err, "en")
    assert _ENGLISH_DIRECTION.search(english), english
    for language in ("de", "nl"):
        message = await _render(hass, err, language)
        assert not _ENGLISH_DIRECTION.search(message), message
        assert "{" not in message, message
        assert (err.translation_placeholders or {})["pack"] in message


async def test_every_refusal_reads_in_its_own_language(hass: HomeAssistant) -> None:
    """Each refusal the guard can give, and each repair of a rejoin that
    gave up, as Home Assistant renders it in German and Dutch, holds no
    English word for charging or discharging (a direction used to be
    filled in from English)."""
    for language in ("de", "nl"):
        strings = await async_get_translations(hass, language, "exceptions", {DOMAIN})
        refusals = {key: text for key, text in strings.items() if ".exceptions.refused_" in key}
        assert len(refusals) >= len(Reason) - 2, refusals
        # A reconnect that gave up waiting says why in a repair, with the
        # guard's numbers too.
        issues = await async_get_translations(hass, language, "issues", {DOMAIN})
        gave_up = {key: text for key, text in issues.items() if ".rejoin_gave_up_" in key}
        assert gave_up
        for key, text in (refusals | gave_up).items():
            # Filled as the guard fills them: numbers, and the direction it
            # passes along (in English, for automations that catch it).
            message = text.format_map(defaultdict(lambda: "7", direction="discharge"))
            assert not _ENGLISH_DIRECTION.search(message), (key, message)
    # Every reason with a direction has a message each way.
    english = await async_get_translations(hass, "en", "exceptions", {DOMAIN})
    for reason in (Reason.LAST_PACK, Reason.BELOW_MINIMUM, Reason.OVERLOAD, Reason.INRUSH):
        for direction in Direction:
            decision = Decision(
                allowed=False, reason=reason, address=2, values={"direction": direction.value}
            )
            key = f"component.{DOMAIN}.exceptions.{refusal_key(decision)}.message"
            assert direction.value in english[key].lower(), english[key]


def test_the_switches_follow_the_catalog() -> None:
    """One switch per path a family can switch back, one "Connected" where
    the BMS switches both together, none where it switches nothing."""
    keys = {family: [d.key for d in switch_descriptions(control_of(family))] for family in FAMILIES}
    assert keys["pace_ascii"] == ["charge_path", "discharge_path"]
    assert keys["jk_pb"] == ["charge_path", "discharge_path"]
    assert keys["pylontech_rs485"] == ["charge_path", "discharge_path"]
    # No register turns a Seplos V3's discharge FETs back on.
    assert keys["seplos_v3"] == ["charge_path"]
    assert keys["sunspec"] == ["connected"]
    for family in ("pace_modbus", "seplos_v2", "pylontech_can"):
        assert keys[family] == []


async def test_turning_control_off_releases_a_held_pack_for_good(
    hass: HomeAssistant, pylontech_control_bus: ControlBus
) -> None:
    """Control turned off releases the hold (the pack returns to the bank),
    and turning it on again does not take the pack out again by itself."""
    control_bus = pylontech_control_bus
    bank = control_bus.bank
    entry = await _set_up(hass, await _entry(control_bus, ON))
    await _act(hass, "isolate_pack", _device(hass, entry, 3))
    assert not bank.pack(3).discharge_on
    hass.config_entries.async_update_entry(entry, options={**entry.options, CONF_CONTROL: False})
    await hass.async_block_till_done()
    bank.step(HOLD_SECONDS + 1)
    assert bank.pack(3).discharge_on
    hass.config_entries.async_update_entry(entry, options={**entry.options, CONF_CONTROL: True})
    await hass.async_block_till_done()
    assert entry.runtime_data.coordinator.controller.isolated == set()
    bank.step(1.0)
    assert bank.pack(3).discharge_on
    assert _state(hass, _switch(hass, entry, 3, "discharge_path")) == STATE_ON


async def test_a_reconnect_too_far_apart_is_refused_with_the_numbers(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, control_bus: ControlBus
) -> None:
    """An isolated pack that drifted away from the others stays out: the
    refusal names both voltages, and nothing is written."""
    _first, middle, _last = control_bus.addresses
    bank = control_bus.bank
    entry = await _set_up(hass, await _entry(control_bus, ON))
    device_id = _device(hass, entry, middle)
    await _act(hass, "isolate_pack", device_id)
    bank.pack(middle).soc = 0.05
    bank.step(1.0)
    await _poll(hass, freezer, timedelta(minutes=6))
    control_bus.tap.requests.clear()
    with pytest.raises(ServiceValidationError) as refused:
        await _act(hass, "reconnect_pack", device_id)
    assert refused.value.translation_key == "refused_voltage_apart"
    numbers = refused.value.translation_placeholders or {}
    assert float(numbers["delta"]) > float(numbers["limit"]) == 0.5
    assert float(numbers["pack_voltage"]) < float(numbers["bus_voltage"])
    assert control_bus.writes() == []
    assert not bank.pack(middle).charge_on
    for key in control_bus.switches:
        assert _state(hass, _switch(hass, entry, middle, key)) == STATE_OFF
