"""Every family asks for a poll in its fewest requests, and never twice for the same thing.

Each family's simulator is served on loopback behind a wiretap, which sees
every request the driver sends. After the first poll (a SunSpec map walk,
the slow values), a poll of four packs costs exactly the family's minimum:

- PACE Modbus: one read of registers 0-36 per pack;
- Seplos V3: the pack block, the cell block (not adjacent: 0x1011-0x10FF
  lie between) and the event coils, three per pack;
- JK-PB: the three spans of the live block a reading decodes, each within
  the 40 registers these packs answer;
- SunSpec (a module per string, with the bank model 803): one 805 read per
  module and 803 once for every string's current, contactor and events;
- Pylontech: the master's two group reads for the whole bank; two per pack
  (0x42, 0x44) where its firmware refuses them; PACE and Seplos V2 over
  the ASCII protocol, which have no group read, two per pack.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from custom_components.rack_battery.protocol.drivers.base import BmsDriver
from custom_components.rack_battery.protocol.drivers.jk_pb import JkPbDriver
from custom_components.rack_battery.protocol.drivers.pace_ascii import PaceAsciiDriver
from custom_components.rack_battery.protocol.drivers.pace_modbus import PaceModbusDriver
from custom_components.rack_battery.protocol.drivers.pylontech_rs485 import PylontechRs485Driver
from custom_components.rack_battery.protocol.drivers.seplos_v2 import SeplosV2Driver
from custom_components.rack_battery.protocol.drivers.seplos_v3 import SeplosV3Driver
from custom_components.rack_battery.protocol.drivers.sunspec import SunSpecDriver
from custom_components.rack_battery.protocol.transport.modbus_tcp import ModbusTcpTransport
from simulator import (
    jk_pb as sim_jk,
    pace_ascii,
    pace_modbus,
    pylontech_ascii,
    seplos_v2,
    seplos_v3 as sim_seplos,
    sunspec,
)
from simulator.bank import SimBank, constant_load, make_bank
from simulator.wiretap import start_wiretap

pytestmark = pytest.mark.usefixtures("socket_enabled")

PACKS = 4
TIMEOUT = 0.5

type Serve = Callable[[SimBank], Awaitable[tuple[str, int, Any]]]


async def _server(start: Callable[..., Awaitable[Any]], bank: SimBank) -> tuple[str, int, Any]:
    server = await start(bank, "127.0.0.1", 0)
    return server.host, server.port, server


def _served_by(start: Callable[..., Awaitable[Any]]) -> Serve:
    return lambda bank: _server(start, bank)


def _line(make_line: Callable[[SimBank], Any]) -> Serve:
    async def serve(bank: SimBank) -> tuple[str, int, Any]:
        line = make_line(bank)
        host, port = await line.serve_modbus_tcp()
        return host, port, line

    return serve


@dataclass(frozen=True)
class Case:
    family: str
    first_address: int
    serve: Serve
    driver: Callable[[str, int], BmsDriver]
    per_poll: int  # requests of a steady poll of PACKS packs
    modbus_tcp: bool = True


CASES = [
    Case(
        "pace_modbus",
        1,
        _served_by(pace_modbus.start_server),
        lambda host, port: PaceModbusDriver.over_tcp(host, port, timeout=TIMEOUT, frame_gap=0),
        1 * PACKS,
    ),
    Case(
        "seplos_v3",
        1,
        _line(sim_seplos.make_line),
        lambda host, port: SeplosV3Driver(ModbusTcpTransport(host, port, timeout=TIMEOUT)),
        3 * PACKS,
    ),
    Case(
        "jk_pb",
        1,
        _line(sim_jk.make_line),
        lambda host, port: JkPbDriver(ModbusTcpTransport(host, port, timeout=TIMEOUT)),
        3 * PACKS,
    ),
    Case(
        "sunspec",
        1,
        _served_by(sunspec.start_server),
        lambda host, port: SunSpecDriver.over_tcp(host, port, timeout=TIMEOUT),
        # 803 with four string groups is 2 + 26 + 4 x 32 = 156 registers:
        # two reads of at most 125.
        PACKS + 2,
    ),
    Case(
        "pylontech_rs485",
        2,
        _served_by(pylontech_ascii.start_server),
        lambda host, port: PylontechRs485Driver.over_tcp(host, port, timeout=TIMEOUT),
        2,
        modbus_tcp=False,
    ),
    Case(
        "pylontech_rs485_per_pack_firmware",
        2,
        _served_by(pylontech_ascii.start_per_pack_server),
        lambda host, port: PylontechRs485Driver.over_tcp(host, port, timeout=TIMEOUT),
        2 * PACKS,
        modbus_tcp=False,
    ),
    Case(
        "pace_ascii",
        1,
        _served_by(pace_ascii.start_server),
        lambda host, port: PaceAsciiDriver.over_tcp(host, port, timeout=TIMEOUT),
        2 * PACKS,
        modbus_tcp=False,
    ),
    Case(
        "seplos_v2",
        0,
        _served_by(seplos_v2.start_server),
        lambda host, port: SeplosV2Driver.over_tcp(host, port, timeout=TIMEOUT),
        2 * PACKS,
        modbus_tcp=False,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.family)
async def test_a_poll_costs_the_family_minimum(case: Case) -> None:
    bank = make_bank(PACKS, first_address=case.first_address, load=constant_load(20.0))
    addresses = [pack.address for pack in bank.packs]
    host, port, server = await case.serve(bank)
    tap = await start_wiretap(host, port)
    driver = case.driver(tap.host, tap.port)
    try:
        await driver.connect()
        first = await driver.poll(addresses)
        assert first.failed == {}
        for _ in range(2):
            tap.requests.clear()
            report = await driver.poll(addresses)
            assert sorted(report.readings) == addresses
            assert len(tap.requests) == case.per_poll
            # Nothing asked twice in one poll (a Modbus TCP request differs
            # from the last only in its transaction id).
            asked = [r[2:] if case.modbus_tcp else r for r in tap.requests]
            assert len(set(asked)) == len(asked)
        for address in addresses:
            reading = report.readings[address]
            assert reading.voltage == pytest.approx(bank.pack(address).voltage, abs=0.011)
            assert reading.cell_voltages
    finally:
        await driver.close()
        await tap.stop()
        await server.stop()
