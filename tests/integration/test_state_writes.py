"""A poll writes an entity's state only when what the entity shows changed.

Home Assistant drops a state equal to the last one, but only after working
it out again; on a bank of many packs that was most of what a poll cost. So
a poll that changes nothing writes nothing (not even the "last reported"
time moves), and a value that moves, or a pack that falls silent and comes
back with the same values, is shown at once.
"""

from __future__ import annotations

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import (
    EVENT_STATE_CHANGED,
    EVENT_STATE_REPORTED,
    STATE_UNAVAILABLE,
)
from homeassistant.core import (
    Event,
    EventStateChangedData,
    EventStateReportedData,
    HomeAssistant,
    callback,
)
from homeassistant.helpers import entity_registry as er
import pytest

from .conftest import SimulatedBus
from .findings_helpers import (
    bank_entry,
    poll,
    quiet_bus,  # noqa: F401 - a fixture
    setup_entry,
)

pytestmark = pytest.mark.freeze_time(tick=True)

SOC = "sensor.pace_bank_pack_2_state_of_charge"
CELL = "sensor.pace_bank_pack_2_lowest_cell_voltage"


async def test_a_poll_that_changes_nothing_writes_nothing(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    quiet_bus: SimulatedBus,  # noqa: F811
) -> None:
    """Unchanged values are not written again; a change, and a return, are."""
    await setup_entry(hass, bank_entry(quiet_bus))
    await poll(hass, freezer)
    reported: list[str] = []
    changed: list[str] = []

    @callback
    def on_reported(event: Event[EventStateReportedData]) -> None:
        reported.append(event.data["entity_id"])

    @callback
    def on_changed(event: Event[EventStateChangedData]) -> None:
        changed.append(event.data["entity_id"])

    @callback
    def any_entity(data: EventStateReportedData) -> bool:
        return True

    # Home Assistant asks for a filter on "state reported": there are many.
    hass.bus.async_listen(EVENT_STATE_REPORTED, on_reported, event_filter=any_entity)
    hass.bus.async_listen(EVENT_STATE_CHANGED, on_changed)
    cell_before = hass.states.get(CELL)
    assert cell_before is not None

    await poll(hass, freezer)
    await poll(hass, freezer)
    assert reported == []
    assert SOC not in changed
    # The lowest cell did not change: its state was not even reported again.
    cell_after = hass.states.get(CELL)
    assert cell_after is not None
    assert cell_after.last_reported == cell_before.last_reported

    # A value that moves is shown at the next poll.
    quiet_bus.bank.pack(2).soc = 0.45
    quiet_bus.bank.step(0.0)
    await poll(hass, freezer)
    soc = hass.states.get(SOC)
    assert soc is not None
    assert float(soc.state) == pytest.approx(45)

    # A pack that falls silent goes unavailable, and comes back with the
    # same values it had: both are written.
    quiet_bus.bank.take_off_bus(2)
    await poll(hass, freezer)
    soc = hass.states.get(SOC)
    assert soc is not None
    assert soc.state == STATE_UNAVAILABLE
    quiet_bus.bank.put_on_bus(2)
    await poll(hass, freezer)
    soc = hass.states.get(SOC)
    assert soc is not None
    assert float(soc.state) == pytest.approx(45)


CAPACITY = "sensor.pace_bank_pack_2_remaining_capacity"


def _set_capacity(bus: SimulatedBus, amp_hours: float) -> None:
    """Have pack 2's BMS report this remaining charge (it reports 10 mAh steps)."""
    pack = bus.bank.pack(2)
    pack.soc = amp_hours / pack.full_capacity
    bus.bank.step(0.0)


def _capacity(hass: HomeAssistant) -> float:
    state = hass.states.get(CAPACITY)
    assert state is not None
    return float(state.state)


async def test_a_change_below_the_display_precision_writes_nothing(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    quiet_bus: SimulatedBus,  # noqa: F811
) -> None:
    """Remaining charge is shown to 0.1 Ah: 10 mAh more is no news, 0.1 Ah is.

    The state written keeps the BMS's 10 mAh, and a charge that creeps up
    by 20 mAh per poll is written as soon as the creep shows, then not
    again until it shows once more.
    """
    _set_capacity(quiet_bus, 50.02)
    await setup_entry(hass, bank_entry(quiet_bus))
    await poll(hass, freezer)
    assert _capacity(hass) == pytest.approx(50.02)
    writes: list[float] = []

    @callback
    def on_changed(event: Event[EventStateChangedData]) -> None:
        if event.data["entity_id"] == CAPACITY and (new := event.data["new_state"]):
            writes.append(float(new.state))

    hass.bus.async_listen(EVENT_STATE_CHANGED, on_changed)

    # 50.04 Ah is shown as 50.0 Ah, as 50.02 Ah was: nothing is written.
    _set_capacity(quiet_bus, 50.04)
    await poll(hass, freezer)
    assert writes == []
    assert _capacity(hass) == pytest.approx(50.02)

    # 20 mAh more shows as 50.1 Ah: written, at the BMS's 10 mAh.
    _set_capacity(quiet_bus, 50.06)
    await poll(hass, freezer)
    assert writes == [pytest.approx(50.06)]

    # It creeps on by 20 mAh per poll: nothing until 50.2 Ah shows.
    for amp_hours in (50.08, 50.10, 50.12, 50.14, 50.16):
        _set_capacity(quiet_bus, amp_hours)
        await poll(hass, freezer)
    assert writes == [pytest.approx(50.06), pytest.approx(50.16)]
    assert _capacity(hass) == pytest.approx(50.16)


