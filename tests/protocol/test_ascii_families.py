"""Pylontech, PACE and Seplos V2 drivers against the simulated line, over TCP and a pty.

Each family is served by its simulator personality on real loopback TCP (a
transparent gateway) and on a real pseudo-terminal pair (a USB RS485
adapter: the driver opens the tty by name). The fault hooks break the line
the way real ones break, and each fault must fail its own pack with the
right error while the other packs keep reading.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
import errno
import os

import pytest

from custom_components.rack_battery.bank.model import PackReading
from custom_components.rack_battery.protocol import alarms as a
from custom_components.rack_battery.protocol.cadence import SLOW_READ_INTERVAL, SlowReads
from custom_components.rack_battery.protocol.catalog import open_driver
from custom_components.rack_battery.protocol.connection import ConnectionSpec, Wire
from custom_components.rack_battery.protocol.drivers.pace_ascii import PaceAsciiDriver
from custom_components.rack_battery.protocol.drivers.pylon_ascii import PylonAsciiDriver
from custom_components.rack_battery.protocol.drivers.pylontech_rs485 import PylontechRs485Driver
from custom_components.rack_battery.protocol.drivers.seplos_v2 import SeplosV2Driver
from custom_components.rack_battery.protocol.errors import (
    BusUnavailable,
    FrameError,
    PackNotResponding,
    SerialPortBusy,
    SerialPortDenied,
    SerialPortMissing,
    serial_open_error,
)
from custom_components.rack_battery.protocol.transport.ascii_serial import AsciiSerialTransport
from simulator import pace_ascii, pylontech_ascii, seplos_v2
from simulator.bank import SimBank, SimPack, constant_load, make_bank
from simulator.faults import HotPack
from simulator.pylon_line import Fault, LineFaults

pytestmark = pytest.mark.usefixtures("socket_enabled")

TIMEOUT = 0.3  # short, so silence does not slow the suite


@dataclass(frozen=True)
class Family:
    name: str
    driver: type[PylonAsciiDriver]
    simulator: object  # the personality module
    first_address: int


FAMILIES = [
    Family("pylontech", PylontechRs485Driver, pylontech_ascii, 2),
    Family("pace", PaceAsciiDriver, pace_ascii, 1),
    Family("seplos", SeplosV2Driver, seplos_v2, 0),
]


@dataclass
class Line:
    bank: SimBank
    faults: LineFaults
    driver: PylonAsciiDriver
    addresses: list[int]
    family: Family


Opener = Callable[
    [Family, SimBank, LineFaults], Awaitable[tuple[PylonAsciiDriver, Callable[[], Awaitable[None]]]]
]


async def _over_tcp(
    family: Family, bank: SimBank, faults: LineFaults
) -> tuple[PylonAsciiDriver, Callable[[], Awaitable[None]]]:
    server = await family.simulator.start_server(bank, "127.0.0.1", 0, faults)  # type: ignore[attr-defined]
    return family.driver.over_tcp(server.host, server.port, timeout=TIMEOUT), server.stop


async def _over_pty(
    family: Family, bank: SimBank, faults: LineFaults
) -> tuple[PylonAsciiDriver, Callable[[], Awaitable[None]]]:
    pty = await family.simulator.start_pty(bank, faults)  # type: ignore[attr-defined]
    return family.driver.over_serial(pty.path, timeout=TIMEOUT), pty.stop


@pytest.fixture(params=FAMILIES, ids=lambda family: family.name)
def family(request: pytest.FixtureRequest) -> Family:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(params=[_over_tcp, _over_pty], ids=["tcp", "pty"])
async def line(request: pytest.FixtureRequest, family: Family) -> AsyncIterator[Line]:
    # Three packs under a 30 A load: every pack discharges.
    bank = make_bank(3, first_address=family.first_address, load=constant_load(30.0))
    faults = LineFaults()
    driver, stop = await request.param(family, bank, faults)
    await driver.connect()
    addresses = [pack.address for pack in bank.packs]
    yield Line(bank, faults, driver, addresses, family)
    await driver.close()
    await stop()


def assert_reads_like(reading: PackReading, pack: SimPack) -> None:
    assert reading.address == pack.address
    assert reading.voltage == pytest.approx(pack.voltage, abs=0.006)  # 10 mV on Seplos
    assert reading.current == pytest.approx(pack.current, abs=0.05)
    assert reading.cell_voltages == pytest.approx(pack.cell_voltages, abs=0.0005)
    assert reading.remaining_capacity == pytest.approx(pack.remaining_capacity, abs=0.006)
    assert reading.full_capacity == pytest.approx(pack.full_capacity, abs=0.006)
    assert reading.cycles == pack.cycles
    assert reading.soc == pytest.approx(100.0 * pack.soc, abs=0.1)
    assert reading.mosfet_temperature == pytest.approx(pack.mosfet_temperature, abs=0.06)
    # Pylontech sends its board first, then the cell sensors; PACE and
    # Seplos the four cell sensors first, then the environment.
    board_first = (
        reading.temperatures[0] == pytest.approx(pack.temperature, abs=0.06)
        and len(reading.temperatures) == 5
        and reading.temperatures[4] != pytest.approx(pack.ambient, abs=0.06)
    )
    cells = reading.temperatures[1:5] if board_first else reading.temperatures[:4]
    assert cells == pytest.approx(pack.cell_temperatures, abs=0.06)
    assert reading.charge_enabled is True
    assert reading.discharge_enabled is True
    assert reading.warnings == frozenset()
    assert reading.protections == frozenset()


async def test_every_pack_reads_like_the_bank(line: Line) -> None:
    report = await line.driver.poll(line.addresses)
    assert report.failed == {}
    for address in line.addresses:
        assert_reads_like(report.readings[address], line.bank.pack(address))


async def test_identity(line: Line) -> None:
    identity = await line.driver.read_identity(line.addresses[1])
    assert identity.address == line.addresses[1]
    assert identity.cell_count == 16
    if line.family.name == "pylontech":
        assert identity.serial == line.bank.pack(line.addresses[1]).serial
        assert identity.firmware == "1.4.0"
    else:
        assert identity.design_capacity == pytest.approx(100.0)
        assert identity.key == f"slot_{line.addresses[1]}"
    if line.family.name == "pace":
        assert (identity.model, identity.firmware) == ("US3000C", "V1.4")


async def test_a_hot_pack_raises_its_alarm(line: Line) -> None:
    hot = line.addresses[2]
    HotPack(address=hot, ambient=58.0).apply(line.bank)
    reading = await line.driver.read_pack(hot)
    assert a.CHARGE_OVERTEMPERATURE in reading.protections
    if line.family.name != "pylontech":
        assert a.CHARGE_OVERTEMPERATURE in reading.warnings  # warned before it acted
    assert (await line.driver.read_pack(line.addresses[0])).protections == frozenset()


# What each fault hook must surface as, with the rest of the line still reading.
FAULT_ERRORS = [
    (Fault.SILENCE, PackNotResponding, "no answer"),
    (Fault.BAD_CHECKSUM, FrameError, "CHKSUM"),
    # Noise with a "~" and a CR around it is no frame at all: dropped as noise.
    (Fault.GARBAGE, PackNotResponding, "no answer"),
    (Fault.PARTIAL, FrameError, "LENID|LENGTH|CHKSUM"),
    (Fault.WRONG_ADDRESS, FrameError, "the answer came from ADR"),
]


@pytest.mark.parametrize(
    ("fault", "error", "message"), FAULT_ERRORS, ids=lambda v: getattr(v, "value", "")
)
async def test_fault_fails_one_pack(
    line: Line, fault: Fault, error: type[Exception], message: str
) -> None:
    broken = line.addresses[1]
    # On Pylontech the master's group read leaves out the slave it cannot
    # hear; the poll then asks each pack on its own, and names the one.
    line.faults.inject(fault, broken)
    with pytest.raises(error, match=message):
        await line.driver.read_pack(broken)
    report = await line.driver.poll(line.addresses)
    assert list(report.failed) == [broken]
    for address in (line.addresses[0], line.addresses[2]):
        assert_reads_like(report.readings[address], line.bank.pack(address))
    line.faults.mend(fault, broken)
    assert_reads_like(await line.driver.read_pack(broken), line.bank.pack(broken))


@pytest.mark.parametrize("fault", [Fault.GARBAGE_BEFORE, Fault.GARBAGE_AFTER])
async def test_noise_around_a_sound_frame_is_survived(line: Line, fault: Fault) -> None:
    # RS485 noise as the line turns around is skipped before the "~", and
    # noise after the frame is thrown away before the next request.
    line.faults.inject(fault)
    for address in line.addresses:
        assert_reads_like(await line.driver.read_pack(address), line.bank.pack(address))


async def test_whole_line_silent_is_bus_unavailable(line: Line) -> None:
    line.faults.inject(Fault.SILENCE)
    with pytest.raises(BusUnavailable, match="no pack answered"):
        await line.driver.poll(line.addresses)


async def test_a_pack_dropping_off(line: Line) -> None:
    gone = line.addresses[2]
    line.bank.take_off_bus(gone)
    report = await line.driver.poll(line.addresses)
    assert list(report.failed) == [gone]
    # A Pylontech master says so (0x91); PACE and Seplos packs are just silent.
    expected = "RTN 0x91" if line.family.name == "pylontech" else "no answer"
    assert expected in report.failed[gone]
    line.bank.put_on_bus(gone)
    assert_reads_like(await line.driver.read_pack(gone), line.bank.pack(gone))


# ---------------------------------------------------------------------------
# Pylontech: limits, thresholds and the whole bank in one read


@pytest.fixture
async def pylontech_line() -> AsyncIterator[tuple[SimBank, pylontech_ascii.RunningServer]]:
    bank = make_bank(4, first_address=2, load=constant_load(40.0))
    server = await pylontech_ascii.start_server(bank)
    yield bank, server
    await server.stop()


async def test_pylontech_limits(
    pylontech_line: tuple[SimBank, pylontech_ascii.RunningServer],
) -> None:
    _bank, server = pylontech_line
    driver = PylontechRs485Driver.over_tcp(server.host, server.port, timeout=TIMEOUT)
    try:
        reading = await driver.read_pack(3)
        parameters = await driver.read_system_parameters(3)
    finally:
        await driver.close()
    assert reading.charge_voltage_limit == pytest.approx(pylontech_ascii.CHARGE_VOLTAGE_LIMIT)
    assert reading.discharge_voltage_limit == pytest.approx(pylontech_ascii.DISCHARGE_VOLTAGE_LIMIT)
    assert reading.charge_current_limit == pytest.approx(pylontech_ascii.CHARGE_CURRENT_LIMIT)
    # Negative on the wire, a magnitude in the reading.
    assert reading.discharge_current_limit == pytest.approx(pylontech_ascii.DISCHARGE_CURRENT_LIMIT)
    assert parameters.discharge_current_limit == pytest.approx(
        pylontech_ascii.DISCHARGE_CURRENT_LIMIT
    )
    assert parameters.charge_low_temperature == 0.0


def _count_requests(driver: PylontechRs485Driver) -> list[bytes]:
    """Return a list that gets every request the driver sends from now on."""
    sent: list[bytes] = []
    original = driver.transport.exchange

    async def counting(request: bytes, accept: Callable[[bytes], object]) -> object:
        sent.append(request)
        return await original(request, accept)

    driver.transport.exchange = counting  # type: ignore[method-assign,assignment]
    return sent


def _commands(requests: list[bytes]) -> list[tuple[int, int, int]]:
    """Return (ADR, CID2, command byte) of each request."""
    return [(int(r[3:5], 16), int(r[7:9], 16), int(r[13:15], 16)) for r in requests]


async def test_pylontech_whole_bank_in_two_transactions(
    pylontech_line: tuple[SimBank, pylontech_ascii.RunningServer],
) -> None:
    bank, server = pylontech_line
    now = [1000.0]
    driver = PylontechRs485Driver.over_tcp(server.host, server.port, timeout=TIMEOUT)
    driver.limits = SlowReads(clock=lambda: now[0])
    sent = _count_requests(driver)
    try:
        # The first poll reads the group, then each pack's limits (0x92)
        # once; the polls after it only the group, until the limits are due.
        report = await driver.poll([2, 3, 4, 5])
        assert report.failed == {}
        assert _commands(sent) == [
            (2, 0x42, 0xFF),
            (2, 0x44, 0xFF),
            *((address, 0x92, address) for address in (2, 3, 4, 5)),
        ]
        for address in (2, 3, 4, 5):
            reading = report.readings[address]
            assert reading.voltage == pytest.approx(bank.pack(address).voltage, abs=0.0005)
            assert reading.current == pytest.approx(bank.pack(address).current, abs=0.05)
            assert reading.charge_enabled is True
        sent.clear()
        now[0] += SLOW_READ_INTERVAL - 1
        report = await driver.poll([2, 3, 4, 5])
        assert _commands(sent) == [(2, 0x42, 0xFF), (2, 0x44, 0xFF)]
        # The limits stay in every reading between two reads of them.
        for address in (2, 3, 4, 5):
            assert report.readings[address].charge_current_limit == pytest.approx(
                pylontech_ascii.CHARGE_CURRENT_LIMIT
            )
        sent.clear()
        now[0] += 1
        await driver.poll([2, 3, 4, 5])
        assert len(sent) == 2 + 4

        # With a slave gone the bank reply cannot say which; the poll reads
        # pack by pack and names the one that is missing.
        bank.take_off_bus(4)
        report = await driver.poll([2, 3, 4, 5])
        assert list(report.failed) == [4]
        assert sorted(report.readings) == [2, 3, 5]
        # While it stays gone, the group is not asked first in vain.
        sent.clear()
        report = await driver.poll([2, 3, 4, 5])
        assert list(report.failed) == [4]
        assert _commands(sent) == [
            (2, 0x42, 2), (2, 0x44, 2), (3, 0x42, 3), (3, 0x44, 3), (4, 0x42, 4),
            (5, 0x42, 5), (5, 0x44, 5),
        ]  # fmt: skip
        # Back on the bus, it is read on its own once, with its slow values
        # afresh; then the group read serves every pack again.
        bank.put_on_bus(4)
        sent.clear()
        report = await driver.poll([2, 3, 4, 5])
        assert sorted(report.readings) == [2, 3, 4, 5]
        assert (4, 0x92, 4) in _commands(sent)
        sent.clear()
        report = await driver.poll([2, 3, 4, 5])
        assert sorted(report.readings) == [2, 3, 4, 5]
        assert _commands(sent) == [(2, 0x42, 0xFF), (2, 0x44, 0xFF)]
    finally:
        await driver.close()


async def test_pylontech_master_refusing_group_reads_is_read_pack_by_pack() -> None:
    bank = make_bank(3, first_address=2, load=constant_load(20.0))
    server = await pylontech_ascii.start_per_pack_server(bank)
    driver = PylontechRs485Driver.over_tcp(server.host, server.port, timeout=TIMEOUT)
    sent = _count_requests(driver)
    try:
        report = await driver.poll([2, 3, 4])
        assert report.failed == {}
        for address in (2, 3, 4):
            assert_reads_like(report.readings[address], bank.pack(address))
        # Refused once ("CID2 invalid"), then never asked again.
        assert _commands(sent)[0] == (2, 0x42, 0xFF)
        sent.clear()
        await driver.poll([2, 3, 4])
        assert _commands(sent) == [
            (address, cid2, address) for address in (2, 3, 4) for cid2 in (0x42, 0x44)
        ]
    finally:
        await driver.close()
        await server.stop()


async def test_pylontech_garbled_group_reply_falls_back(
    pylontech_line: tuple[SimBank, pylontech_ascii.RunningServer],
) -> None:
    _bank, server = pylontech_line
    server.faults.inject(Fault.BAD_CHECKSUM, 2)
    driver = PylontechRs485Driver.over_tcp(server.host, server.port, timeout=TIMEOUT)
    try:
        report = await driver.poll([2, 3, 4, 5])
        # The master's replies are garbled, its slaves' are not: the poll
        # falls back to them one by one, and the group read is tried again
        # next time (a garbled frame is no refusal).
        assert list(report.failed) == [2]
        assert sorted(report.readings) == [3, 4, 5]
        server.faults.mend(Fault.BAD_CHECKSUM, 2)
        sent = _count_requests(driver)
        report = await driver.poll([2, 3, 4, 5])
        assert sorted(report.readings) == [2, 3, 4, 5]
        assert _commands(sent)[:2] == [(2, 0x42, 0xFF), (2, 0x44, 0xFF)]
    finally:
        await driver.close()


async def test_pylontech_held_limits_are_read_every_poll(
    pylontech_line: tuple[SimBank, pylontech_ascii.RunningServer],
) -> None:
    _bank, server = pylontech_line
    driver = PylontechRs485Driver.over_tcp(server.host, server.port, timeout=TIMEOUT)
    try:
        await driver.poll([2, 3, 4, 5])
        await driver.set_current_limits(3, charge=10.0, discharge=None)
        sent = _count_requests(driver)
        report = await driver.poll([2, 3, 4, 5])
        # The held pack's limits are its read-back: asked every poll.
        assert _commands(sent) == [(2, 0x42, 0xFF), (2, 0x44, 0xFF), (3, 0x92, 3)]
        assert report.readings[3].charge_current_limit == pytest.approx(10.0)
    finally:
        await driver.close()


# ---------------------------------------------------------------------------
# Serial ports that cannot be opened, and the catalog's serial wire


async def test_missing_serial_port() -> None:
    transport = AsciiSerialTransport("/dev/ttyRBB-no-such-port", timeout=TIMEOUT)
    with pytest.raises(SerialPortMissing, match="does not exist"):
        await transport.connect()


async def test_busy_serial_port() -> None:
    bank = make_bank(1, first_address=0)
    pty = await seplos_v2.start_pty(bank)
    first = SeplosV2Driver.over_serial(pty.path, timeout=TIMEOUT)
    second = SeplosV2Driver.over_serial(pty.path, timeout=TIMEOUT)
    try:
        await first.connect()
        with pytest.raises(SerialPortBusy, match="in use"):
            await second.connect()
        assert (await first.read_pack(0)).address == 0
    finally:
        await first.close()
        await pty.stop()


def test_denied_serial_port() -> None:
    # Permission cannot be withheld from root, which runs these tests, so the
    # errno pyserial reports for it is checked directly.
    err = OSError(errno.EACCES, os.strerror(errno.EACCES))
    assert isinstance(serial_open_error("/dev/ttyUSB0", err), SerialPortDenied)


@pytest.mark.parametrize(
    ("key", "module", "first"),
    [
        ("pace_ascii", pace_ascii, 1),
        ("seplos_v2", seplos_v2, 0),
        ("pylontech_rs485", pylontech_ascii, 2),
    ],
)
async def test_catalog_opens_each_family_on_a_serial_port(
    key: str, module: object, first: int
) -> None:
    bank = make_bank(2, first_address=first)
    pty = await module.start_pty(bank)  # type: ignore[attr-defined]
    driver = open_driver(
        ConnectionSpec(wire=Wire.ASCII_SERIAL, serial_port=pty.path), key, timeout=TIMEOUT
    )
    try:
        report = await driver.poll([first, first + 1])
    finally:
        await driver.close()
        await pty.stop()
    assert sorted(report.readings) == [first, first + 1]
