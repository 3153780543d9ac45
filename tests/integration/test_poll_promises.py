"""What the README promises about a poll, seen happen in a real Home Assistant.

- Home Assistant's own timers poll the bank every ten seconds and rescan its
  bus every four hours: no test here calls a refresh by hand.
- A pack that misses one reply is asked once more within the same poll, and
  its value arrives in that poll: it is never shown unavailable.
- "Detect automatically" passes over the families that do not answer, on
  every wire where more than one family speaks, and finds the one that does.
- Two families on one line (a PACE bank and a JK-PB bank behind one gateway)
  are polled together, each showing its own packs' values.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
import contextlib
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import SOURCE_USER
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.data_entry_flow import FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.rack_battery.bank.model import PackIdentity
from custom_components.rack_battery.buses import BUSES
from custom_components.rack_battery.const import DOMAIN
from custom_components.rack_battery.protocol.bus import BusRegistry
from custom_components.rack_battery.protocol.catalog import families_on
from custom_components.rack_battery.protocol.connection import Wire
from simulator import jk_pb, pace_modbus_line, seplos_v2
from simulator.bank import SimBank, constant_load, make_bank
from simulator.modbus_line import ModbusLine
from simulator.wire_faults import WireFault

from .conftest import finish_scan

pytestmark = pytest.mark.freeze_time(tick=True)

# What the README promises: a poll every ten seconds, a rescan every four
# hours. Written out here, not taken from the code, so that a change to
# either in the code fails this test.
POLL_EVERY = timedelta(seconds=10)
RESCAN_EVERY = timedelta(hours=4)
# Generous for a busy machine; loopback answers in milliseconds.
RESPONSE = 0.3


@pytest.fixture
def quick_buses(hass: HomeAssistant) -> None:
    """Give the integration a bus registry whose requests wait RESPONSE, not a second."""
    hass.data[BUSES] = BusRegistry(timeout=RESPONSE)


def _entry(title: str, family: str, bus: dict[str, Any], addresses: list[int]) -> MockConfigEntry:
    return MockConfigEntry(
        domain=DOMAIN,
        title=title,
        unique_id=f"{title}#{family}",
        data={
            **bus,
            "family": family,
            "packs": [asdict(PackIdentity(address=a, family=family)) for a in addresses],
        },
    )


async def _set_up(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()


def _current(hass: HomeAssistant, entity_id: str) -> float:
    state = hass.states.get(entity_id)
    assert state is not None, entity_id
    assert state.state != STATE_UNAVAILABLE, entity_id
    return float(state.state)


async def _let_time_pass(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, delta: timedelta
) -> None:
    """Move the clock and let Home Assistant's timers do what falls due; no refresh by hand."""
    freezer.tick(delta)
    async_fire_time_changed(hass)
    await hass.async_block_till_done(wait_background_tasks=True)


@contextlib.asynccontextmanager
async def _pace_gateway(bank: SimBank) -> AsyncIterator[tuple[ModbusLine, dict[str, Any]]]:
    """A PACE bank behind a Modbus TCP gateway, played at the byte level."""
    line = pace_modbus_line.make_line(bank)
    host, port = await line.serve_modbus_tcp()
    try:
        yield line, {"wire": Wire.MODBUS_TCP.value, "host": host, "port": port}
    finally:
        await line.stop()


