"""Every wire meets every fault a real line plays, in a real Home Assistant.

Each cell serves a simulated bank on one wire (Modbus TCP, raw RTU over TCP,
RTU on a pseudo-terminal, Pylon ASCII over TCP and on a pseudo-terminal,
master-polled RS485 lines read by listening (Seplos V3, JK-PB), CAN through
a socketcand daemon), sets the bank up, polls it, puts one fault on one pack's replies for two
polls, mends it and polls once more. The load changes before every poll, so
a reply that answers an earlier question (or another pack) carries values
that differ from the truth. In every cell:

- the other packs stay available (where the fault is the pack's own);
- the faulty pack is back one poll after the fault ends;
- one warning (or, when the whole bus is down, the coordinator's error)
  per outage, and one info line on each return;
- no exception escapes (no traceback logged), and neither Home Assistant
  nor asyncio logs an ERROR;
- every state Home Assistant publishes for a pack is the simulator's truth
  for that pack within the protocol's resolution;
- no callback holds the event loop for more than 50 ms of CPU.

Faults after which the sound reply still arrives in time (a noise burst in
front, junk behind, an echo of the request, a dripped reply, one missed
reply) must not make the pack unavailable at all; faults that leave no
sound reply (silence, garbage, half a frame, another pack's frame, a frame
of another function) must.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
import contextlib
from dataclasses import asdict, dataclass, field
import itertools
import logging
import time
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.util import slugify
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.rack_battery.bank.model import PackIdentity
from custom_components.rack_battery.buses import BUSES, CONF_LISTEN_ONLY
from custom_components.rack_battery.const import DOMAIN, SCAN_INTERVAL
from custom_components.rack_battery.coordinator import BankCoordinator
from custom_components.rack_battery.protocol.bus import BusRegistry
from custom_components.rack_battery.protocol.connection import ConnectionSpec, Wire
from custom_components.rack_battery.protocol.transport.factory import Transport, open_transport
from simulator import jk_pb, pace_modbus_line, pylontech_ascii, pylontech_can, seplos_v2, seplos_v3
from simulator.bank import SimBank, constant_load, make_bank
from simulator.wire_faults import CONNECTION_FAULTS, SURVIVABLE, WireFault, WireFaults

from .loop_watch import watch_the_loop
from .test_every_wire import (
    JK_PB,
    PACE_MODBUS,
    PYLONTECH_CAN,
    PYLONTECH_RS485,
    SEPLOS_V2,
    SEPLOS_V3,
    Resolution,
)

# Time moves with the freezer and goes on by itself: the stack waits on real
# sockets and pseudo-terminals.
pytestmark = pytest.mark.freeze_time(tick=True)

# How long a request waits for its reply: loopback answers in milliseconds,
# so this is generous for a busy machine and still keeps a cell short.
RESPONSE = 0.3
# A late reply comes this long after its request: after the timeout, and
# after the next request has gone out (it is held for that), so it lands in
# the next transaction.
LATE_BY = RESPONSE * 2.5
# The socketcand daemon is opened in an executor thread, and its driver
# waits this long for the bank's cycle.
CAN_OPEN = 1.0
CAN_PERIOD = 0.05
# The bank's current before each poll: every poll reads different values.
LOADS = (30.0, -25.0, 45.0, 5.0, -40.0, 20.0)
TITLE = "Matrix bank"

# Faults that leave a pack with no sound reply while they last.
LOSING = frozenset(
    {
        WireFault.SILENCE,
        WireFault.GARBAGE,
        WireFault.HALF_FRAME,
        WireFault.WRONG_ADDRESS,
        WireFault.WRONG_FUNCTION,
    }
)


@dataclass
class Served:
    """A wire being served: what the entry needs to reach it, and its faults."""

    bus: dict[str, Any]
    faults: WireFaults
    # Wait until the wire has said what it owes, and the bank its current values.
    settle: Callable[[], Awaitable[None]]


type Serve = Callable[[SimBank], contextlib.AbstractAsyncContextManager[Served]]


@dataclass(frozen=True, kw_only=True)
class WireCase:
    """One wire, the family served on it, and its pack at fault."""

    id: str
    family: str
    serve: Serve
    first_address: int
    packs: int
    polled: tuple[int, ...]
    faulty: int
    resolution: Resolution
    listen_only: bool = False
    serial: bool = False
    # Faults after which this wire cannot get the sound reply through.
    not_survivable: frozenset[WireFault] = field(default_factory=frozenset)
    # Faults that leave sound frames on this wire after all.
    still_read: frozenset[WireFault] = field(default_factory=frozenset)

    @property
    def bus_wide(self) -> frozenset[WireFault]:
        """Return the faults that take every pack with them, not just the faulty one.

        A gateway that restarts takes the whole line. A listener has one
        connection for every pack, which a reset at the faulty pack's
        reply cuts, round after round.
        """
        if self.listen_only:
            return frozenset({WireFault.RESTART, WireFault.RESET})
        return frozenset({WireFault.RESTART})

    @property
    def bank_only(self) -> bool:
        """Return whether the wire carries the bank's aggregate only (CAN)."""
        return self.polled == (0,) and self.family == "pylontech_can"


