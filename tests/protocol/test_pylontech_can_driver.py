"""The Pylontech CAN driver listening to the simulated master through real python-can buses.

Three ways in: python-can's in-process ``virtual`` bus; python-can's
``socketcand`` interface against the simulator's socketcand daemon on
loopback TCP; and the same daemon in a process of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
from pathlib import Path
import sys
import uuid

import pytest

from custom_components.rack_battery.bank.model import PackReading
from custom_components.rack_battery.protocol.catalog import open_driver
from custom_components.rack_battery.protocol.connection import ConnectionSpec, Wire
from custom_components.rack_battery.protocol.drivers.pylontech_can import PylontechCanDriver
from custom_components.rack_battery.protocol.errors import (
    BusUnavailable,
    FrameError,
    PackNotResponding,
)
from simulator.bank import SimBank, constant_load, make_bank
from simulator.pylontech_can import Faults, RunningCan, RunningServer, start_server, start_virtual

pytestmark = pytest.mark.usefixtures("socket_enabled")

REPOSITORY = Path(__file__).resolve().parents[2]
# The simulator cycles fast so the tests do not wait out real seconds; the
# silence window is short for the same reason, yet 75 cycles long, so a
# machine busy with other work still hears a frame within it.
PERIOD = 0.02
WINDOW = 1.5


@pytest.fixture
def bank() -> SimBank:
    # Four 100 Ah packs under a 40 A load, the last one some years older.
    return make_bank(4, load=constant_load(40.0), aged=[3])


@pytest.fixture
def channel() -> str:
    # Virtual buses of the same name talk to each other across tests.
    return f"bank-{uuid.uuid4().hex}"


@pytest.fixture
async def master(bank: SimBank, channel: str) -> AsyncIterator[RunningCan]:
    running = await start_virtual(bank, channel, period=PERIOD)
    yield running
    await running.stop()


@pytest.fixture
async def driver(channel: str) -> AsyncIterator[PylontechCanDriver]:
    listener = PylontechCanDriver.over_can("virtual", channel, window=WINDOW)
    yield listener
    await listener.close()


def assert_reads_like_the_bank(reading: PackReading, bank: SimBank) -> None:
    """Check the aggregate against the packs, within the protocol's resolution."""
    packs = bank.packs
    voltage = sum(pack.voltage for pack in packs) / len(packs)
    current = sum(pack.current for pack in packs)
    soc = 100 * sum(p.remaining_capacity for p in packs) / sum(p.full_capacity for p in packs)
    soh = sum(pack.soh for pack in packs) / len(packs)
    cells = [sum(p.cell_temperatures) / len(p.cell_temperatures) for p in packs]
    assert reading.address == 0
    assert reading.voltage == pytest.approx(voltage, abs=0.005 + 1e-9)  # 10 mV
    assert reading.current == pytest.approx(current, abs=0.05 + 1e-9)  # 100 mA
    assert reading.current is not None
    assert reading.current < 0  # the bank is discharging into the load
    assert reading.soc == pytest.approx(soc, abs=0.5 + 1e-9)  # 1 %
    assert reading.soh == pytest.approx(soh, abs=0.5 + 1e-9)
    assert reading.temperatures == pytest.approx((sum(cells) / len(cells),), abs=0.05 + 1e-9)
    design = sum(pack.design_capacity for pack in packs)
    assert reading.charge_current_limit == pytest.approx(0.5 * design)
    assert reading.discharge_current_limit == pytest.approx(design)  # positive, as a magnitude
    assert reading.charge_voltage_limit == pytest.approx(53.2)
    assert reading.discharge_voltage_limit == pytest.approx(45.0)


@pytest.mark.usefixtures("master")
async def test_the_bank_reads_like_the_simulated_packs(
    bank: SimBank, driver: PylontechCanDriver
) -> None:
    reading = await driver.read_pack(0)
    assert_reads_like_the_bank(reading, bank)
    assert reading.charge_enabled is True
    assert reading.discharge_enabled is True
    assert driver.protocol_version == "1.2"


@pytest.mark.usefixtures("master")
async def test_identity_names_the_maker_and_the_module_count(driver: PylontechCanDriver) -> None:
    found = await driver.scan()
    assert [identity.address for identity in found] == [0]
    assert found[0].manufacturer == "PYLON"
    assert found[0].model == "Bank (4 modules, CAN protocol V1.2)"


async def test_a_pack_off_the_bus_leaves_the_module_count(
    bank: SimBank, channel: str, driver: PylontechCanDriver
) -> None:
    bank.take_off_bus(bank.packs[1].address)
    running = await start_virtual(bank, channel, period=PERIOD)
    try:
        _, info = await driver.read_bank()
    finally:
        await running.stop()
    assert info.module_count == 3