@pytest.mark.usefixtures("quick_buses")
async def test_home_assistant_polls_every_ten_seconds_and_rescans_every_four_hours(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    """The coordinator's interval and the rescan timer run by themselves, on time."""
    bank = make_bank(4, first_address=1, seed=3, load=constant_load(20))
    async with _pace_gateway(bank) as (_, bus):
        # Three of the four packs: the fourth is there to be found by the rescan.
        await _set_up(hass, _entry("PACE bank", "pace_modbus", bus, [1, 2, 3]))
        current = "sensor.pace_bank_pack_1_current"
        before = _current(hass, current)

        # The load changes; nothing shows it until the next poll is due.
        bank.load = constant_load(-40)
        bank.step(0.0)
        truth = bank.pack(1).current
        assert abs(truth - before) > 1
        await _let_time_pass(hass, freezer, POLL_EVERY - timedelta(seconds=2))
        assert _current(hass, current) == pytest.approx(before, abs=0.01)
        await _let_time_pass(hass, freezer, timedelta(seconds=2.6))
        assert _current(hass, current) == pytest.approx(truth, abs=0.01)

        # And again one interval later: the timer was scheduled anew.
        bank.load = constant_load(35)
        bank.step(0.0)
        truth = bank.pack(1).current
        await _let_time_pass(hass, freezer, POLL_EVERY)
        assert _current(hass, current) == pytest.approx(truth, abs=0.01)

        # The rescan: nothing offered before four hours, pack 4 offered after.
        elapsed = POLL_EVERY * 2 + timedelta(seconds=0.6)
        almost = RESCAN_EVERY - timedelta(minutes=1)
        while elapsed < almost:
            step = min(timedelta(minutes=30), almost - elapsed)
            await _let_time_pass(hass, freezer, step)
            elapsed += step
        assert not hass.config_entries.flow.async_progress_by_handler(DOMAIN)
        await _let_time_pass(hass, freezer, RESCAN_EVERY - elapsed + timedelta(seconds=1))
        offers = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
        assert [offer["context"]["title_placeholders"]["address"] for offer in offers] == ["4"]


@pytest.mark.usefixtures("quick_buses")
async def test_a_pack_that_misses_one_reply_is_read_in_the_same_poll(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    """One more try within the poll: the value arrives, the pack never goes unavailable."""
    bank = make_bank(3, first_address=1, seed=4, load=constant_load(20))
    async with _pace_gateway(bank) as (line, bus):
        await _set_up(hass, _entry("PACE bank", "pace_modbus", bus, [1, 2, 3]))
        seen: list[str] = []

        @callback
        def record(event: Event[EventStateChangedData]) -> None:
            if event.data["entity_id"].startswith("sensor.pace_bank_pack_2_") and (
                state := event.data["new_state"]
            ):
                seen.append(state.state)

        unsubscribe = hass.bus.async_listen("state_changed", record)
        bank.load = constant_load(-30)
        bank.step(0.0)
        truth = bank.pack(2).current
        line.wire.inject(2, WireFault.ONE_SHOT)
        await _let_time_pass(hass, freezer, POLL_EVERY + timedelta(seconds=0.6))
        unsubscribe()

        assert line.wire.spoiled == {2: 1}, "the pack did not miss a reply"
        assert WireFault.ONE_SHOT not in line.wire.packs.values()
        assert STATE_UNAVAILABLE not in seen
        assert _current(hass, "sensor.pace_bank_pack_2_current") == pytest.approx(truth, abs=0.01)


# --- detect automatically ----------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Hidden:
    """A bank of a family that is not the first its wire's menu tries."""

    wire: Wire
    family: str
    serve: Callable[[SimBank], contextlib.AbstractAsyncContextManager[dict[str, Any]]]
    first_address: int = 1


def _jk_line(way: Wire) -> Callable[[SimBank], contextlib.AbstractAsyncContextManager[Any]]:
    @contextlib.asynccontextmanager
    async def serve(bank: SimBank) -> AsyncIterator[dict[str, Any]]:
        line = jk_pb.make_line(bank)
        try:
            if way is Wire.MODBUS_RTU_SERIAL:
                yield {"serial_port": line.open_pty(), "baudrate": "115200"}
            elif way is Wire.MODBUS_RTU_TCP:
                host, port = await line.serve_rtu_tcp()
                yield {"host": host, "port": port}
            else:
                host, port = await line.serve_modbus_tcp()
                yield {"host": host, "port": port}
        finally:
            await line.stop()

    return serve


def _seplos_v2(way: Wire) -> Callable[[SimBank], contextlib.AbstractAsyncContextManager[Any]]:
    @contextlib.asynccontextmanager
    async def serve(bank: SimBank) -> AsyncIterator[dict[str, Any]]:
        if way is Wire.ASCII_SERIAL:
            server: Any = await seplos_v2.start_pty(bank)
            fields: dict[str, Any] = {"serial_port": server.path, "baudrate": "9600"}
        else:
            server = await seplos_v2.start_server(bank, "127.0.0.1", 0)
            fields = {"host": server.host, "port": server.port}
        try:
            yield fields
        finally:
            await server.stop()

    return serve


HIDDEN = (
    *(
        Hidden(wire=wire, family="jk_pb", serve=_jk_line(wire))
        for wire in (Wire.MODBUS_TCP, Wire.MODBUS_RTU_TCP, Wire.MODBUS_RTU_SERIAL)
    ),
    *(
        Hidden(wire=wire, family="seplos_v2", serve=_seplos_v2(wire))
        for wire in (Wire.ASCII_TCP, Wire.ASCII_SERIAL)
    ),
)


def test_every_wire_with_a_choice_has_a_hidden_bank() -> None:
    """Each wire where more than one family speaks is tried, with a family not tried first."""
    assert sorted(case.wire for case in HIDDEN) == sorted(
        wire for wire in Wire if len(families_on(wire)) > 1
    )
    for case in HIDDEN:
        assert [family.key for family in families_on(case.wire)].index(case.family) > 0


@pytest.mark.usefixtures("quick_buses")
@pytest.mark.parametrize("case", HIDDEN, ids=[case.wire.value for case in HIDDEN])
async def test_detect_automatically_passes_over_families_that_do_not_answer(
    hass: HomeAssistant, case: Hidden
) -> None:
    """The families tried first find nobody; the one that answers is found and offered."""
    bank = make_bank(2, first_address=case.first_address, seed=6)
    async with case.serve(bank) as fields:
        result: Any = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_USER}
        )
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"next_step_id": case.wire.value}
        )
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {**fields, "family": "auto"}
        )
        assert result.get("errors") in (None, {}), result
        result = await finish_scan(hass, result)
        assert result["step_id"] == "confirm", result
        assert result["description_placeholders"]["count"] == "2"
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"packs": [str(pack.address) for pack in bank.packs]}
        )
        await hass.async_block_till_done()
        assert result["type"] is FlowResultType.CREATE_ENTRY
        assert result["data"]["family"] == case.family
        assert await hass.config_entries.async_unload(result["result"].entry_id)