def _modbus(make_line: Callable[[SimBank], Any], way: str, *, master: Any = None) -> Serve:
    @contextlib.asynccontextmanager
    async def serve(bank: SimBank) -> AsyncIterator[Served]:
        line = make_line(bank)
        line.wire.late_by = LATE_BY
        if way == "pty":
            bus: dict[str, Any] = {
                "wire": Wire.MODBUS_RTU_SERIAL.value,
                "serial_port": line.open_pty(),
                "baudrate": 19200,
            }
        elif way == "rtu_tcp":
            host, port = await line.serve_rtu_tcp()
            bus = {"wire": Wire.MODBUS_RTU_TCP.value, "host": host, "port": port}
        else:
            host, port = await line.serve_modbus_tcp()
            bus = {"wire": Wire.MODBUS_TCP.value, "host": host, "port": port}
        if master is not None:
            line.start_master(master(bank), period=0.002)

        async def settle() -> None:
            await line.wire.settled()
            if master is not None:
                # Two whole rounds: every pack has been asked since the load changed.
                await line.wait_rounds(2)

        try:
            yield Served(bus, line.wire, settle)
        finally:
            await line.stop()

    return serve


def _ascii(module: Any, way: str) -> Serve:
    @contextlib.asynccontextmanager
    async def serve(bank: SimBank) -> AsyncIterator[Served]:
        if way == "pty":
            server = await module.start_pty(bank)
            bus: dict[str, Any] = {
                "wire": Wire.ASCII_SERIAL.value,
                "serial_port": server.path,
                "baudrate": 9600,
            }
        else:
            server = await module.start_server(bank, "127.0.0.1", 0)
            bus = {"wire": Wire.ASCII_TCP.value, "host": server.host, "port": server.port}
        wire: WireFaults = server.faults.wire
        wire.late_by = LATE_BY
        try:
            yield Served(bus, wire, wire.settled)
        finally:
            await server.stop()

    return serve


@contextlib.asynccontextmanager
async def _can(bank: SimBank) -> AsyncIterator[Served]:
    server = await pylontech_can.start_server(bank, "127.0.0.1", 0, period=CAN_PERIOD)
    server.wire.late_by = CAN_OPEN * 1.5

    async def settle() -> None:
        # Two cycles sent since the load changed, and (if late) arrived.
        await server.wait_cycles(2)
        await server.wire.settled()

    try:
        yield Served(
            {
                "wire": Wire.CAN.value,
                "can_interface": "socketcand",
                "can_channel": f"{server.host}:{server.port}/{server.channel}",
                "baudrate": 500_000,
            },
            server.wire,
            settle,
        )
    finally:
        await server.stop()


