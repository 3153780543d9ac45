"""The Pylontech RS485 driver against the simulated bank over real loopback TCP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from custom_components.rack_battery.bank.model import PackIdentity, PackReading
from custom_components.rack_battery.protocol.drivers.pylontech_rs485 import (
    PylontechRs485Driver,
)
from custom_components.rack_battery.protocol.errors import (
    BusUnavailable,
    FrameError,
    PackNotResponding,
)
from custom_components.rack_battery.protocol.pylon.frame import (
    RTN_CHKSUM_ERROR,
    RTN_CID2_INVALID,
    RTN_FORMAT_ERROR,
    RTN_INVALID_DATA,
    decode_frame,
    encode_frame,
)
from custom_components.rack_battery.protocol.transport.ascii_tcp import AsciiTcpTransport
from simulator.bank import SimBank, SimPack, constant_load, make_bank
from simulator.pylontech_ascii import RunningServer, answer, start_server

from .raw_line import RawLine, open_line

# Home Assistant's test plugin blocks sockets; these tests need loopback TCP.
pytestmark = pytest.mark.usefixtures("socket_enabled")

ADDRESSES = [2, 3, 4, 5]


@pytest.fixture
def bank() -> SimBank:
    # Four 100 Ah packs under a 40 A load: every pack discharges.
    return make_bank(4, first_address=2, load=constant_load(40.0))


@pytest.fixture
async def server(bank: SimBank) -> AsyncIterator[RunningServer]:
    running = await start_server(bank)
    yield running
    await running.stop()


@pytest.fixture
async def driver(server: RunningServer) -> AsyncIterator[PylontechRs485Driver]:
    # Short enough that a silent master does not slow the suite down.
    pylontech = PylontechRs485Driver.over_tcp(server.host, server.port, timeout=0.3)
    await pylontech.connect()
    yield pylontech
    await pylontech.close()


def assert_reads_like(reading: PackReading, pack: SimPack) -> None:
    """Check a reading against the simulated pack within the wire's resolution."""
    assert reading.address == pack.address
    assert reading.voltage == pytest.approx(pack.voltage, abs=0.0005)  # 1 mV
    assert reading.current == pytest.approx(pack.current, abs=0.05)  # 0.1 A
    assert reading.cell_voltages == pytest.approx(pack.cell_voltages, abs=0.0005)
    assert reading.temperatures == pytest.approx(
        (pack.temperature, *pack.cell_temperatures), abs=0.05
    )  # 0.1 K
    assert reading.mosfet_temperature == pytest.approx(pack.mosfet_temperature, abs=0.05)
    assert reading.remaining_capacity == pytest.approx(pack.remaining_capacity, abs=0.0005)
    assert reading.full_capacity == pytest.approx(pack.full_capacity, abs=0.0005)
    assert reading.cycles == pack.cycles
    assert reading.soc == pytest.approx(100.0 * pack.soc, abs=0.06)


async def test_every_pack_reads_like_the_bank(bank: SimBank, driver: PylontechRs485Driver) -> None:
    for address in ADDRESSES:
        reading = await driver.read_pack(address)
        assert_reads_like(reading, bank.pack(address))
        assert reading.current is not None
        assert reading.current < 0  # discharging under the load
        assert len(reading.cell_voltages) == 16


async def test_values_are_taken_when_asked(bank: SimBank, driver: PylontechRs485Driver) -> None:
    before = await driver.read_pack(3)
    bank.step(1800.0)
    after = await driver.read_pack(3)
    assert_reads_like(after, bank.pack(3))
    assert after.remaining_capacity is not None
    assert before.remaining_capacity is not None
    assert after.remaining_capacity < before.remaining_capacity


async def test_small_packs_send_sixteen_bit_capacities() -> None:
    # Up to 65 Ah a pack sends two user-defined items, capacity in 16 bits.
    bank = make_bank(2, first_address=2, capacity=50.0)
    running = await start_server(bank)
    pylontech = PylontechRs485Driver.over_tcp(running.host, running.port)
    try:
        for address in (2, 3):
            assert_reads_like(await pylontech.read_pack(address), bank.pack(address))
    finally:
        await pylontech.close()
        await running.stop()


