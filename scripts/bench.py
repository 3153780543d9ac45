"""Print the figures that say how fast the protocol stack and the rules are.

Every figure is a median over repeated runs on this machine, against the
simulator over real loopback sockets where a wire is involved. Nothing here
asserts a number: tests never time anything, this script only reports.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
import random
import statistics
import sys
import time
from typing import Any, Protocol

from custom_components.rack_battery.bank.analysis import BankAnalyzer
from custom_components.rack_battery.bank.model import PackIdentity
from custom_components.rack_battery.protocol.catalog import open_driver
from custom_components.rack_battery.protocol.connection import ConnectionSpec, Wire
from custom_components.rack_battery.protocol.drivers.pace_modbus import decode_pack
from custom_components.rack_battery.protocol.pylon.analog import decode_analog
from custom_components.rack_battery.protocol.pylon.frame import decode_frame, encode_frame
from custom_components.rack_battery.protocol.rtu import RtuSplitter, seal
from simulator import jk_pb as sim_jk, pace_modbus, pylontech_ascii
from simulator.bank import SimBank, constant_load, make_bank
from simulator.modbus_line import master_request
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


def _feed_ms(splitter: RtuSplitter, data: bytes) -> float:
    """Return the CPU time (ms) of one feed, every frame taken out."""
    start = time.process_time()
    for _ in splitter.feed(data):
        pass
    return (time.process_time() - start) * 1e3


def _split(splitter: RtuSplitter, data: bytes, chunk: int = 4096) -> float:
    """Return the worst CPU time (ms) of one feed of ``chunk`` bytes, as a read delivers them."""
    worst = 0.0
    for start in range(0, len(data), chunk):
        piece = data[start : start + chunk]
        worst = max(worst, _feed_ms(splitter, piece))
    return worst


def _framer_inputs() -> dict[str, bytes]:
    """Return 64 KB inputs: random noise, noise made of frame starts, and a real master bus."""
    rng = random.Random(1)
    size = 65536
    bank = make_bank(3, first_address=0, load=constant_load(30.0))
    live, settings = sim_jk.TRIGGER_LIVE, sim_jk.TRIGGER_SETTINGS
    cycle = b""
    for pack in bank.packs:
        for trigger in (live, settings):
            ack = seal(bytes((pack.address, 0x10)) + trigger.to_bytes(2, "big") + b"\x00\x01")
            asked = master_request(pack.address, 0x10, trigger, 1) if pack.address else b""
            cycle += asked + sim_jk.pack_frame(pack, trigger) + ack
    bus = (cycle * (size // len(cycle) + 1))[:size]
    mutated = bytearray(bus)
    for _ in range(2000):
        mutated[rng.randrange(size)] = rng.randrange(256)
    return {
        "random noise": rng.randbytes(size),
        "read-reply headers (01 03 FA ...)": (b"\x01\x03\xfa" * size)[:size],
        "JK headers (55 AA EB 90 ...)": (b"\x55\xaa\xeb\x90" * size)[:size],
        "write requests (01 10 16 20 00 7B F6 ...)": (bytes.fromhex("01101620007BF6") * size)[
            :size
        ],
        "JK-PB master bus": bus,
        "JK-PB master bus, 2000 bytes hit": bytes(mutated),
    }


def framers() -> None:
    """CPU for 64 KB through the RTU/55AA splitter: a listener, detect_master, the simulator."""
    inputs = _framer_inputs()
    makers: dict[str, Callable[[], RtuSplitter]] = {
        "listener (units 0-15)": lambda: RtuSplitter(range(16), unasked=False),
        "detect_master (any unit)": lambda: RtuSplitter(unasked=False),
        "simulator (any unit, any frame)": RtuSplitter,
    }
    for name, make in makers.items():
        worst_per_kb = 0.0
        for label, data in inputs.items():
            splitter = make()
            total = _feed_ms(splitter, data)
            worst_feed = _split(make(), data)
            worst_per_kb = max(worst_per_kb, total / (len(data) / 1024))
            _figure(f"splitter {name}: {label}, 64 KB", total, "ms")
            _figure("  worst 4 KB read of it", worst_feed, "ms")
        print(f"splitter {name}: {len(inputs)} inputs tried, worst {worst_per_kb:.3f} ms per KB")


def main() -> int:
    """Print every figure."""
    print(f"Python {sys.version.split()[0]}")
    framers()
    decoders()
    asyncio.run(wires())
    analysis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