# Faults a TCP stream of Modbus TCP or socketcand text cannot resync after:
# there is no way to find a frame's start again in noise, so the connection
# is dropped and opened anew (an outage is allowed, not required).
STREAM_NOISE = frozenset({WireFault.NOISE_BURST, WireFault.JUNK_AFTER})

WIRES: tuple[WireCase, ...] = (
    WireCase(
        id="modbus_tcp",
        family="pace_modbus",
        serve=_modbus(pace_modbus_line.make_line, "modbus_tcp"),
        first_address=1,
        packs=3,
        polled=(1, 2, 3),
        faulty=2,
        resolution=PACE_MODBUS,
        not_survivable=STREAM_NOISE,
    ),
    WireCase(
        id="rtu_tcp",
        family="jk_pb",
        serve=_modbus(jk_pb.make_line, "rtu_tcp"),
        first_address=1,
        packs=3,
        polled=(1, 2, 3),
        faulty=2,
        resolution=JK_PB,
    ),
    WireCase(
        id="rtu_pty",
        family="pace_modbus",
        serve=_modbus(pace_modbus_line.make_line, "pty"),
        first_address=1,
        packs=3,
        polled=(1, 2, 3),
        faulty=2,
        resolution=PACE_MODBUS,
        serial=True,
    ),
    WireCase(
        id="ascii_tcp",
        family="pylontech_rs485",
        serve=_ascii(pylontech_ascii, "tcp"),
        first_address=2,
        packs=3,
        polled=(2, 3, 4),
        faulty=3,
        resolution=PYLONTECH_RS485,
    ),
    WireCase(
        id="ascii_pty",
        family="seplos_v2",
        serve=_ascii(seplos_v2, "pty"),
        first_address=1,
        packs=3,
        polled=(1, 2, 3),
        faulty=2,
        resolution=SEPLOS_V2,
        serial=True,
    ),
    WireCase(
        # The master (unit 0) polls packs 1 and 2; Home Assistant only listens.
        id="listen_seplos",
        family="seplos_v3",
        serve=_modbus(seplos_v3.make_line, "rtu_tcp", master=seplos_v3.master_polls),
        first_address=0,
        packs=3,
        polled=(1, 2),
        faulty=1,
        resolution=SEPLOS_V3,
        listen_only=True,
    ),
    WireCase(
        # A JK-PB master at DIP 0 triggers each pack with a write; each answers
        # with its 300-byte 55AA frame. Home Assistant only listens.
        id="listen_jk",
        family="jk_pb",
        serve=_modbus(jk_pb.make_line, "rtu_tcp", master=jk_pb.master_polls),
        first_address=0,
        packs=3,
        polled=(0, 1, 2),
        faulty=1,
        resolution=JK_PB,
        listen_only=True,
    ),
    WireCase(
        id="can",
        family="pylontech_can",
        serve=_can,
        first_address=0,
        packs=4,
        polled=(0,),
        faulty=0,
        resolution=PYLONTECH_CAN,
        not_survivable=STREAM_NOISE,
        # The first half of a cycle is whole frames: 0x351, 0x355 and 0x356.
        still_read=frozenset({WireFault.HALF_FRAME}),
    ),
)


def _cells() -> list[Any]:
    cells = []
    for case in WIRES:
        for fault in WireFault:
            if case.serial and fault in CONNECTION_FAULTS:
                continue  # a serial line has no connection to reset, no port to restart
            cells.append(pytest.param(case, fault, id=f"{case.id}-{fault.value}"))
    return cells


@pytest.fixture
def quick_buses(hass: HomeAssistant) -> None:
    """Give the integration a bus registry whose requests wait RESPONSE, not a second."""

    def opener(spec: ConnectionSpec) -> Transport:
        return open_transport(spec, timeout=CAN_OPEN if spec.wire is Wire.CAN else RESPONSE)

    hass.data[BUSES] = BusRegistry(timeout=RESPONSE, opener=opener)


