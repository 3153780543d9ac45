"""A bank behind a TCP gateway whose RS485 speed the user gave: timed by the wire, as on a port.

The simulator plays the RS485 line behind a transparent gateway at its baud
rate (bytes at baud/10 per second, each pack answering after its answer
time) and serves it over loopback TCP; the bus is borrowed as the config
flow and the bank borrow it, timed by the wire. Nothing here measures
time: the timeout in use must be the one worked out from the wire (plus the
gateway's hop), learned from the packs and never below the wire time of the
longest reply; and a scan must find every pack.
"""

from __future__ import annotations

import pytest

from custom_components.rack_battery.protocol.bus import BusRegistry
from custom_components.rack_battery.protocol.connection import ConnectionSpec, Wire
from custom_components.rack_battery.protocol.discovery import discover, driver_on
from custom_components.rack_battery.protocol.errors import PackNotResponding
from custom_components.rack_battery.protocol.pylon.frame import encode_frame
from custom_components.rack_battery.protocol.timing import (
    DEFAULT_TIMEOUT,
    GATEWAY_HOP,
    HOST_SLACK,
    MIN_SAMPLES,
    PYLON_LONGEST,
    derived_timeout,
    family_timing,
    pylon_reply_bytes,
    wire_time,
)
from custom_components.rack_battery.protocol.transport.ascii_tcp import AsciiTcpTransport
from custom_components.rack_battery.protocol.transport.modbus_rtu import ModbusRtuTcpTransport
from simulator import pylontech_ascii
from simulator.bank import constant_load, make_bank
from simulator.pace_modbus_line import make_line, serve_paced_gateway

from .paced_helpers import (
    assert_every_pack_found_and_each_empty_address_asked_once,
    bank_at,
)

BAUD = 9600
PACE_ADDRESSES = (2, 5, 6, 11)
EMPTY = [address for address in range(1, 16) if address not in PACE_ADDRESSES]
# PACE's main read: an 8-byte request, at most 79 bytes back.
PACE_READ = {"request_bytes": 8, "reply_bytes": 79}


async def test_a_scan_through_a_paced_rtu_gateway_finds_every_pack_at_the_derived_timeout() -> None:
    bank = bank_at(PACE_ADDRESSES)
    line = make_line(bank)
    registry = BusRegistry(timeout=DEFAULT_TIMEOUT, wire_timed=True)
    try:
        host, port = await serve_paced_gateway(line, BAUD)
        spec = ConnectionSpec(wire=Wire.MODBUS_RTU_TCP, host=host, port=port, baudrate=BAUD)
        bus = registry.borrow(spec, "scan")
        transport = bus.transport(spec)
        assert isinstance(transport, ModbusRtuTcpTransport)
        found = await discover(bus, spec, ["pace_modbus"])
        stats = transport.stats
        # What an empty address was given: the wire, PACE's 200 ms and the
        # gateway's hop, not the flat second (no pack answers there, so
        # nothing was learned about it beyond the line's own answers).
        derived = derived_timeout(
            baudrate=BAUD, timing=family_timing("pace_modbus"), hop=GATEWAY_HOP, **PACE_READ
        )
        assert derived < DEFAULT_TIMEOUT
        # Each empty address waited at most that: the sum of what the scan
        # waited out is far from eleven flat seconds.
        assert 0 < transport.timer.waited <= len(EMPTY) * derived + 1e-9
        await registry.give_back(bus, "scan")
    finally:
        await line.stop()

    assert [pack.address for pack in bank.packs] == list(PACE_ADDRESSES)
    assert_every_pack_found_and_each_empty_address_asked_once(found, bank, stats, list(EMPTY))


