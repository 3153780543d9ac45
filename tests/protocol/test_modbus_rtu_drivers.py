"""Seplos V3 and JK-PB drivers against the simulated line, over every Modbus wire.

The line is reached as a user's hardware reaches it: a pseudo-terminal
opened as a serial port (a USB RS485 adapter), raw RTU frames over TCP (a
transparent gateway) and Modbus TCP (a protocol-converting gateway).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
import errno
import os

import pytest
import serial

from custom_components.rack_battery.bank.model import PackReading
from custom_components.rack_battery.protocol.catalog import FAMILIES, open_driver
from custom_components.rack_battery.protocol.connection import ConnectionSpec, Wire
from custom_components.rack_battery.protocol.drivers.base import BmsDriver
from custom_components.rack_battery.protocol.drivers.jk_pb import JkPbDriver
from custom_components.rack_battery.protocol.drivers.seplos_v3 import (
    MasterUnreachable,
    SeplosV3Driver,
)
from custom_components.rack_battery.protocol.errors import (
    BusUnavailable,
    FrameError,
    PackNotResponding,
    SerialPortBusy,
    SerialPortDenied,
    SerialPortMissing,
    serial_open_error,
)
from custom_components.rack_battery.protocol.transport.modbus_rtu import (
    ModbusRtuTcpTransport,
    ModbusSerialTransport,
)
from custom_components.rack_battery.protocol.transport.modbus_tcp import (
    ModbusTcpTransport,
    ModbusTransport,
)
from simulator import jk_pb as sim_jk, seplos_v3 as sim_seplos
from simulator.bank import SimBank, SimPack, constant_load, make_bank
from simulator.modbus_line import Fault, ModbusLine

pytestmark = pytest.mark.usefixtures("socket_enabled")

# Short, so that a silent pack does not slow the suite down.
TIMEOUT = 0.15


@dataclass
class Rig:
    bank: SimBank
    line: ModbusLine
    driver: BmsDriver
    wire: str


FAMILY_SETUP: dict[
    str, tuple[int, Callable[[SimBank], ModbusLine], Callable[[ModbusTransport], BmsDriver]]
] = {
    # Seplos banks start at unit 0, the master; JK-PB packs at DIP 1.
    "seplos_v3": (0, sim_seplos.make_line, SeplosV3Driver),
    "jk_pb": (1, sim_jk.make_line, JkPbDriver),
}


async def open_transport(line: ModbusLine, wire: str, baudrate: int) -> ModbusTransport:
    if wire == "pty":
        return ModbusSerialTransport(line.open_pty(), baudrate=baudrate, timeout=TIMEOUT)
    if wire == "rtu_tcp":
        host, port = await line.serve_rtu_tcp()
        return ModbusRtuTcpTransport(host, port, timeout=TIMEOUT)
    host, port = await line.serve_modbus_tcp()
    return ModbusTcpTransport(host, port, timeout=TIMEOUT)


@pytest.fixture(params=["seplos_v3", "jk_pb"])
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["pty", "rtu_tcp", "modbus_tcp"])
async def rig(request: pytest.FixtureRequest, family: str) -> AsyncIterator[Rig]:
    first, make_line, make_driver = FAMILY_SETUP[family]
    bank = make_bank(3, first_address=first, load=constant_load(30.0))
    line = make_line(bank)
    transport = await open_transport(line, request.param, FAMILIES[family].default_baudrate or 9600)
    driver = make_driver(transport)
    await driver.connect()
    yield Rig(bank, line, driver, request.param)
    await driver.close()
    await line.stop()


def assert_reads_like(reading: PackReading, pack: SimPack) -> None:
    """Within each family's resolution (10 mV / 10 mA at worst, 0.1 degC, 1 mV cells)."""
    assert reading.voltage == pytest.approx(pack.voltage, abs=0.005 + 1e-9)
    assert reading.current == pytest.approx(pack.current, abs=0.005 + 1e-9)
    assert reading.soc == pytest.approx(100 * pack.soc, abs=0.5 + 1e-9)
    assert reading.remaining_capacity == pytest.approx(pack.remaining_capacity, abs=0.005 + 1e-9)
    assert reading.cycles == pack.cycles
    assert reading.cell_voltages == pytest.approx(pack.cell_voltages, abs=0.0005 + 1e-9)
    assert reading.temperatures[:4] == pytest.approx(pack.cell_temperatures, abs=0.05 + 1e-9)
    assert reading.mosfet_temperature == pytest.approx(pack.mosfet_temperature, abs=0.05 + 1e-9)
    assert reading.charge_enabled is pack.connected
    assert reading.discharge_enabled is pack.connected


