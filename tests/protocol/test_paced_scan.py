"""Scans on a serial line at its real speed: every pack found, each empty address asked once.

The simulator plays the line at 9600 baud (bytes at baud/10 per second,
each pack answering after its own answer time), and the bus is borrowed
as the config flow borrows it, timed by the wire. Nothing here measures
time: the scan must find what is there and ask nothing twice.
"""

from __future__ import annotations

import pytest

from custom_components.rack_battery.protocol.bus import BusRegistry
from custom_components.rack_battery.protocol.connection import ConnectionSpec, Wire
from custom_components.rack_battery.protocol.discovery import discover
from custom_components.rack_battery.protocol.drivers.pace_modbus import PaceModbusDriver
from custom_components.rack_battery.protocol.errors import PackNotResponding
from custom_components.rack_battery.protocol.timing import MIN_SAMPLES
from custom_components.rack_battery.protocol.transport.modbus_rtu import ModbusSerialTransport
from simulator import pylontech_ascii, seplos_v3
from simulator.bank import constant_load, make_bank
from simulator.pace_modbus_line import make_line, open_paced_pty
from simulator.paced import answer_time

from .paced_helpers import (
    asked,
    assert_every_pack_found_and_each_empty_address_asked_once,
    bank_at,
)

BAUD = 9600
PACE_ADDRESSES = (2, 5, 6, 11)


async def test_a_paced_pace_line_with_gaps_gives_up_every_pack() -> None:
    bank = bank_at(PACE_ADDRESSES)
    line = make_line(bank)
    try:
        spec = ConnectionSpec(
            wire=Wire.MODBUS_RTU_SERIAL, serial_port=open_paced_pty(line, BAUD), baudrate=BAUD
        )
        registry = BusRegistry(timeout=1.0, wire_timed=True)
        bus = registry.borrow(spec, "scan")
        found = await discover(bus, spec, ["pace_modbus"])
        stats = bus.transport(spec).stats
        await registry.give_back(bus, "scan")
    finally:
        await line.stop()

    assert [pack.address for pack in bank.packs] == list(PACE_ADDRESSES)
    empty = [address for address in range(1, 16) if address not in PACE_ADDRESSES]
    assert_every_pack_found_and_each_empty_address_asked_once(found, bank, stats, empty)


async def test_a_paced_pylontech_line_is_scanned_only_as_far_as_the_master_counts() -> None:
    bank = make_bank(4, first_address=2, load=constant_load(20.0), seed=3)
    pty = await pylontech_ascii.start_pty(bank, baudrate=BAUD)
    try:
        spec = ConnectionSpec(wire=Wire.ASCII_SERIAL, serial_port=pty.path, baudrate=BAUD)
        registry = BusRegistry(timeout=1.0, wire_timed=True)
        bus = registry.borrow(spec, "scan")
        found = await discover(bus, spec, ["pylontech_rs485"])
        stats = bus.transport(spec).stats
        await registry.give_back(bus, "scan")
    finally:
        await pty.stop()

    assert found is not None
    assert [pack.address for pack in found.packs] == [2, 3, 4, 5]
    assert [pack.serial for pack in found.packs] == [pack.serial for pack in bank.packs]
    # The master's count kept the scan off the empty addresses 6 to 9, and
    # no pack failed to answer in time at 9600 baud.
    assert set(asked(stats)) == {2, 3, 4, 5}
    assert all(pack.timeouts == 0 for pack in stats.packs.values())


async def test_a_paced_seplos_line_asks_only_the_units_its_master_lists() -> None:
    """Units 0 to 3 hold packs, 2 is off its link: the master's online flag leaves 4 to 15 out."""
    bank = make_bank(4, first_address=0, load=constant_load(20.0), seed=5)
    bank.take_off_bus(2)
    line = seplos_v3.make_line(bank)
    try:
        path = line.open_pty(baudrate=19200, answer_time=answer_time("seplos_v3"))
        spec = ConnectionSpec(wire=Wire.MODBUS_RTU_SERIAL, serial_port=path, baudrate=19200)
        registry = BusRegistry(timeout=1.0, wire_timed=True)
        bus = registry.borrow(spec, "scan")
        found = await discover(bus, spec, ["seplos_v3"])
        stats = bus.transport(spec).stats
        await registry.give_back(bus, "scan")
    finally:
        await line.stop()

    assert found is not None
    assert [pack.address for pack in found.packs] == [0, 1, 3]
    assert set(asked(stats)) == {0, 1, 3}
    assert all(pack.timeouts == 0 for pack in stats.packs.values())


async def test_a_silent_unit_waits_what_the_wire_and_the_pace_document_need() -> None:
    """0.383 s at 9600 baud before the line is known, the documented 0.311 s floor after.

    (8 + 79) bytes * 10 / 9600 = 0.0906 s, plus PACE's 200 ms, times 1.25,
    plus 20 ms; learned from fast replies, never below 0.0906 + 0.2 + 0.02.
    """
    line = make_line(bank_at((1,)))
    try:
        path = open_paced_pty(line, BAUD)
        timed = PaceModbusDriver(ModbusSerialTransport(path, baudrate=BAUD, wire_timed=True))
        await timed.connect()
        with pytest.raises(PackNotResponding, match=r"within 0\.383 s"):
            await timed.read_pack(7)
        for _ in range(MIN_SAMPLES):
            await timed.read_pack(1)
        with pytest.raises(PackNotResponding, match=r"within 0\.311 s"):
            await timed.read_pack(8)
        await timed.close()
        # Not timed by the wire (as a caller that asks for a flat timeout).
        flat = PaceModbusDriver(ModbusSerialTransport(path, baudrate=BAUD, timeout=0.5))
        await flat.connect()
        with pytest.raises(PackNotResponding, match=r"within 0\.5 s"):
            await flat.read_pack(7)
        await flat.close()
    finally:
        await line.stop()