async def test_the_users_own_decimals_decide_what_is_news(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    quiet_bus: SimulatedBus,  # noqa: F811
) -> None:
    """A user who shows the charge to 10 mAh sees every 10 mAh step written."""
    _set_capacity(quiet_bus, 50.02)
    await setup_entry(hass, bank_entry(quiet_bus))
    await poll(hass, freezer)
    er.async_get(hass).async_update_entity_options(CAPACITY, "sensor", {"display_precision": 2})
    await hass.async_block_till_done()
    await poll(hass, freezer)

    _set_capacity(quiet_bus, 50.03)
    await poll(hass, freezer)
    assert _capacity(hass) == pytest.approx(50.03)

    # Back to the suggested 0.1 Ah: 10 mAh is no news again.
    er.async_get(hass).async_update_entity_options(CAPACITY, "sensor", {})
    await hass.async_block_till_done()
    await poll(hass, freezer)
    _set_capacity(quiet_bus, 50.04)
    await poll(hass, freezer)
    assert _capacity(hass) == pytest.approx(50.03)


async def test_a_value_shown_in_another_unit_is_written_at_every_step(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    quiet_bus: SimulatedBus,  # noqa: F811
) -> None:
    """A current shown in mA is not held to the 0.1 A it is suggested with."""
    current = "sensor.pace_bank_pack_2_current"
    pack = quiet_bus.bank.pack(2)
    pack.current = 1.02
    await setup_entry(hass, bank_entry(quiet_bus))
    await poll(hass, freezer)
    er.async_get(hass).async_update_entity_options(current, "sensor", {"unit_of_measurement": "mA"})
    await hass.async_block_till_done()
    await poll(hass, freezer)

    pack.current = 1.03
    await poll(hass, freezer)
    state = hass.states.get(current)
    assert state is not None
    assert state.attributes["unit_of_measurement"] == "mA"
    assert float(state.state) == pytest.approx(1030)


async def test_an_entity_is_worked_out_again_only_when_what_it_shows_moved(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    quiet_bus: SimulatedBus,  # noqa: F811
) -> None:
    """One cell that moves moves its own sensor and the pack's figures over its cells.

    A pack's entity that shows only fields of its reading is skipped while
    none of them moved; this checks that what did move, and what depends
    on more than the reading (the user's low-battery level), still shows.
    """
    entry = await setup_entry(hass, bank_entry(quiet_bus))
    registry = er.async_get(hass)
    cells = {number: f"sensor.pace_bank_pack_2_cell_{number:02d}_voltage" for number in (3, 4)}
    for entity_id in cells.values():
        registry.async_update_entity(entity_id, disabled_by=None)
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    await poll(hass, freezer)
    before = {number: hass.states.get(entity_id) for number, entity_id in cells.items()}
    assert all(state is not None for state in before.values())
    spread_before = hass.states.get("sensor.pace_bank_pack_2_cell_voltage_spread")
    assert spread_before is not None

    # Cell 3 drops by 50 mV; no other cell moves.
    pack = quiet_bus.bank.pack(2)
    offsets = list(pack.cell_offsets)
    offsets[2] -= 0.050
    pack.cell_offsets = tuple(offsets)
    quiet_bus.bank.step(0.0)
    await poll(hass, freezer)
    voltages = pack.cell_voltages
    for number, entity_id in cells.items():
        state = hass.states.get(entity_id)
        assert state is not None
        assert float(state.state) == pytest.approx(round(voltages[number - 1], 3))
    cell_3, cell_4 = hass.states.get(cells[3]), hass.states.get(cells[4])
    assert cell_3 is not None
    assert cell_4 is not None
    assert float(cell_3.state) == pytest.approx(float(before[3].state) - 0.050)  # type: ignore[union-attr]
    assert cell_4.state == before[4].state  # type: ignore[union-attr]
    spread = hass.states.get("sensor.pace_bank_pack_2_cell_voltage_spread")
    assert spread is not None
    assert float(spread.state) > float(spread_before.state)
    lowest = hass.states.get(CELL)
    assert lowest is not None
    assert float(lowest.state) == pytest.approx(round(min(voltages), 3))

    # Nothing of the pack moves, but the user's low-battery level does.
    low = "binary_sensor.pace_bank_pack_2_battery_low"
    state = hass.states.get(low)
    assert state is not None
    assert state.state == "off"
    soc = hass.states.get(SOC)
    assert soc is not None
    hass.config_entries.async_update_entry(
        entry, options={**entry.options, "battery_low_percent": float(soc.state) + 5}
    )
    await hass.async_block_till_done()
    await poll(hass, freezer)
    state = hass.states.get(low)
    assert state is not None
    assert state.state == "on"