async def test_protocol_v13_is_told_apart(bank: SimBank, channel: str) -> None:
    running = await start_virtual(bank, channel, period=PERIOD, version="1.3")
    driver = PylontechCanDriver.over_can("virtual", channel, window=WINDOW)
    try:
        reading, info = await driver.read_bank()
    finally:
        await driver.close()
        await running.stop()
    assert_reads_like_the_bank(reading, bank)
    assert info.protocol_version == "1.3"
    assert info.chemistry == "LI"
    assert reading.full_capacity == pytest.approx(sum(p.full_capacity for p in bank.packs), abs=0.5)
    # No 0x35C in V1.3: whether the FETs conduct is not said.
    assert reading.charge_enabled is None


async def test_alarms_and_a_hot_pack_reach_the_reading(bank: SimBank, channel: str) -> None:
    # 0x359 byte 0 bit 7: discharge over current (a protection);
    # byte 3 bit 2 (bit 10 of the alarm word): not in the table, ignored.
    faults = Faults(protection_bits=1 << 7, alarm_bits=1 << 10)
    running = await start_virtual(bank, channel, period=PERIOD, faults=faults)
    try:
        reading = await read_once(channel)
        assert reading.protections == {"discharge_overcurrent"}
        assert reading.warnings == frozenset()
        # One module past 60 degC: the master raises the cell temperature
        # alarm and protection for the bank, whatever the others say.
        bank.packs[2].temperature = 75.0
        reading = await read_once(channel)
        assert reading.warnings == {"charge_overtemperature", "discharge_overtemperature"}
        assert reading.protections == {
            "discharge_overcurrent",
            "charge_overtemperature",
            "discharge_overtemperature",
        }
    finally:
        await running.stop()


async def read_once(channel: str) -> PackReading:
    """Read with a new listener, which waits for a whole cycle sent from now on."""
    driver = PylontechCanDriver.over_can("virtual", channel, window=WINDOW)
    try:
        return await driver.read_pack(0)
    finally:
        await driver.close()


async def test_a_silent_bank_is_not_responding_and_comes_back(
    master: RunningCan, driver: PylontechCanDriver
) -> None:
    await driver.read_pack(0)
    master.faults.silent = True
    # Frames already on their way (at most the rest of two cycles of seven)
    # are still read, each read taking at least one; the read after them
    # waits out the window without a new frame and finds the bank silent.
    for _ in range(15):
        try:
            await driver.read_pack(0)
        except PackNotResponding:
            break
    else:
        pytest.fail("a bank that stopped sending still reads as responding")
    # A poll in which the only "pack" is silent is a dead bus.
    with pytest.raises(BusUnavailable):
        await driver.poll([0])
    master.faults.silent = False
    report = await driver.poll([0])
    assert list(report.readings) == [0]
    assert report.failed == {}


async def test_a_malformed_frame_fails_the_reading_not_the_bus(
    master: RunningCan, driver: PylontechCanDriver
) -> None:
    master.faults.replace[0x356] = bytes(3)
    # Fresh frames are in, but one of them is cut short. A first read whose
    # window closed before that frame came (the listener still starting on
    # a busy machine) reads without it; the next one has it.
    failure: FrameError | None = None
    for _ in range(3):
        try:
            await driver.read_pack(0)
        except FrameError as err:
            failure = err
            break
    assert failure is not None, "a cut-short 0x356 frame was read as if it were whole"
    assert "0x356" in str(failure)


@pytest.mark.usefixtures("master")
async def test_the_bank_is_the_only_address(driver: PylontechCanDriver) -> None:
    with pytest.raises(PackNotResponding):
        await driver.read_pack(2)


@pytest.mark.parametrize(
    ("interface", "channel"),
    [
        ("socketcan", "rackbank-none0"),  # no such interface (or no CAN in this kernel)
        ("slcan", "/dev/rack-battery-no-such-adapter"),  # no USB adapter there
        ("no-such-interface", "x"),
    ],
)
async def test_an_interface_that_cannot_be_opened_is_bus_unavailable(
    interface: str, channel: str
) -> None:
    driver = PylontechCanDriver.over_can(interface, channel, window=WINDOW)
    with pytest.raises(BusUnavailable):
        await driver.connect()
    await driver.close()