# --- two families on one line -------------------------------------------------


class _TwoBanks:
    """One RS485 line with a PACE bank at units 1-2 and a JK-PB bank at units 3-4."""

    def __init__(self, pace: SimBank, jk: SimBank) -> None:
        self._pace = pace_modbus_line.PaceModbusPacks(pace)
        self._jk = jk_pb.JkPbPacks(jk)
        self._jk_units = {pack.address for pack in jk.packs}

    def read(
        self, unit: int, function: int, address: int, count: int
    ) -> list[int] | list[bool] | int | None:
        """Let the pack at ``unit`` answer, whichever bank it belongs to."""
        packs = self._jk if unit in self._jk_units else self._pace
        return packs.read(unit, function, address, count)


@pytest.mark.usefixtures("quick_buses")
async def test_two_families_on_one_line_are_polled_together(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    """Both banks behind one gateway are polled by the timers, each with its own values."""
    pace = make_bank(2, first_address=1, seed=8, load=constant_load(20))
    jk = make_bank(2, first_address=3, seed=9, load=constant_load(-15))
    line = ModbusLine(_TwoBanks(pace, jk))
    host, port = await line.serve_rtu_tcp()
    bus = {"wire": Wire.MODBUS_RTU_TCP.value, "host": host, "port": port}
    try:
        pace_entry = _entry("PACE bank", "pace_modbus", bus, [1, 2])
        jk_entry = _entry("JK bank", "jk_pb", bus, [3, 4])
        await _set_up(hass, pace_entry)
        await _set_up(hass, jk_entry)
        shared = pace_entry.runtime_data.coordinator.bus
        assert jk_entry.runtime_data.coordinator.bus is shared

        pace.load = constant_load(-25)
        pace.step(0.0)
        jk.load = constant_load(40)
        jk.step(0.0)
        await _let_time_pass(hass, freezer, POLL_EVERY + timedelta(seconds=0.6))
        for bank, title in ((pace, "pace_bank"), (jk, "jk_bank")):
            for pack in bank.packs:
                prefix = f"sensor.{title}_pack_{pack.address}"
                assert _current(hass, f"{prefix}_current") == pytest.approx(pack.current, abs=0.01)
                assert _current(hass, f"{prefix}_voltage") == pytest.approx(pack.voltage, abs=0.01)
        for entry in (pace_entry, jk_entry):
            assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await line.stop()