def _truth(case: WireCase, bank: SimBank) -> dict[int, dict[str, float]]:
    """Return what each polled pack's voltage, current and SoC sensors must show."""
    if case.bank_only:
        packs = bank.packs
        full = sum(pack.full_capacity for pack in packs)
        return {
            0: {
                "voltage": sum(pack.voltage for pack in packs) / len(packs),
                "current": sum(pack.current for pack in packs),
                "state_of_charge": 100 * sum(p.remaining_capacity for p in packs) / full,
            }
        }
    return {
        pack.address: {
            "voltage": pack.voltage,
            "current": pack.current,
            "state_of_charge": pack.soc * 100,
        }
        for pack in bank.packs
        if pack.address in case.polled
    }


def _tolerance(resolution: Resolution, key: str) -> float:
    return {
        "voltage": resolution.voltage,
        "current": resolution.current,
        "state_of_charge": resolution.soc,
    }[key]


@dataclass
class Published:
    """Every state Home Assistant published for the packs, checked as it came."""

    wrong: list[str] = field(default_factory=list)
    checked: int = 0


def _entity(address: int, key: str) -> str:
    return f"sensor.{slugify(TITLE)}_pack_{address}_{key}"


def _available(hass: HomeAssistant, address: int) -> bool:
    state = hass.states.get(_entity(address, "voltage"))
    assert state is not None
    return state.state != STATE_UNAVAILABLE


async def _poll(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    coordinator: BankCoordinator,
    *,
    bank: SimBank,
    served: Served,
    load: float,
) -> None:
    """Change the load, let the wire settle, and have the bank polled at its interval."""
    bank.load = constant_load(load)
    bank.step(0.0)
    await served.settle()
    freezer.tick(SCAN_INTERVAL)
    # One poll, by hand: a timer's poll as well would make two, and an outage
    # of one of them could come and go unseen between two looks.
    await coordinator.async_refresh()
    await hass.async_block_till_done()


def _count(records: list[logging.LogRecord], text: str, *, level: int | None = None) -> int:
    return sum(
        1
        for record in records
        if text in record.getMessage() and (level is None or record.levelno == level)
    )