async def test_a_paced_rtu_gateway_learns_each_packs_timeout_within_the_wire_and_the_document() -> (
    None
):
    """Before the line is known a silent unit waits the derived timeout; learned, the floor.

    Derived: (8 + 79) * 10 / 9600 = 0.090625 s, plus 200 ms, times 1.25, plus
    20 ms, plus the gateway's 50 ms: 0.43328125 s. Learned from the pack's
    replies, it stays between the floor (0.090625 + 0.2 + 0.02 + 0.05 s)
    and that.
    """
    line = make_line(bank_at((1,)))
    registry = BusRegistry(timeout=DEFAULT_TIMEOUT, wire_timed=True)
    try:
        host, port = await serve_paced_gateway(line, BAUD)
        spec = ConnectionSpec(wire=Wire.MODBUS_RTU_TCP, host=host, port=port, baudrate=BAUD)
        bus = registry.borrow(spec, "bank")
        driver = driver_on(bus, spec, "pace_modbus")
        transport = bus.transport(spec)
        assert isinstance(transport, ModbusRtuTcpTransport)
        await driver.connect()
        with pytest.raises(PackNotResponding, match=r"within 0\.433 s"):
            await driver.read_pack(7)
        for _ in range(MIN_SAMPLES):
            await driver.read_pack(1)
        # Learned from the pack's own replies through the gateway.
        assert len(transport.timer.latencies(1)) >= MIN_SAMPLES
        learned = transport.timer.timeout(1, **PACE_READ)
        floor = wire_time(8 + 79, BAUD) + 0.2 + HOST_SLACK + GATEWAY_HOP
        assert floor - 1e-9 <= learned <= 0.43328125 + 1e-9
        # Every byte of the longest reply fits in it, whatever was learned.
        assert learned > wire_time(79, BAUD)
        await registry.give_back(bus, "bank")
    finally:
        await line.stop()


async def test_without_the_speed_a_gateway_keeps_the_flat_timeout() -> None:
    """ "I don't know" (no baud rate in the spec) waits what it always did."""
    line = make_line(bank_at((1,)))
    registry = BusRegistry(timeout=DEFAULT_TIMEOUT, wire_timed=True)
    try:
        host, port = await serve_paced_gateway(line, BAUD)
        spec = ConnectionSpec(wire=Wire.MODBUS_RTU_TCP, host=host, port=port)
        bus = registry.borrow(spec, "bank")
        driver = driver_on(bus, spec, "pace_modbus")
        transport = bus.transport(spec)
        assert isinstance(transport, ModbusRtuTcpTransport)
        await driver.connect()
        for _ in range(MIN_SAMPLES):
            await driver.read_pack(1)
        # Replies came, but without the line's speed nothing is worked out.
        assert transport.timer.latencies(1) == ()
        assert transport.timer.timeout(1, **PACE_READ) == DEFAULT_TIMEOUT
        assert transport.timer.timeout(7, **PACE_READ) == DEFAULT_TIMEOUT
        await registry.give_back(bus, "bank")
    finally:
        await line.stop()


async def test_a_pylontech_group_through_a_paced_gateway_is_given_its_wire_time() -> None:
    """The whole group's reply may be the longest frame: 4113 bytes, 4.3 s at 9600 baud.

    A flat second could never wait for it; the gateway's derived timeout
    does, learning never takes it below that, and the scan finds every pack.
    """
    bank = make_bank(4, first_address=2, load=constant_load(20.0), seed=3)
    server = await pylontech_ascii.start_server(bank, baudrate=BAUD)
    registry = BusRegistry(timeout=DEFAULT_TIMEOUT, wire_timed=True)
    try:
        spec = ConnectionSpec(
            wire=Wire.ASCII_TCP, host=server.host, port=server.port, baudrate=BAUD
        )
        bus = registry.borrow(spec, "scan")
        transport = bus.transport(spec)
        assert isinstance(transport, AsciiTcpTransport)
        found = await discover(bus, spec, ["pylontech_rs485"])
        assert found is not None
        addresses = [pack.address for pack in found.packs]
        driver = driver_on(bus, spec, "pylontech_rs485")
        for _ in range(MIN_SAMPLES):
            async with bus.turn():
                report = await driver.poll(addresses)
            assert sorted(report.readings) == addresses
        group = encode_frame(0x20, 2, 0x46, 0x42, b"\xff")
        longest = pylon_reply_bytes(group)
        assert longest == PYLON_LONGEST
        timeout = transport.timer.timeout(2, request_bytes=len(group), reply_bytes=longest)
        assert timeout > wire_time(PYLON_LONGEST, BAUD) > DEFAULT_TIMEOUT
        stats = transport.stats
        await registry.give_back(bus, "scan")
    finally:
        await server.stop()

    assert addresses == [2, 3, 4, 5]
    assert [pack.serial for pack in found.packs] == [pack.serial for pack in bank.packs]
    assert all(pack.timeouts == 0 for pack in stats.packs.values())
    # The replies through the gateway taught the line its answer times.
    assert any(len(transport.timer.latencies(address)) >= MIN_SAMPLES for address in addresses)