async def test_every_pack_reads_like_the_bank(rig: Rig) -> None:
    report = await rig.driver.poll([pack.address for pack in rig.bank.packs])
    assert report.failed == {}
    for pack in rig.bank.packs:
        assert_reads_like(report.readings[pack.address], pack)
    # The bank discharges at 30 A: the packs' currents add up to it.
    assert sum(r.current or 0 for r in report.readings.values()) == pytest.approx(-30.0, abs=0.05)


async def test_scan_finds_every_pack_with_its_identity(rig: Rig) -> None:
    first = rig.bank.packs[0].address
    found = await rig.driver.scan(range(first, first + 4))  # one empty slot after the bank
    assert [identity.address for identity in found] == [pack.address for pack in rig.bank.packs]
    for identity, pack in zip(found, rig.bank.packs, strict=True):
        assert identity.model == pack.model
        assert identity.cell_count == 16
        assert identity.design_capacity == pytest.approx(pack.design_capacity)
        if rig.driver.family == "seplos_v3":
            assert identity.serial == pack.serial
        else:
            assert identity.serial is None  # JK's map has no serial: named by slot
            assert identity.firmware == pack.firmware


async def test_a_pack_off_the_bus_fails_alone(rig: Rig) -> None:
    last = rig.bank.packs[-1].address
    rig.bank.take_off_bus(last)
    report = await rig.driver.poll([pack.address for pack in rig.bank.packs])
    assert set(report.failed) == {last}
    assert len(report.readings) == 2
    rig.bank.put_on_bus(last)
    assert (await rig.driver.poll([last])).failed == {}


@pytest.mark.parametrize("fault", [Fault.SILENT, Fault.CRC, Fault.PARTIAL, Fault.WRONG_ADDRESS])
async def test_faulty_replies_fail_one_pack_and_the_next_poll_recovers(
    rig: Rig, fault: Fault
) -> None:
    bad = rig.bank.packs[1].address
    rig.line.faults[bad] = fault
    report = await rig.driver.poll([pack.address for pack in rig.bank.packs])
    assert set(report.failed) == {bad}
    del rig.line.faults[bad]
    report = await rig.driver.poll([pack.address for pack in rig.bank.packs])
    assert report.failed == {}


async def test_garbage_before_a_reply_is_survived_or_reported(rig: Rig) -> None:
    bad = rig.bank.packs[1].address
    rig.line.faults[bad] = Fault.GARBAGE
    try:
        reading = await rig.driver.read_pack(bad)
    except (PackNotResponding, FrameError):
        pass  # reported as that pack's failure, never anything else
    else:
        assert_reads_like(reading, rig.bank.pack(bad))
    del rig.line.faults[bad]
    assert_reads_like(await rig.driver.read_pack(bad), rig.bank.pack(bad))


