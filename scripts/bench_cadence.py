"""Requests and bytes on the wire per poll, for every family that is asked, at 1, 4 and 16 packs.

Each family's simulator is served on loopback behind a wiretap, which
counts what the driver sends and what comes back. The first poll reads
what a bank reads once (a SunSpec map, the slow values of
``protocol/cadence.py``); the figures are of the polls after it, when no
slow read is due, and of a poll when one is. Counts, not timings: they
are the same on every machine. Pylontech CAN is left out: it listens and
sends nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from custom_components.rack_battery.protocol.cadence import SlowReads
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

PACK_COUNTS = (1, 4, 16)
POLLS = 3  # steady polls measured after the first

Stop = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Bench:
    """One family on one wire: where its packs start, how it is served and read."""

    name: str
    first_address: int
    serve: Callable[[SimBank], Awaitable[tuple[str, int, Stop]]]
    driver: Callable[[str, int], BmsDriver]


def _stopper(server: Any) -> Stop:
    async def stop() -> None:
        await server.stop()

    return stop


async def _pace_modbus(bank: SimBank) -> tuple[str, int, Stop]:
    server = await pace_modbus.start_server(bank, "127.0.0.1", 0)
    return server.host, server.port, _stopper(server)


async def _sunspec(bank: SimBank) -> tuple[str, int, Stop]:
    server = await sunspec.start_server(bank, "127.0.0.1", 0)
    return server.host, server.port, _stopper(server)


def _modbus_line(make_line: Callable[[SimBank], Any]) -> Callable[..., Any]:
    async def serve(bank: SimBank) -> tuple[str, int, Stop]:
        line = make_line(bank)
        host, port = await line.serve_modbus_tcp()
        return host, port, _stopper(line)

    return serve


def _pylon_line(start: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    async def serve(bank: SimBank) -> tuple[str, int, Stop]:
        server = await start(bank, "127.0.0.1", 0)
        return server.host, server.port, _stopper(server)

    return serve


BENCHES = (
    Bench(
        "pace_modbus",
        1,
        _pace_modbus,
        lambda host, port: PaceModbusDriver.over_tcp(host, port, frame_gap=0),
    ),
    Bench(
        "seplos_v3",
        0,
        _modbus_line(sim_seplos.make_line),
        lambda host, port: SeplosV3Driver(ModbusTcpTransport(host, port)),
    ),
    Bench(
        "jk_pb",
        1,
        _modbus_line(sim_jk.make_line),
        lambda host, port: JkPbDriver(ModbusTcpTransport(host, port)),
    ),
    Bench("sunspec (805 modules)", 1, _sunspec, SunSpecDriver.over_tcp),
    Bench(
        "pylontech_rs485 (group read)",
        2,
        _pylon_line(pylontech_ascii.start_server),
        PylontechRs485Driver.over_tcp,
    ),
    Bench(
        "pylontech_rs485 (per-pack firmware)",
        2,
        _pylon_line(pylontech_ascii.start_per_pack_server),
        PylontechRs485Driver.over_tcp,
    ),
    Bench("pace_ascii", 1, _pylon_line(pace_ascii.start_server), PaceAsciiDriver.over_tcp),
    Bench("seplos_v2", 0, _pylon_line(seplos_v2.start_server), SeplosV2Driver.over_tcp),
)


@dataclass(frozen=True)
class Figures:
    """What the wiretap saw, per poll."""

    requests: float
    request_bytes: float
    reply_bytes: float
    slow_requests: float  # requests of a poll in which the slow reads are due


async def measure(bench: Bench, packs: int) -> Figures:
    """Return one family's requests and bytes per poll for a bank of ``packs``."""
    bank = make_bank(packs, first_address=bench.first_address, load=constant_load(10.0))
    addresses = [pack.address for pack in bank.packs]
    host, port, stop = await bench.serve(bank)
    tap = await start_wiretap(host, port)
    driver = bench.driver(tap.host, tap.port)
    now = [0.0]
    if isinstance(driver, PylontechRs485Driver):
        driver.limits = SlowReads(clock=lambda: now[0])
    try:
        await driver.connect()
        report = await driver.poll(addresses)
        if report.failed:
            raise RuntimeError(f"{bench.name}: packs failed: {dict(report.failed)}")
        before = (len(tap.requests), tap.request_bytes, tap.reply_bytes)
        for _ in range(POLLS):
            await driver.poll(addresses)
        requests = (len(tap.requests) - before[0]) / POLLS
        request_bytes = (tap.request_bytes - before[1]) / POLLS
        reply_bytes = (tap.reply_bytes - before[2]) / POLLS
        now[0] += 3600.0  # past any slow cadence
        counted = len(tap.requests)
        await driver.poll(addresses)
        slow = len(tap.requests) - counted
    finally:
        await driver.close()
        await tap.stop()
        await stop()
    return Figures(requests, request_bytes, reply_bytes, slow)


async def run() -> None:
    """Print requests and bytes per poll, per family, for 1, 4 and 16 packs."""
    print("requests and bytes per poll (steady; requests when slow reads are due)")
    print(f"{'family':36s} {'packs':>5s} {'requests':>9s} {'req/pack':>9s} "
          f"{'bytes out':>10s} {'bytes in':>10s} {'slow poll':>10s}")  # fmt: skip
    for bench in BENCHES:
        for packs in PACK_COUNTS:
            figures = await measure(bench, packs)
            print(
                f"{bench.name:36s} {packs:5d} {figures.requests:9.1f} "
                f"{figures.requests / packs:9.2f} {figures.request_bytes:10.0f} "
                f"{figures.reply_bytes:10.0f} {figures.slow_requests:10.0f}"
            )


if __name__ == "__main__":
    import asyncio

    asyncio.run(run())
