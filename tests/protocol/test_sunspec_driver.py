"""The SunSpec driver against the simulated bank over real loopback Modbus TCP.

The simulator plays one SunSpec battery controller: each pack of the bank
is a string of one module, with its 804 and 805 blocks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from custom_components.rack_battery.bank.model import PackReading
from custom_components.rack_battery.protocol.catalog import FAMILIES, open_driver
from custom_components.rack_battery.protocol.connection import ConnectionSpec, Wire
from custom_components.rack_battery.protocol.drivers.sunspec import (
    B802,
    G805,
    MODULE_CELL_GROUP,
    MODULE_FIXED,
    SunSpecDriver,
    decode_lithium_module,
)
from custom_components.rack_battery.protocol.errors import (
    BusUnavailable,
    FrameError,
    PackNotResponding,
)
from simulator import pace_modbus
from simulator.bank import SimBank, SimPack, constant_load, make_bank
from simulator.sunspec import (
    RunningServer,
    cell_temperature,
    encode_battery_base,
    encode_lithium_module,
    start_server,
)

# Home Assistant's test plugin blocks sockets; these tests need loopback TCP.
pytestmark = pytest.mark.usefixtures("socket_enabled")

ADDRESSES = [1, 2, 3, 4]


@pytest.fixture
def bank() -> SimBank:
    # Four 100 Ah packs under a 40 A load, the last one some years older.
    return make_bank(4, first_address=1, load=constant_load(40.0), aged=[3])


@pytest.fixture
async def server(bank: SimBank) -> AsyncIterator[RunningServer]:
    running = await start_server(bank)
    yield running
    await running.stop()


@pytest.fixture
async def driver(server: RunningServer) -> AsyncIterator[SunSpecDriver]:
    sunspec = SunSpecDriver.over_tcp(server.host, server.port, timeout=0.3)
    await sunspec.connect()
    yield sunspec
    await sunspec.close()


def assert_reads_like(reading: PackReading, pack: SimPack) -> None:
    """Check a reading against the simulated pack within the device's resolution."""
    # Half a step of each scale factor the simulated device declares, and a hair.
    assert reading.address == pack.address
    assert reading.voltage == pytest.approx(pack.voltage, abs=0.005 + 1e-9)  # 10^-2 V
    assert reading.current == pytest.approx(pack.current, abs=0.005 + 1e-9)  # 10^-2 A
    assert reading.soc == pytest.approx(100.0 * pack.soc, abs=0.05 + 1e-9)  # 10^-1 %
    assert reading.soh == pytest.approx(pack.soh, abs=0.05 + 1e-9)
    assert reading.cycles == pack.cycles
    assert reading.cell_voltages == pytest.approx(pack.cell_voltages, abs=0.0005 + 1e-9)
    expected = [cell_temperature(pack, cell) for cell in range(len(pack.cell_voltages))]
    assert reading.temperatures == pytest.approx(expected, abs=0.05 + 1e-9)  # 10^-1 degC
    assert reading.charge_enabled is pack.connected
    assert reading.discharge_enabled is pack.connected


async def test_every_module_reads_like_its_pack(bank: SimBank, driver: SunSpecDriver) -> None:
    assert await driver.pack_addresses() == tuple(ADDRESSES)
    # A scan asks the modules the map lists, not the 32 a device may hold.
    assert await driver.scan_addresses() == tuple(ADDRESSES)
    for address in ADDRESSES:
        reading = await driver.read_pack(address)
        assert_reads_like(reading, bank.pack(address))
        # Under a 40 A load every pack discharges: negative, as in every family.
        assert reading.current is not None
        assert reading.current < 0


async def test_readings_follow_the_bank(bank: SimBank, driver: SunSpecDriver) -> None:
    before = await driver.read_pack(1)
    bank.step(3600.0)  # an hour at 40 A
    after = await driver.read_pack(1)
    assert_reads_like(after, bank.pack(1))
    assert after.soc is not None
    assert before.soc is not None
    assert after.soc < before.soc


async def test_scan_names_each_module_by_its_own_serial(
    bank: SimBank, driver: SunSpecDriver
) -> None:
    found = await driver.scan()
    assert [identity.address for identity in found] == ADDRESSES
    for identity in found:
        pack = bank.pack(identity.address)
        assert identity.serial == pack.serial
        assert identity.key == pack.serial
        assert identity.family == "sunspec"
        # Model 1 is the controller's name plate, shared by its modules.
        assert identity.manufacturer == pack.manufacturer
        assert identity.model == pack.model
        assert identity.firmware == pack.firmware
        assert identity.cell_count == 16