async def test_the_catalog_opens_the_family_on_a_can_spec(
    bank: SimBank, master: RunningCan, channel: str
) -> None:
    spec = ConnectionSpec(wire=Wire.CAN, can_interface="virtual", can_channel=channel)
    driver = open_driver(spec, "pylontech_can")
    try:
        await driver.connect()
        assert_reads_like_the_bank(await driver.read_pack(0), bank)
    finally:
        await driver.close()


# ---------------------------------------------------------------------------
# python-can's socketcand interface against the simulator's daemon


@pytest.fixture
async def daemon(bank: SimBank) -> AsyncIterator[RunningServer]:
    running = await start_server(bank, period=PERIOD)
    yield running
    await running.stop()


async def test_socketcand_reads_the_bank_and_transmits_nothing(
    bank: SimBank, daemon: RunningServer
) -> None:
    driver = PylontechCanDriver.over_can(
        "socketcand", f"{daemon.host}:{daemon.port}", window=WINDOW
    )
    try:
        for _ in range(3):
            assert_reads_like_the_bank(await driver.read_pack(0), bank)
        identity = await driver.read_identity(0)
    finally:
        await driver.close()
    assert identity.manufacturer == "PYLON"
    # A listener: not one frame went onto the bus.
    assert daemon.received == []


async def test_socketcand_keep_alive_only_when_asked(daemon: RunningServer) -> None:
    driver = PylontechCanDriver.over_can(
        "socketcand", f"{daemon.host}:{daemon.port}/can0", window=WINDOW, keep_alive=True
    )
    try:
        await driver.read_pack(0)
        sent = await asyncio.wait_for(daemon.wait_for_received(1), timeout=5)
    finally:
        await driver.close()
    # 0x305 with eight zero bytes, as the document has the inverter send it.
    assert sent[0] == (0x305, bytes(8))


async def test_socketcand_daemon_gone_is_a_dead_bus(bank: SimBank, daemon: RunningServer) -> None:
    driver = PylontechCanDriver.over_can(
        "socketcand", f"{daemon.host}:{daemon.port}", window=WINDOW
    )
    try:
        await driver.read_pack(0)
        await daemon.stop()
        # Frames that arrived while the daemon was stopping may still make
        # one reading; after that the frames stop: first the bank is silent,
        # then the daemon's port refuses, and the bus is down.
        with contextlib.suppress(PackNotResponding, BusUnavailable):
            await driver.read_pack(0)
        with pytest.raises((PackNotResponding, BusUnavailable)):
            await driver.read_pack(0)
        with pytest.raises(BusUnavailable):
            await driver.read_pack(0)
    finally:
        await driver.close()


async def test_socketcand_unknown_remote_interface_is_bus_unavailable(
    daemon: RunningServer,
) -> None:
    driver = PylontechCanDriver.over_can(
        "socketcand", f"{daemon.host}:{daemon.port}/can7", window=WINDOW
    )
    with pytest.raises(BusUnavailable):
        await driver.connect()
    await driver.close()


async def test_socketcand_daemon_in_another_process() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulator.pylontech_can",
        "0",
        "1.3",
        str(PERIOD),
        cwd=REPOSITORY,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        port = int(await asyncio.wait_for(process.stdout.readline(), timeout=30))
        driver = PylontechCanDriver.over_can("socketcand", f"127.0.0.1:{port}", window=WINDOW)
        try:
            reading, info = await driver.read_bank()
        finally:
            await driver.close()
    finally:
        process.terminate()
        await process.wait()
    # The same four packs the daemon built, at rest.
    assert_at_rest = make_bank(4)
    voltage = sum(pack.voltage for pack in assert_at_rest.packs) / 4
    assert reading.voltage == pytest.approx(voltage, abs=0.005 + 1e-9)
    assert reading.current == pytest.approx(0.0, abs=0.05)
    assert info.protocol_version == "1.3"


async def test_a_bank_voltage_of_0_v_is_unknown_and_counted_suspect(
    bank: SimBank, master: RunningCan, driver: PylontechCanDriver
) -> None:
    # 0x356: voltage 0 (s16, 10 mV), current +10.0 A (0x0064 in 100 mA),
    # temperature 25.0 degC (0x00FA in 0.1 degC), little-endian.
    master.faults.replace[0x356] = bytes.fromhex("00006400FA00")
    report = await driver.poll([0])
    reading = report.readings[0]
    assert reading.voltage is None
    assert reading.current == pytest.approx(10.0)
    assert reading.temperatures == (25.0,)
    assert driver.transport.stats.pack(0).suspect == 1
    assert reading.soc == pytest.approx(
        100
        * sum(p.remaining_capacity for p in bank.packs)
        / sum(p.full_capacity for p in bank.packs),
        abs=1.0,
    )