async def test_poll_reports_every_pack(bank: SimBank, driver: PylontechRs485Driver) -> None:
    report = await driver.poll(ADDRESSES)
    assert sorted(report.readings) == ADDRESSES
    assert report.failed == {}


async def test_offline_slave_is_reported_not_fatal(
    bank: SimBank, driver: PylontechRs485Driver
) -> None:
    bank.take_off_bus(4)
    with pytest.raises(PackNotResponding, match=r"ADR 4 answered RTN 0x91"):
        await driver.read_pack(4)
    report = await driver.poll(ADDRESSES)
    assert sorted(report.readings) == [2, 3, 5]
    assert list(report.failed) == [4]
    assert "0x91" in report.failed[4]
    for address in (2, 3, 5):
        assert_reads_like(report.readings[address], bank.pack(address))

    bank.put_on_bus(4)
    assert_reads_like(await driver.read_pack(4), bank.pack(4))


async def test_offline_master_silences_the_line(
    bank: SimBank, driver: PylontechRs485Driver
) -> None:
    bank.take_off_bus(2)
    with pytest.raises(PackNotResponding, match=r"no answer .* within 0\.3 s"):
        await driver.read_pack(2)
    # Nobody relays for the slaves either, and a bus that answers nobody is down.
    with pytest.raises(BusUnavailable, match="no pack answered"):
        await driver.poll([2, 3])


async def test_unknown_address_is_silent(driver: PylontechRs485Driver) -> None:
    with pytest.raises(PackNotResponding):
        await driver.read_pack(9)


async def test_closed_server_is_bus_unavailable_until_it_returns(
    bank: SimBank, server: RunningServer, driver: PylontechRs485Driver
) -> None:
    await driver.read_pack(2)
    await server.stop()
    with pytest.raises(BusUnavailable):
        await driver.read_pack(2)
    with pytest.raises(BusUnavailable, match="cannot connect"):
        await driver.poll(ADDRESSES)

    # The gateway comes back on the same port: the driver reconnects by itself.
    again = await start_server(bank, server.host, server.port)
    try:
        assert_reads_like(await driver.read_pack(2), bank.pack(2))
    finally:
        await again.stop()


async def test_connect_to_nothing_is_bus_unavailable(server: RunningServer) -> None:
    await server.stop()
    pylontech = PylontechRs485Driver.over_tcp(server.host, server.port)
    with pytest.raises(BusUnavailable, match="cannot connect"):
        await pylontech.connect()


async def test_identity(bank: SimBank, driver: PylontechRs485Driver) -> None:
    pack = bank.pack(3)
    identity = await driver.read_identity(3)
    assert identity == PackIdentity(
        address=3,
        family="pylontech_rs485",
        manufacturer=pack.manufacturer,
        model=pack.model,
        serial=pack.serial,
        firmware="1.4.0",  # 0x96's main line: the simulator's "V1.4" as 01 04 00
        cell_count=16,
        design_capacity=None,
    )
    assert identity.key == pack.serial


async def test_scan_skips_offline_packs(bank: SimBank, driver: PylontechRs485Driver) -> None:
    bank.take_off_bus(4)
    found = await driver.scan(ADDRESSES)
    assert [identity.address for identity in found] == [2, 3, 5]
    assert [identity.serial for identity in found] == [bank.pack(a).serial for a in (2, 3, 5)]


def test_driver_contract() -> None:
    assert PylontechRs485Driver.family == "pylontech_rs485"
    assert list(PylontechRs485Driver.addresses) == [2, 3, 4, 5, 6, 7, 8, 9]


# ---------------------------------------------------------------------------
# Lines that do what the simulated packs do not

# The Pylontech V3.3 document's worked 0x42 reply (ADR 2), checksum corrected
# to E27A (see test_pylon_frame.py).
V33_REPLY = (
    b"~20024600F07A11020F0D450D440D450D440D450D440D3E0D450D4A0D4A0D4B0D4A0D4A0D4A0D4A"
    b"050BC30BC30BC30BCD0BCD0000C725FFFF04FFFF000200CA58012110E27A\r"
)