async def test_a_module_off_the_bus_fails_alone_and_comes_back(
    bank: SimBank, driver: SunSpecDriver
) -> None:
    bank.take_off_bus(2)
    report = await driver.poll(ADDRESSES)
    assert set(report.failed) == {2}
    assert "module 2" in report.failed[2]
    assert set(report.readings) == {1, 3, 4}
    for address, reading in report.readings.items():
        assert_reads_like(reading, bank.pack(address))
        assert reading.protections == frozenset()
    assert [identity.address for identity in await driver.scan()] == [1, 3, 4]

    bank.put_on_bus(2)
    report = await driver.poll(ADDRESSES)
    assert not report.failed
    assert set(report.readings) == set(ADDRESSES)


async def test_an_isolated_pack_reports_its_contactor_open(
    bank: SimBank, driver: SunSpecDriver
) -> None:
    bank.pack(3).connected = False
    bank.step(0.0)
    reading = await driver.read_pack(3)
    assert_reads_like(reading, bank.pack(3))
    assert reading.charge_enabled is False
    assert reading.current == 0.0


async def test_an_address_the_map_does_not_list_is_not_responding(
    driver: SunSpecDriver,
) -> None:
    with pytest.raises(PackNotResponding, match="not in the SunSpec map"):
        await driver.read_pack(9)


async def test_the_unit_id_is_configurable(bank: SimBank) -> None:
    running = await start_server(bank, unit=7)
    wrong = SunSpecDriver.over_tcp(running.host, running.port, timeout=0.3)
    right = SunSpecDriver.over_tcp(running.host, running.port, unit=7, timeout=0.3)
    try:
        # Unit 1 is nobody here: the gateway's 0x0B, and no pack answers.
        with pytest.raises(PackNotResponding, match="0x0B"):
            await wrong.read_pack(1)
        with pytest.raises(BusUnavailable, match="no pack answered"):
            await wrong.poll(ADDRESSES)
        assert_reads_like(await right.read_pack(1), bank.pack(1))
    finally:
        await wrong.close()
        await right.close()
        await running.stop()


async def test_the_catalog_opens_it_over_modbus_tcp(bank: SimBank, server: RunningServer) -> None:
    family = FAMILIES["sunspec"]
    assert family.name == "SunSpec storage (Modbus)"
    assert Wire.MODBUS_TCP in family.wires
    spec = ConnectionSpec(wire=Wire.MODBUS_TCP, host=server.host, port=server.port)
    driver = open_driver(spec, "sunspec", timeout=0.3)
    try:
        report = await driver.poll(ADDRESSES)
        assert set(report.readings) == set(ADDRESSES)
        assert_reads_like(report.readings[4], bank.pack(4))
    finally:
        await driver.close()


async def test_a_stopped_device_is_a_bus_down(server: RunningServer, driver: SunSpecDriver) -> None:
    assert (await driver.read_pack(1)).address == 1
    await server.stop()
    with pytest.raises(BusUnavailable):
        await driver.poll(ADDRESSES)


async def test_a_bus_of_other_packs_has_no_sunspec_device() -> None:
    # PACE packs answer a read at 40000 with exception 0x02: no map there.
    other = make_bank(2, first_address=1)
    running = await pace_modbus.start_server(other)
    sunspec = SunSpecDriver.over_tcp(running.host, running.port, timeout=0.3)
    try:
        assert await sunspec.scan() == []
        assert await sunspec.scan_addresses() == ()
        with pytest.raises(FrameError, match="no SunSpec marker"):
            await sunspec.read_identity(1)
        with pytest.raises(BusUnavailable, match="no pack answered"):
            await sunspec.poll(ADDRESSES)
    finally:
        await sunspec.close()
        await running.stop()


def test_points_the_device_does_not_set_read_as_sunspec_says(bank: SimBank) -> None:
    """Unset signed points read 0x8000 and unsigned ones 0xFFFF; both decode to unknown."""
    pack = bank.packs[1]
    bank.take_off_bus(pack.address)
    module = encode_lithium_module(2, pack)
    cells = len(pack.cell_voltages)
    for cell in range(cells):
        start = MODULE_FIXED + cell * MODULE_CELL_GROUP
        assert module[start + G805["CellTmp"]] == 0x8000  # int16, unset
        assert module[start + G805["CellV"]] == 0xFFFF  # uint16, unset
    decoded = decode_lithium_module(pack.address, module)
    assert decoded.reading.temperatures == (None,) * cells  # not -0.1 degC
    assert decoded.reading.cell_voltages == (None,) * cells
    base = encode_battery_base(bank)
    assert base[45] == 0x8000  # W, int16: this device does not report power
    assert base[B802["A"]] != 0x8000  # the current it does report