@pytest.mark.usefixtures("quick_buses")
@pytest.mark.parametrize(("case", "fault"), _cells())
async def test_wire_survives_fault(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
    case: WireCase,
    fault: WireFault,
) -> None:
    """The bank rides out the fault: the truth or unavailable, never a stale or foreign value."""
    caplog.set_level(logging.INFO)
    bank = make_bank(
        case.packs, first_address=case.first_address, seed=5, aged=[1], load=constant_load(20)
    )
    bank.step(600)
    async with case.serve(bank) as served:
        entry = MockConfigEntry(
            domain=DOMAIN,
            title=TITLE,
            unique_id=f"matrix#{case.id}",
            data={
                **served.bus,
                "family": case.family,
                "packs": [
                    asdict(PackIdentity(address=address, family=case.family))
                    for address in case.polled
                ],
                **({CONF_LISTEN_ONLY: True} if case.listen_only else {}),
            },
        )
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        coordinator: BankCoordinator = entry.runtime_data.coordinator

        published = Published()
        by_entity = {
            _entity(address, key): (address, key)
            for address in case.polled
            for key in ("voltage", "current", "state_of_charge")
        }

        @callback
        def check(event: Event[EventStateChangedData]) -> None:
            where = by_entity.get(event.data["entity_id"])
            state = event.data["new_state"]
            if where is None or state is None:
                return
            if state.state in (STATE_UNAVAILABLE, STATE_UNKNOWN):
                return
            address, key = where
            expected = _truth(case, bank)[address][key]
            published.checked += 1
            if abs(float(state.state) - expected) > _tolerance(case.resolution, key) + 1e-9:
                published.wrong.append(f"{event.data['entity_id']}={state.state}, truth {expected}")

        unsubscribe = hass.bus.async_listen("state_changed", check)
        others = [address for address in case.polled if address != case.faulty]
        faulty_up: list[bool] = []
        bank_up: list[bool] = []
        loads = iter(LOADS)

        async def poll() -> None:
            await _poll(hass, freezer, coordinator, bank=bank, served=served, load=next(loads))
            bank_up.append(coordinator.last_update_success)
            faulty_up.append(_available(hass, case.faulty))

        # Home Assistant's first store write in a process sets up its JSON
        # encoder: done once here, not counted against the wire.
        await coordinator.store.async_save(coordinator.stored_data())
        with watch_the_loop() as loop_watch:
            caplog.clear()
            await poll()
            assert faulty_up == [True], "the bank does not read before any fault"

            served.faults.inject(case.faulty, fault)
            for _ in range(2):
                await poll()
                if fault not in case.bus_wide:
                    for address in others:
                        assert _available(hass, address), (
                            f"pack {address} lost to a fault of another"
                        )
            served.faults.mend()
            await poll()
            assert faulty_up[-1], f"pack {case.faulty} not back one poll after the fault ended"
            assert bank_up[-1]
            # One more, with nothing left in flight from the fault.
            await poll()
            assert faulty_up[-1]
        unsubscribe()
        records = list(caplog.records)

        # What a user would notice during the fault.
        if fault in SURVIVABLE and fault not in case.not_survivable:
            assert all(faulty_up), f"a {fault} made the pack unavailable: {faulty_up}"
        if fault in LOSING - case.still_read:
            assert not faulty_up[2], f"a pack with no sound reply ({fault}) is shown available"

        # One line per outage and one per return.
        pack_outages = sum(
            1
            for before, after, up in zip(faulty_up, faulty_up[1:], bank_up[1:], strict=False)
            if before and not after and up
        )
        bank_outages = sum(
            1 for before, after in itertools.pairwise(bank_up) if before and not after
        )
        ours = [r for r in records if r.name.startswith("custom_components.rack_battery")]
        complaints = [r for r in ours if r.levelno >= logging.WARNING]
        assert _count(ours, f"pack {case.faulty} did not answer", level=logging.WARNING) == (
            pack_outages
        ), ([r.getMessage() for r in complaints], faulty_up, bank_up)
        assert _count(ours, f"pack {case.faulty} is answering again", level=logging.INFO) == (
            pack_outages
        )
        assert len(complaints) == pack_outages + bank_outages, [r.getMessage() for r in complaints]
        assert _count(ours, "recovered", level=logging.INFO) == bank_outages

        # Nothing escaped: no traceback logged anywhere, no ERROR from Home
        # Assistant or asyncio. (What client libraries say of a bad line at
        # their own ERROR level, pymodbus and python-can do, is theirs.)
        escaped = [
            f"{r.name}: {r.getMessage()}"
            for r in records
            if r.exc_info is not None
            or (r.levelno >= logging.ERROR and r.name.split(".")[0] in ("asyncio", "homeassistant"))
        ]
        assert not escaped, escaped
        # asyncio's own slow-callback warning ("Executing ... took") times
        # the wall clock, which the freezer moves: the CPU watch below stands
        # in for it. Anything else asyncio says is a fault of ours.
        assert not [
            r.getMessage()
            for r in records
            if r.name == "asyncio"
            and r.levelno >= logging.WARNING
            and not r.getMessage().startswith("Executing ")
        ]

        assert not published.wrong, published.wrong
        assert published.checked > 0
        loop_watch.assert_never_blocked()

        assert await hass.config_entries.async_unload(entry.entry_id)


async def test_the_loop_watch_names_a_callback_that_holds_the_loop() -> None:
    """The watch the matrix relies on does see a callback that burns the CPU."""

    def hog() -> None:
        end = time.thread_time() + 0.08
        while time.thread_time() < end:
            pass

    with watch_the_loop() as watch:
        asyncio.get_running_loop().call_soon(hog)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    assert watch.callbacks > 0
    assert [what for _, what in watch.offenders if "hog" in what]
    with pytest.raises(AssertionError, match="hog"):
        watch.assert_never_blocked()