def _document_pack(request: bytes) -> bytes:
    """Answer 0x42 with the document's reply and refuse the rest, as old firmware does."""
    if request[7:9] == b"42":
        return V33_REPLY
    return encode_frame(0x20, 2, 0x46, RTN_CID2_INVALID)


@pytest.fixture
async def document_line() -> AsyncIterator[RawLine]:
    line = await open_line(_document_pack)
    yield line
    await line.close()


async def test_the_document_example_through_the_driver(document_line: RawLine) -> None:
    pylontech = PylontechRs485Driver.over_tcp(document_line.host, document_line.port)
    reading = await pylontech.read_pack(2)
    # 0x42, then 0x44 and 0x92, which this pack refuses as unknown. From
    # FD33: CID2 "44" is "42" +2 -> FD31; "92" is "42" with '4' -> '9', +5 -> FD2E.
    assert document_line.requests == [
        b"~20024642E00202FD33\r",
        b"~20024644E00202FD31\r",
        b"~20024692E00202FD2E\r",
    ]
    assert reading.warnings == frozenset()
    assert reading.charge_current_limit is None
    assert reading.voltage == pytest.approx(50.981)
    assert reading.soc == pytest.approx(70.0)
    await pylontech.close()


async def test_answer_from_another_address_is_a_frame_error(document_line: RawLine) -> None:
    pylontech = PylontechRs485Driver.over_tcp(document_line.host, document_line.port)
    with pytest.raises(FrameError, match="asked ADR 3, the answer came from ADR 2"):
        await pylontech.read_pack(3)
    # A poll keeps going past a confused pack and says what went wrong.
    report = await pylontech.poll([2, 3])
    assert list(report.readings) == [2]
    assert "ADR 2" in report.failed[3]
    await pylontech.close()


async def test_identity_of_a_pack_without_serial_command(bank: SimBank) -> None:
    # Firmware older than 0x93 refuses it with "CID2 invalid".
    def old_firmware(request: bytes) -> bytes | None:
        if request[7:9] == b"93":
            return encode_frame(0x20, int(request[3:5], 16), 0x46, RTN_CID2_INVALID)
        return answer(bank, request)

    line = await open_line(old_firmware)
    pylontech = PylontechRs485Driver.over_tcp(line.host, line.port)
    try:
        identity = await pylontech.read_identity(2)
    finally:
        await pylontech.close()
        await line.close()
    assert identity.serial is None
    assert identity.key == "slot_2"
    assert identity.model == bank.pack(2).model


# ---------------------------------------------------------------------------
# The simulator's refusals, on the wire


@pytest.mark.parametrize(
    ("request_bytes", "code"),
    [
        # Checksums worked from the vectors in test_pylon_frame.py: a character
        # that is n higher takes n off the checksum.
        (b"~20024642E00202FD34\r", RTN_CHKSUM_ERROR),  # FD33 is right
        # Command byte 03 sent to ADR 2: last INFO character +1 -> FD32.
        (b"~20024642E00203FD32\r", RTN_INVALID_DATA),
        # 0x42 without its command byte: from "200046510000" (FDAE), ADR +2,
        # CID2 "51" -> "42" is -1 +1 -> FDAC.
        (b"~200246420000FDAC\r", RTN_FORMAT_ERROR),
        # CID2 99, which Pylontech does not define: "42" -> "99" is +5 +7 -> FD27.
        (b"~20024699E00202FD27\r", RTN_CID2_INVALID),
    ],
)
async def test_simulator_refusals(server: RunningServer, request_bytes: bytes, code: int) -> None:
    transport = AsciiTcpTransport(server.host, server.port, timeout=0.3)
    try:
        reply = decode_frame(await transport.transact(request_bytes))
    finally:
        await transport.close()
    assert (reply.adr, reply.cid2, reply.info) == (2, code, b"")
