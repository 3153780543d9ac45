"""Write paths over real wires: each command's bytes as worked out by hand, and its effect.

Every frame below is written out in full from the vendor documents (the
shared protocol notes' tables): field by field, with the checksum or CRC
added up by hand, not taken from our encoder. Then the simulated pack
behind the wire is looked at, and read back through the driver, as a
user would see the change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from custom_components.rack_battery.protocol.catalog import FAMILIES, Switch, Undo, control_of
from custom_components.rack_battery.protocol.drivers.base import BmsDriver
from custom_components.rack_battery.protocol.drivers.jk_pb import JkPbDriver
from custom_components.rack_battery.protocol.drivers.pace_ascii import PaceAsciiDriver
from custom_components.rack_battery.protocol.drivers.pylontech_rs485 import (
    CurrentHold,
    PylontechRs485Driver,
)
from custom_components.rack_battery.protocol.drivers.seplos_v3 import SeplosV3Driver
from custom_components.rack_battery.protocol.drivers.sunspec import SunSpecDriver
from custom_components.rack_battery.protocol.errors import (
    ControlNotSupported,
    PackNotResponding,
)
from custom_components.rack_battery.protocol.listen import BusListener
from custom_components.rack_battery.protocol.pylon.management import (
    encode_charge_management_command,
)
from custom_components.rack_battery.protocol.transport.modbus_rtu import (
    ModbusRtuTcpTransport,
    ModbusSerialTransport,
)
from simulator import (
    jk_pb as sim_jk,
    pace_ascii as sim_pace,
    pylontech_ascii as sim_pylon,
    seplos_v3 as sim_seplos,
)
from simulator.bank import (
    HOLD_SECONDS,
    SimBank,
    SimPack,
    WriteFault,
    constant_load,
    make_bank,
)
from simulator.modbus_line import ModbusLine
from simulator.sunspec_line import SunSpecDevice
from simulator.wiretap import Wiretap, start_wiretap

pytestmark = pytest.mark.usefixtures("socket_enabled")

TIMEOUT = 0.3


# --- Pylontech RS485: 0x94 --------------------------------------------------


@pytest.fixture
async def pylon() -> AsyncIterator[tuple[SimBank, Wiretap, PylontechRs485Driver]]:
    bank = make_bank(3, first_address=2, load=constant_load(30.0))
    server = await sim_pylon.start_server(bank)
    tap = await start_wiretap(server.host, server.port)
    driver = PylontechRs485Driver.over_tcp(tap.host, tap.port, timeout=TIMEOUT)
    await driver.connect()
    yield bank, tap, driver
    await driver.close()
    await tap.stop()
    await server.stop()


def test_0x94_info_is_laid_out_as_the_document_says() -> None:
    # Command byte = ADR 2; 53.2 V = 53200 mV = 0xCFD0; 44.5 V = 0xADD4;
    # 25 A = 250 counts of 100 mA = 0x00FA; 50 A discharge = -500 = 0xFE0C.
    info = encode_charge_management_command(
        2, charge_voltage=53.2, discharge_voltage=44.5, charge_current=25.0, discharge_current=50.0
    )
    assert info == bytes.fromhex("02 CFD0 ADD4 00FA FE0C")
    with pytest.raises(ValueError, match="discharge current"):
        encode_charge_management_command(
            2, charge_voltage=53.2, discharge_voltage=44.5, charge_current=0, discharge_current=-1
        )


async def test_pylontech_charge_path_opens_by_a_held_zero_limit(
    pylon: tuple[SimBank, Wiretap, PylontechRs485Driver],
) -> None:
    bank, tap, driver = pylon
    before = await driver.read_pack(2)
    assert before.charge_current_limit == 37.0
    assert before.charge_enabled is True
    tap.requests.clear()
    await driver.set_paths(2, charge=False)
    # ~ 20 02 46 94, LENGTH D012 (LENID 18 = 0x012; 0+1+2 = 3, -3 & 0xF = D),
    # INFO 02 | CFD0 (53.2 V) | ADD4 (44.5 V) | 0000 (0 A charge) | FD1C
    # (-74.0 A: the pack's own discharge limit kept), CHKSUM: the ASCII codes
    # of "20024694D01202CFD0ADD40000FD1C" add up to 1676 = 0x068C, and
    # -0x068C & 0xFFFF = 0xF974.
    assert tap.requests == [b"~20024694D01202CFD0ADD40000FD1CF974\r"]
    assert bank.pack(2).hold is not None
    assert not bank.pack(2).charge_on
    assert bank.pack(2).discharge_on
    after = await driver.read_pack(2)
    assert after.charge_current_limit == 0.0
    assert after.discharge_current_limit == 74.0
    assert after.charge_enabled is False
    assert after.discharge_enabled is True


async def test_pylontech_hold_lapses_unless_sent_again(
    pylon: tuple[SimBank, Wiretap, PylontechRs485Driver],
) -> None:
    bank, tap, driver = pylon
    await driver.read_pack(3)
    await driver.set_current_limits(3, charge=20.0, discharge=None)
    assert driver.holds == {3: CurrentHold(charge=20.0, discharge=None)}
    assert (await driver.read_pack(3)).charge_current_limit == 20.0
    # Every poll turn sends it again, well inside the 10 s.
    for _ in range(3):
        bank.step(HOLD_SECONDS * 0.8)
        tap.requests.clear()
        assert await driver.send_holds() == {}
        # 20 A = 200 = 0x00C8; the same frame each turn.
        assert [r[:13] for r in tap.requests] == [b"~20034694D012"]
        assert (await driver.read_pack(3)).charge_current_limit == 20.0
    # Released, it is no longer sent, and the pack returns to its own.
    driver.release(3)
    tap.requests.clear()
    assert await driver.send_holds() == {}
    assert tap.requests == []
    # Until it lapses the pack still reports 20 A; that is not taken for its own.
    assert (await driver.read_pack(3)).charge_current_limit == 20.0
    bank.step(HOLD_SECONDS + 1)
    assert bank.pack(3).hold is None
    assert (await driver.read_pack(3)).charge_current_limit == 37.0
    # A later hold one way keeps the pack's own 37 A the other way.
    tap.requests.clear()
    await driver.set_paths(3, discharge=False)
    # 37.0 A = 370 = 0x0172, discharge 0 A = 0x0000.
    assert tap.requests[-1][15:31] == b"CFD0ADD401720000"


async def test_pylontech_never_sends_more_than_the_packs_own_limit(
    pylon: tuple[SimBank, Wiretap, PylontechRs485Driver],
) -> None:
    bank, tap, driver = pylon
    await driver.read_pack(2)
    assert driver.own_limits == {2: (37.0, 74.0)}
    tap.requests.clear()
    await driver.set_current_limits(2, charge=80.0, discharge=20.0)
    # Charge asked 80 A, sent the pack's own 37.0 A = 370 = 0x0172;
    # discharge 20 A = -200 = 0xFF38.
    assert tap.requests[-1][15:31] == b"CFD0ADD40172FF38"
    assert bank.pack(2).reported_charge_limit == 37.0
    # While held, the pack's own limits are still the ones read unheld.
    await driver.read_pack(2)
    assert driver.own_limits == {2: (37.0, 74.0)}


async def test_pylontech_closing_both_paths_releases_the_hold(
    pylon: tuple[SimBank, Wiretap, PylontechRs485Driver],
) -> None:
    bank, _tap, driver = pylon
    await driver.set_paths(4, charge=False, discharge=False)
    assert driver.holds == {4: CurrentHold(charge=0.0, discharge=0.0)}
    assert abs(bank.pack(4).current) < 1e-9
    await driver.set_paths(4, charge=True, discharge=True)
    assert driver.holds == {}


# --- PACE ASCII: 0x9A / 0x9B -------------------------------------------------


@pytest.fixture
async def pace() -> AsyncIterator[tuple[SimBank, Wiretap, PaceAsciiDriver]]:
    bank = make_bank(3, first_address=1, load=constant_load(30.0))
    server = await sim_pace.start_server(bank)
    tap = await start_wiretap(server.host, server.port)
    driver = PaceAsciiDriver.over_tcp(tap.host, tap.port, timeout=TIMEOUT)
    await driver.connect()
    yield bank, tap, driver
    await driver.close()
    await tap.stop()
    await server.stop()


async def test_pace_switches_each_fet_on_its_own(
    pace: tuple[SimBank, Wiretap, PaceAsciiDriver],
) -> None:
    bank, tap, driver = pace
    await driver.set_paths(2, charge=False)
    # ~ 25 02 46 9A, LENGTH E002 (LENID 2: -2 & 0xF = E), INFO 01 (off);
    # "2502469AE00201" adds up to 741 = 0x02E5, -0x02E5 & 0xFFFF = 0xFD1B.
    assert tap.requests == [b"~2502469AE00201FD1B\r"]
    reading = await driver.read_pack(2)
    assert reading.charge_enabled is False
    assert reading.discharge_enabled is True
    # Under a 30 A load the pack still discharges through its closed path.
    assert bank.pack(2).current < 0
    tap.requests.clear()
    await driver.set_paths(2, charge=True)
    # INFO 00 (on): one less, 740 = 0x02E4, so 0xFD1C.
    assert tap.requests == [b"~2502469AE00200FD1C\r"]
    assert (await driver.read_pack(2)).charge_enabled is True
    tap.requests.clear()
    await driver.set_paths(3, discharge=False)
    # 0x9B to ADR 3: "2503469BE00201" adds up to 743 = 0x02E7 -> 0xFD19.
    assert tap.requests == [b"~2503469BE00201FD19\r"]
    reading = await driver.read_pack(3)
    assert reading.discharge_enabled is False
    assert reading.charge_enabled is True


async def test_a_pace_pack_that_acknowledges_but_does_not_switch(
    pace: tuple[SimBank, Wiretap, PaceAsciiDriver],
) -> None:
    bank, _tap, driver = pace
    bank.pack(1).write_fault = WriteFault.ACK_ONLY
    await driver.set_paths(1, charge=False, discharge=False)
    reading = await driver.read_pack(1)
    # The write "succeeded"; only reading back shows it did not take.
    assert reading.charge_enabled is True
    assert reading.discharge_enabled is True


async def test_a_jk_pack_that_ignores_the_write() -> None:
    bank = make_bank(2, first_address=1)
    bank.pack(2).write_fault = WriteFault.IGNORE
    line = sim_jk.make_line(bank)
    driver = JkPbDriver(await _rtu(line, "rtu_tcp"))
    await driver.connect()
    try:
        with pytest.raises(PackNotResponding):
            await driver.set_paths(2, discharge=False)
        assert (await driver.read_pack(2)).discharge_enabled is True
    finally:
        await driver.close()
        await line.stop()


async def test_a_pace_pack_that_ignores_the_write(
    pace: tuple[SimBank, Wiretap, PaceAsciiDriver],
) -> None:
    bank, _tap, driver = pace
    bank.pack(1).write_fault = WriteFault.IGNORE
    with pytest.raises(PackNotResponding):
        await driver.set_paths(1, charge=False)
    assert bank.pack(1).charge_path
    assert (await driver.read_pack(1)).charge_enabled is True


# --- Modbus families over a pseudo-terminal and an RTU gateway ----------------


@pytest.fixture(params=["pty", "rtu_tcp"])
async def wire(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _rtu(line: ModbusLine, wire: str) -> ModbusSerialTransport | ModbusRtuTcpTransport:
    if wire == "pty":
        return ModbusSerialTransport(line.open_pty(), baudrate=19200, timeout=TIMEOUT)
    host, port = await line.serve_rtu_tcp()
    return ModbusRtuTcpTransport(host, port, timeout=TIMEOUT)


async def test_seplos_v3_charge_fets_off_and_on_again(wire: str) -> None:
    bank = make_bank(3, first_address=0, load=constant_load(30.0))
    line = sim_seplos.make_line(bank)
    driver = SeplosV3Driver(await _rtu(line, wire))
    await driver.connect()
    try:
        await driver.set_paths(1, charge=False)
        # Unit 1, function 0x10, register 0x1511, one register, two bytes,
        # value 0x55AA; CRC-16/Modbus of those nine bytes = 0xFF5E, low first.
        assert list(line.heard) == [bytes.fromhex("01 10 15 11 00 01 02 55 AA 5E FF")]
        reading = await driver.read_pack(1)
        assert reading.charge_enabled is False
        assert reading.discharge_enabled is True
        line.heard.clear()
        await driver.set_paths(1, charge=True)
        # Register 0x1515, value 0xAA55; CRC 0xCB5E.
        assert list(line.heard) == [bytes.fromhex("01 10 15 15 00 01 02 AA 55 5E CB")]
        assert (await driver.read_pack(1)).charge_enabled is True
        line.heard.clear()
        # No register turns the discharge FETs back on: not offered, nothing sent.
        with pytest.raises(ControlNotSupported, match="no register to turn them on"):
            await driver.set_paths(1, discharge=False)
        # Unit 0 is the broadcast address.
        with pytest.raises(ControlNotSupported, match="broadcast"):
            await driver.set_paths(0, charge=False)
        assert list(line.heard) == []
        assert bank.pack(0).charge_path
    finally:
        await driver.close()
        await line.stop()


async def test_jk_pb_switches_charge_and_discharge(wire: str) -> None:
    bank = make_bank(2, first_address=1, load=constant_load(20.0))
    line = sim_jk.make_line(bank)
    driver = JkPbDriver(await _rtu(line, wire))
    await driver.connect()
    try:
        await driver.set_paths(1, charge=False)
        # Unit 1, function 0x10, register 0x1070, two registers, four bytes,
        # u32 0 big-endian (off); CRC-16/Modbus 0x4B39, low byte first.
        assert list(line.heard) == [bytes.fromhex("01 10 10 70 00 02 04 00 00 00 00 39 4B")]
        await driver.set_paths(1, charge=True)
        await driver.set_paths(2, discharge=False)
        line.heard.clear()
        await driver.set_paths(2, discharge=True)
        await driver.set_paths(2, charge=False)
        # Unit 2's discharge switch 0x1074 set to 1 (on): CRC 0x3CF6.
        assert next(iter(line.heard)) == bytes.fromhex("02 10 10 74 00 02 04 00 00 00 01 F6 3C")
        one = await driver.read_pack(1)
        two = await driver.read_pack(2)
        assert (one.charge_enabled, one.discharge_enabled) == (True, True)
        assert (two.charge_enabled, two.discharge_enabled) == (False, True)
        # A pack with its charge path open still discharges under the load.
        assert bank.pack(2).current < 0
        with pytest.raises(ControlNotSupported):
            await driver.set_paths(0, charge=False)
    finally:
        await driver.close()
        await line.stop()


async def test_sunspec_string_contactor_opens_and_closes(wire: str) -> None:
    bank = make_bank(3, first_address=1, load=constant_load(30.0))
    line = ModbusLine(SunSpecDevice(bank))
    driver = SunSpecDriver(await _rtu(line, wire))
    await driver.connect()
    try:
        await driver.read_pack(2)
        line.heard.clear()
        await driver.set_paths(2, charge=False, discharge=False)
        # The map: "SunS" (2) at 40000, model 1 (2 + 66), 802 (2 + 62),
        # 803 (2 + 26 + 3 * 32), string 1's 804 (2 + 46 + 16): string 2's
        # 804 body starts at 40324, and SetCon is its point 35: 40359 =
        # 0x9DA7. DISCONNECT_STRING = 2. CRC of 01 10 9D A7 00 01 02 00 02 = 0x4F72.
        assert list(line.heard)[-1] == bytes.fromhex("01 10 9D A7 00 01 02 00 02 72 4F")
        reading = await driver.read_pack(2)
        assert (reading.charge_enabled, reading.discharge_enabled) == (False, False)
        assert abs(bank.pack(2).current) < 1e-9
        await driver.set_paths(2, charge=True, discharge=True)
        reading = await driver.read_pack(2)
        assert (reading.charge_enabled, reading.discharge_enabled) == (True, True)
        with pytest.raises(ControlNotSupported, match="together"):
            await driver.set_paths(2, charge=False)
    finally:
        await driver.close()
        await line.stop()


async def test_sunspec_device_without_the_points_is_not_written() -> None:
    bank = make_bank(2, first_address=1)
    line = ModbusLine(SunSpecDevice(bank, writable=False))
    host, port = await line.serve_rtu_tcp()
    driver = SunSpecDriver(ModbusRtuTcpTransport(host, port, timeout=TIMEOUT))
    await driver.connect()
    try:
        with pytest.raises(ControlNotSupported, match="does not implement"):
            await driver.set_paths(1, charge=False, discharge=False)
        assert all(frame[1] != 0x10 for frame in line.heard)
        assert bank.pack(1).charge_path
    finally:
        await driver.close()
        await line.stop()


# --- The catalog --------------------------------------------------------------


def test_the_catalog_says_what_each_family_can_switch() -> None:
    assert control_of("pylontech_rs485").throttle
    assert control_of("pylontech_rs485").undo is Undo.LAPSES
    assert control_of("pylontech_rs485").hold_seconds == 10.0
    assert control_of("pace_ascii").switch is Switch.FET
    assert control_of("pace_ascii").can_isolate
    assert control_of("jk_pb").can_isolate
    seplos = control_of("seplos_v3")
    assert seplos.charge_path
    assert not seplos.discharge_path
    assert "discharge_off" in seplos.not_offered
    assert control_of("sunspec").paths_together
    for key in ("pace_modbus", "seplos_v2", "pylontech_can"):
        assert not control_of(key).can_write
    assert not control_of("no_such_family").can_write
    # Every family that offers a path overrides the driver's refusal.
    for info in FAMILIES.values():
        mro: tuple[type, ...] = getattr(info.driver, "__mro__", ())
        overrides = any("set_paths" in vars(cls) for cls in mro if cls is not BmsDriver)
        assert overrides == info.control.can_write, info.key


def test_a_listen_only_bank_has_no_write_path() -> None:
    # The listener keeps the drivers' refusal: it never sends a byte.
    assert BusListener.set_paths is BmsDriver.set_paths


async def test_a_family_without_a_write_path_refuses_without_a_byte() -> None:
    bank = make_bank(2, first_address=1)
    from simulator import seplos_v2 as sim_seplos_v2

    server = await sim_seplos_v2.start_server(bank)
    tap = await start_wiretap(server.host, server.port)
    driver = FAMILIES["seplos_v2"].driver(None)
    try:
        with pytest.raises(ControlNotSupported):
            await driver.set_paths(1, charge=False)
        assert tap.requests == []
    finally:
        await tap.stop()
        await server.stop()


# --- A join whose inrush trips the BMS, read back over the wire ----------------


def _apart_bank(first: int) -> SimBank:
    """Two packs 2.4 V apart: joined, 60 A flows into the emptier, over its 50 A."""
    packs = [
        SimPack(address=first, serial="FULL", soc=0.99),
        SimPack(address=first + 1, serial="LOW", soc=0.2),
    ]
    for each in packs:
        each.internal_resistance, each.connection_resistance = 0.012, 0.008
    return SimBank(packs=packs)


async def test_a_jk_pack_joined_too_far_apart_trips_and_says_so() -> None:
    bank = _apart_bank(1)
    line = sim_jk.make_line(bank)
    driver = JkPbDriver(await _rtu(line, "pty"))
    await driver.connect()
    try:
        await driver.set_paths(2, charge=False, discharge=False)
        await driver.set_paths(2, charge=True, discharge=True)
        assert bank.pack(2).last_inrush == pytest.approx(60.0)
        reading = await driver.read_pack(2)
        assert "charge_overcurrent" in reading.protections
        assert (reading.charge_enabled, reading.discharge_enabled) == (False, False)
    finally:
        await driver.close()
        await line.stop()


async def test_a_pace_pack_over_a_serial_port_trips_on_a_bad_join() -> None:
    bank = _apart_bank(1)
    pty = await sim_pace.start_pty(bank)
    driver = PaceAsciiDriver.over_serial(pty.path, baudrate=9600, timeout=TIMEOUT)
    await driver.connect()
    try:
        await driver.set_paths(2, charge=False, discharge=False)
        assert (await driver.read_pack(2)).charge_enabled is False
        await driver.set_paths(2, charge=True, discharge=True)
        reading = await driver.read_pack(2)
        assert "charge_overcurrent" in reading.protections
        assert reading.charge_enabled is False
    finally:
        await driver.close()
        await pty.stop()
