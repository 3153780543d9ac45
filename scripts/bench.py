"""Print the figures that say how fast the protocol stack and the rules are.

Every figure is a median over repeated runs on this machine, against the
simulator over real loopback sockets where a wire is involved. Nothing here
asserts a number: tests never time anything, this script only reports.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
import statistics
import sys
import time
from typing import Any, Protocol

from bench_framing import framers  # type: ignore[import-not-found]  # beside this script

from custom_components.rack_battery.bank.analysis import BankAnalyzer
from custom_components.rack_battery.bank.model import PackIdentity
from custom_components.rack_battery.protocol.catalog import open_driver
from custom_components.rack_battery.protocol.connection import ConnectionSpec, Wire
from custom_components.rack_battery.protocol.drivers.pace_modbus import decode_pack
from custom_components.rack_battery.protocol.pylon.analog import decode_analog
from custom_components.rack_battery.protocol.pylon.frame import decode_frame, encode_frame
from simulator import pace_modbus, pylontech_ascii
from simulator.bank import SimBank, constant_load, make_bank
from simulator.pace_modbus import encode_pack
from simulator.readings import snapshot_of


class Serve(Protocol):
    """Starts a simulator personality."""

    def __call__(self, bank: SimBank, host: str, port: int) -> Awaitable[Any]:
        """Serve the bank."""
        ...


def _median_us(fn: Callable[[], object], rounds: int = 2000) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


async def _median_ms(fn: Callable[[], Awaitable[object]], rounds: int = 50) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def _figure(label: str, value: float, unit: str) -> None:
    print(f"{label:48s} {value:10.2f} {unit}")


def decoders() -> None:
    """Decoding cost per pack, without any wire."""
    pack = make_bank(1, first_address=2).packs[0]
    frame = encode_frame(0x20, 2, 0x46, 0x00, pylontech_ascii.analog_info(pack))
    registers = encode_pack(make_bank(1).packs[0])[:37]
    _figure(
        "pylon 0x42 frame + decode, per pack",
        _median_us(lambda: decode_analog(decode_frame(frame).info, address=2)),
        "us",
    )
    _figure("pace modbus decode, per pack", _median_us(lambda: decode_pack(1, registers)), "us")


async def _wire(name: str, serve: Serve, wire: Wire, family: str, first: int) -> None:
    bank = make_bank(4, first_address=first, load=constant_load(30.0))
    server = await serve(bank, "127.0.0.1", 0)
    driver = open_driver(ConnectionSpec(wire=wire, host=server.host, port=server.port), family)
    await driver.connect()
    addresses = [pack.address for pack in bank.packs]
    _figure(f"{name}: poll of 4 packs", await _median_ms(lambda: driver.poll(addresses)), "ms")

    async def identify_each() -> None:
        for address in addresses:
            await driver.read_identity(address)

    # What a scan cannot do without: the bar the scan below is measured by.
    _figure(f"{name}: identity of 4 packs", await _median_ms(identify_each, rounds=20), "ms")
    # Asks what the driver's scan_addresses names: for Pylontech, only the
    # packs the master counts; silent addresses would cost a timeout each.
    _figure(f"{name}: scan of the family's range", await _median_ms(driver.scan, rounds=20), "ms")
    await driver.close()
    await server.stop()


async def wires() -> None:
    """Poll and scan times over loopback against the simulator."""
    await _wire("pace modbus tcp", pace_modbus.start_server, Wire.MODBUS_TCP, "pace_modbus", 1)
    await _wire(
        "pylontech ascii tcp", pylontech_ascii.start_server, Wire.ASCII_TCP, "pylontech_rs485", 2
    )


def analysis() -> None:
    """One analyzer update for a bank of 16 packs."""
    bank = make_bank(16, load=constant_load(60.0))
    identities = {
        pack.address: PackIdentity(address=pack.address, family="pace_modbus", serial=pack.serial)
        for pack in bank.packs
    }
    analyzer = BankAnalyzer()
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def update() -> None:
        nonlocal now
        now += timedelta(seconds=10)
        bank.step(10)
        analyzer.update(snapshot_of(bank, now), identities, now)

    _figure("analyzer update, 16 packs, per poll", _median_us(update, rounds=500), "us")


def main() -> int:
    """Print every figure."""
    print(f"Python {sys.version.split()[0]}")
    decoders()
    framers()
    asyncio.run(wires())
    analysis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
