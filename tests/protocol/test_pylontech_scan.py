"""A scan of a Pylontech bank asks only the addresses the master counts.

An address nobody holds is silent and costs a whole response timeout, so a
scan that asked all of 2 to 9 for a bank of four would wait out four of
them. The master's group read (0x42, command byte 0xFF) says how many packs
it reaches; these tests watch the wire to see that a scan asks no further
than that, and that every pack a full scan would find is still found when
the master cannot help: it refuses the group read, a slave below the top is
off the bus, or a pack was added after the first scan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from custom_components.rack_battery.protocol.bus import Bus, BusRegistry
from custom_components.rack_battery.protocol.connection import ConnectionSpec, Wire
from custom_components.rack_battery.protocol.discovery import discover, find_packs
from custom_components.rack_battery.protocol.drivers.pylontech_rs485 import PylontechRs485Driver
from custom_components.rack_battery.protocol.pylon.frame import (
    RTN_CID2_INVALID,
    Frame,
    decode_frame,
    encode_frame,
)
from simulator.bank import SimBank, constant_load, make_bank
from simulator.pylon_line import LineFaults
from simulator.pylontech_ascii import RunningServer, answer, start_server
from simulator.wiretap import Wiretap

from .raw_line import open_line

pytestmark = pytest.mark.usefixtures("socket_enabled")

FAMILY = "pylontech_rs485"
TIMEOUT = 0.3  # what a silent address costs; short, so a full scan stays quick
CID2_ANALOG = 0x42
CID2_MANUFACTURER_INFO = 0x51
# The group read, worked from the vector "~20024642E00202FD33": INFO "02"
# becomes "FF", '0' -> 'F' is +0x16 and '2' -> 'F' is +0x14, so the sum of
# the characters grows by 0x2A and the checksum drops to FD33 - 2A = FD09.
GROUP_READ = b"~20024642E002FFFD09\r"


def requests_in(chunks: list[bytes]) -> list[Frame]:
    """Return the requests that went down the wire, as frames, in order."""
    return [decode_frame(part + b"\r") for part in b"".join(chunks).split(b"\r") if part]


def addresses_asked(requests: list[Frame]) -> set[int]:
    return {request.adr for request in requests}


def identified(requests: list[Frame]) -> list[int]:
    """Return the addresses asked who they are (0x51 opens an identity read)."""
    return [request.adr for request in requests if request.cid2 == CID2_MANUFACTURER_INFO]


@pytest.fixture
def bank() -> SimBank:
    return make_bank(4, first_address=2, load=constant_load(30.0), seed=7)


@pytest.fixture
def faults() -> LineFaults:
    return LineFaults()


@pytest.fixture
async def server(bank: SimBank, faults: LineFaults) -> AsyncIterator[RunningServer]:
    running = await start_server(bank, faults=faults)
    yield running
    await running.stop()


type Borrow = Callable[[str, int], tuple[Bus, ConnectionSpec]]


@pytest.fixture
async def borrow() -> AsyncIterator[Borrow]:
    """Hand out the bus behind a host and port, as the config flow borrows it for a scan."""
    registry = BusRegistry(timeout=TIMEOUT)
    borrowed: list[Bus] = []

    def bus_at(host: str, port: int) -> tuple[Bus, ConnectionSpec]:
        spec = ConnectionSpec(wire=Wire.ASCII_TCP, host=host, port=port)
        borrowed.append(registry.borrow(spec, "scan"))
        return borrowed[-1], spec

    yield bus_at
    for bus in borrowed:
        await registry.give_back(bus, "scan")


async def test_a_scan_of_four_packs_asks_only_their_addresses(
    bank: SimBank, tap: Wiretap, borrow: Borrow
) -> None:
    bus, spec = borrow(tap.host, tap.port)
    shares: list[float] = []
    found = await discover(bus, spec, [FAMILY], progress=shares.append)

    assert found is not None
    assert found.family == FAMILY
    assert [pack.address for pack in found.packs] == [2, 3, 4, 5]
    assert [pack.serial for pack in found.packs] == [pack.serial for pack in bank.packs]
    requests = requests_in(tap.requests)
    # The master is asked for its group first; nothing past the fourth pack
    # is ever asked, so no silent address is waited for.
    assert b"".join(tap.requests).startswith(GROUP_READ)
    assert addresses_asked(requests) == {2, 3, 4, 5}
    assert identified(requests) == [2, 3, 4, 5]
    assert tap.overlaps == 0
    assert shares == sorted(shares)
    assert shares[-1] == 1.0


async def test_the_driver_scan_asks_only_the_packs_the_master_counts(
    bank: SimBank, tap: Wiretap
) -> None:
    # The driver on its own, as a script or the benchmark uses it.
    driver = PylontechRs485Driver.over_tcp(tap.host, tap.port, timeout=TIMEOUT)
    try:
        found = await driver.scan()
    finally:
        await driver.close()
    assert [pack.serial for pack in found] == [pack.serial for pack in bank.packs]
    assert addresses_asked(requests_in(tap.requests)) == {2, 3, 4, 5}


async def test_a_master_refusing_the_group_read_gets_the_full_scan(
    bank: SimBank, faults: LineFaults, tap: Wiretap, borrow: Borrow
) -> None:
    # Firmware that answers pack by pack only says "CID2 invalid" to 0xFF.
    faults.refuse_bank_reads = True
    bus, spec = borrow(tap.host, tap.port)
    found = await find_packs(bus, spec, FAMILY)

    assert [pack.serial for pack in found] == [pack.serial for pack in bank.packs]
    requests = requests_in(tap.requests)
    assert b"".join(tap.requests).startswith(GROUP_READ)
    # Every address the family allows is asked, as before there was a count.
    assert identified(requests) == list(PylontechRs485Driver.addresses)


def test_the_refusal_is_what_the_simulated_master_sends(faults: LineFaults) -> None:
    faults.refuse_bank_reads = True
    refused = answer(make_bank(2, first_address=2), GROUP_READ, faults)
    assert refused is not None
    reply = decode_frame(refused)
    assert (reply.adr, reply.cid2, reply.info) == (2, RTN_CID2_INVALID, b"")


async def test_a_slave_off_the_bus_does_not_hide_the_packs_above_it(
    bank: SimBank, tap: Wiretap, borrow: Borrow
) -> None:
    # The master counts the three packs it reaches: 2, 3 and 5. Its blocks
    # carry no address, so only asking says that 4 is the one missing.
    bank.take_off_bus(4)
    bus, spec = borrow(tap.host, tap.port)
    found = await find_packs(bus, spec, FAMILY)

    assert [pack.address for pack in found] == [2, 3, 5]
    requests = requests_in(tap.requests)
    assert addresses_asked(requests) == {2, 3, 4, 5}
    # 4 answered 0x91 through the master when its values were asked, so
    # the scan did not ask it who it is.
    assert identified(requests) == [2, 3, 5]


async def test_a_rescan_finds_a_pack_added_at_address_6(
    bank: SimBank, tap: Wiretap, borrow: Borrow
) -> None:
    bus, spec = borrow(tap.host, tap.port)
    first = await find_packs(bus, spec, FAMILY)
    assert [pack.address for pack in first] == [2, 3, 4, 5]

    # A fifth pack is wired in and takes the next address.
    added = make_bank(5, first_address=2, seed=8).packs[4]
    assert added.address == 6
    bank.packs.append(added)
    before = len(requests_in(tap.requests))
    again = await find_packs(bus, spec, FAMILY, skip={pack.address for pack in first})

    assert [pack.address for pack in again] == [6]
    assert again[0].serial == added.serial
    rescan = requests_in(tap.requests)[before:]
    assert max(addresses_asked(rescan)) == 6  # 7, 8 and 9 are not waited for
    assert identified(rescan) == [6]  # the known packs are not identified again


async def test_an_unusable_group_reply_gets_the_full_scan(bank: SimBank, borrow: Borrow) -> None:
    # The master claims four packs and sends none of their blocks.
    def truncated(request: bytes) -> bytes | None:
        if request == GROUP_READ:
            return encode_frame(0x20, 2, 0x46, 0x00, bytes((0x11, 4)))
        return answer(bank, request)

    line = await open_line(truncated)
    try:
        bus, spec = borrow(line.host, line.port)
        found = await find_packs(bus, spec, FAMILY)
    finally:
        await line.close()
    assert [pack.serial for pack in found] == [pack.serial for pack in bank.packs]
    assert identified(requests_in(line.requests)) == list(PylontechRs485Driver.addresses)