async def test_seplos_master_system_block_and_silent_unit_zero() -> None:
    bank = make_bank(3, first_address=0, load=constant_load(30.0))
    line = sim_seplos.make_line(bank)
    host, port = await line.serve_modbus_tcp()
    driver = SeplosV3Driver(ModbusTcpTransport(host, port, timeout=TIMEOUT))
    await driver.connect()
    try:
        summary = await driver.read_system()
        assert summary.current == pytest.approx(-30.0, abs=0.05)
        assert summary.online_packs == {0, 1, 2}
        # A gateway that treats unit 0 as broadcast never answers it.
        line.faults[0] = Fault.SILENT
        with pytest.raises(MasterUnreachable, match="broadcast address"):
            await driver.read_pack(0)
        with pytest.raises(MasterUnreachable, match="broadcast address"):
            await driver.read_system()
        # Another pack stays a plain silent pack.
        line.faults[1] = Fault.SILENT
        with pytest.raises(PackNotResponding) as caught:
            await driver.read_pack(1)
        assert not isinstance(caught.value, MasterUnreachable)
    finally:
        await driver.close()
        await line.stop()


async def test_catalog_opens_a_serial_port_at_the_family_speed() -> None:
    bank = make_bank(2, first_address=1)
    line = sim_jk.make_line(bank)
    name = line.open_pty()
    spec = ConnectionSpec(wire=Wire.MODBUS_RTU_SERIAL, serial_port=name)
    driver = open_driver(spec, "jk_pb", timeout=TIMEOUT)
    assert isinstance(driver, JkPbDriver)
    assert isinstance(driver.transport, ModbusSerialTransport)
    assert driver.transport.baudrate == 115200
    await driver.connect()
    try:
        assert (await driver.poll([1, 2])).failed == {}
    finally:
        await driver.close()
        await line.stop()


async def test_pace_speaks_on_the_rtu_wires() -> None:
    assert {Wire.MODBUS_RTU_SERIAL, Wire.MODBUS_RTU_TCP} <= set(FAMILIES["pace_modbus"].wires)
    assert FAMILIES["seplos_v3"].listen_only
    assert FAMILIES["jk_pb"].listen_only


# Serial ports that cannot be used say why.


async def test_missing_serial_port(tmp_path: os.PathLike[str]) -> None:
    transport = ModbusSerialTransport(f"{tmp_path}/ttyUSB9", baudrate=9600, timeout=TIMEOUT)
    with pytest.raises(SerialPortMissing, match="does not exist"):
        await transport.connect()


def test_permission_errors_are_told_apart() -> None:
    # What pyserial raises when open(2) is refused, as the probe sees it.
    refused = serial.SerialException(errno.EACCES, "could not open port /dev/ttyUSB0")
    assert isinstance(serial_open_error("/dev/ttyUSB0", refused), SerialPortDenied)
    locked = serial.SerialException(errno.EAGAIN, "Could not exclusively lock port")
    assert isinstance(serial_open_error("/dev/ttyUSB0", locked), SerialPortBusy)


async def test_serial_port_without_permission() -> None:
    controller, device = os.openpty()
    name = os.ttyname(device)
    mode = os.stat(name).st_mode
    os.chmod(name, 0)
    # Root opens anything; the check runs as an ordinary user would.
    as_root = os.geteuid() == 0
    if as_root:
        os.seteuid(65534)
    try:
        transport = ModbusSerialTransport(name, baudrate=9600, timeout=TIMEOUT)
        with pytest.raises(SerialPortDenied, match="no permission"):
            await transport.connect()
    finally:
        if as_root:
            os.seteuid(0)
        os.chmod(name, mode)
        os.close(controller)
        os.close(device)


async def test_serial_port_in_use() -> None:
    controller, device = os.openpty()
    name = os.ttyname(device)
    # Another program holds the port with the exclusive lock (flock) that
    # pyserial, and so this transport, takes on opening.
    holder = serial.Serial(name, exclusive=True)
    try:
        transport = ModbusSerialTransport(name, baudrate=9600, timeout=TIMEOUT)
        with pytest.raises(SerialPortBusy, match="in use"):
            await transport.connect()
        assert isinstance(SerialPortBusy("x"), BusUnavailable)
    finally:
        holder.close()
        os.close(controller)
        os.close(device)
