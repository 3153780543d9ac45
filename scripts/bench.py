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

from bench_framing import framers as text_framers  # type: ignore[import-not-found]  # beside this script
from bench_table import run as side_by_side  # type: ignore[import-not-found]  # beside this script

from custom_components.rack_battery.bank.analysis import BankAnalyzer
from custom_components.rack_battery.bank.control import (
    Change,
    ControlSettings,
    bank_view,
    judge,
    safe_limits,
)
from custom_components.rack_battery.bank.model import PackIdentity
from custom_components.rack_battery.protocol.catalog import open_driver
from custom_components.rack_battery.protocol.connection import ConnectionSpec, Wire
from custom_components.rack_battery.protocol.drivers.pace_modbus import decode_pack
from custom_components.rack_battery.protocol.drivers.pylontech_rs485 import PylontechRs485Driver
from custom_components.rack_battery.protocol.linkstats import LinkStats
from custom_components.rack_battery.protocol.modbus import (
    MbapReceiver,
    Request,
    RtuReceiver,
    read_request,
)
from custom_components.rack_battery.protocol.pylon.analog import decode_analog
from custom_components.rack_battery.protocol.pylon.frame import decode_frame, encode_frame
from custom_components.rack_battery.protocol.rtu import RtuSplitter, seal
from custom_components.rack_battery.protocol.transport.modbus_rtu import ModbusRtuTcpTransport
from custom_components.rack_battery.protocol.transport.modbus_tcp import (
    ModbusLink,
    ModbusTcpTransport,
)
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


NOISE_KB = 64
Receiver = RtuReceiver | MbapReceiver


def _mbap(transaction: int, rtu_frame: bytes) -> bytes:
    body = rtu_frame[:-2]
    return transaction.to_bytes(2, "big") + b"\x00\x00" + len(body).to_bytes(2, "big") + body


def _valid_frames(mbap: bool) -> list[bytes]:
    words = bytes(range(80))
    frames = [
        seal(bytes((1, 3, 80)) + words),  # the answer to 40 registers
        seal(bytes.fromhex("010300000028")),  # our request, echoed
        seal(bytes((2, 3, 80)) + words),  # another unit
        seal(bytes((1, 4, 80)) + words),  # another function
        seal(bytes.fromhex("01830B")),  # an exception
    ]
    return [_mbap(t, frame) for t in (1, 2) for frame in frames] if mbap else frames


def _mutated(rng: random.Random, frames: list[bytes], size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        frame = bytearray(rng.choice(frames))
        kind = rng.randrange(4)
        if kind == 1:
            frame[rng.randrange(len(frame))] = rng.randrange(256)
        elif kind == 2:
            frame = frame[: rng.randrange(len(frame))]
        elif kind == 3:
            frame = bytearray(rng.randbytes(rng.randrange(64)))
        out += frame
    return bytes(out[:size])


def _cpu_per_kb(make: Callable[[], Receiver], request: Request, data: bytes) -> float:
    """Return the CPU time, in us per KB, of framing ``data`` in 1 KB chunks."""
    receiver = make()
    receiver.expect(request)
    start = time.process_time()
    for at in range(0, len(data), 1024):
        receiver.feed(data[at : at + 1024])
    receiver.abandon()
    return (time.process_time() - start) * 1e6 / max(len(data) / 1024, 1 / 1024)


def framers() -> None:
    """What the Modbus reply framers cost, whatever arrives."""
    rng = random.Random(2026)
    request = read_request(1, 3, 0, 40)
    kinds: list[tuple[str, Callable[[], Receiver], bool]] = [
        ("rtu", lambda: RtuReceiver(LinkStats()), False),
        ("mbap", lambda: MbapReceiver(LinkStats()), True),
    ]
    for name, make, mbap in kinds:
        frames = _valid_frames(mbap)
        sizes = [rng.randrange(1024, NOISE_KB * 1024 + 1) for _ in range(60)]
        for label, inputs in (
            ("random noise", [rng.randbytes(size) for size in sizes]),
            ("mutated frames", [_mutated(rng, frames, size) for size in sizes]),
        ):
            worst = max(_cpu_per_kb(make, request, data) for data in inputs)
            total = sum(len(data) for data in inputs) // 1024
            _figure(
                f"{name} framer, {label}: {len(inputs)} inputs, {total} KB", worst, "us/KB worst"
            )
        # The costliest stream for RTU: a false start of the expected reply
        # every three bytes, each claiming a 255-byte frame.
        hostile = bytes.fromhex("0103FA") * (NOISE_KB * 1024 // 3)
        _figure(f"{name} framer, '01 03 FA' repeated", _cpu_per_kb(make, request, hostile), "us/KB")
        # One socket read hands over at most 256 KB: the longest a single feed can take.
        receiver = make()
        receiver.expect(request)
        lump = bytes.fromhex("0103FA") * (256 * 1024 // 3)
        start = time.process_time()
        receiver.feed(lump)
        _figure(
            f"{name} framer, 256 KB of that in one feed",
            (time.process_time() - start) * 1e3,
            "ms CPU",
        )
        noise = random.Random(1).randbytes(NOISE_KB * 1024)
        receiver = make()
        receiver.expect(request)
        start = time.process_time()
        for at in range(0, len(noise), 4096):
            receiver.feed(noise[at : at + 4096])
        receiver.abandon()
        _figure(f"{name} framer, 64 KB of noise", (time.process_time() - start) * 1e3, "ms CPU")


async def _noise_through(name: str, mbap: bool) -> None:
    """Send 64 KB of noise, then the answer, through a real transport over loopback."""
    noise = random.Random(3).randbytes(NOISE_KB * 1024)
    answer = seal(bytes.fromhex("01030200FF"))
    reply = noise + (_mbap(1, answer) if mbap else answer)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(64)
        for at in range(0, len(reply), 4096):
            writer.write(reply[at : at + 4096])
            await writer.drain()
        await reader.read(64)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    kind = ModbusTcpTransport if mbap else ModbusRtuTcpTransport
    transport = kind("127.0.0.1", port, timeout=10.0)
    longest = 0.0
    original = ModbusLink.data_received

    def timed(link: ModbusLink, data: bytes) -> None:
        nonlocal longest
        start = time.perf_counter()
        original(link, data)
        longest = max(longest, time.perf_counter() - start)

    setattr(ModbusLink, "data_received", timed)  # noqa: B010 - measured in place
    try:
        await transport.connect()
        start = time.process_time()
        values = await transport.read_holding_registers(1, 0, 1)
        cpu = time.process_time() - start
    finally:
        setattr(ModbusLink, "data_received", original)  # noqa: B010
        await transport.close()
        server.close()
        await server.wait_closed()
    assert values == [0xFF], values
    _figure(f"{name}: 64 KB noise + reply, process CPU", cpu * 1e3, "ms")
    _figure(f"{name}: longest data_received", longest * 1e3, "ms")


async def noise_wires() -> None:
    """64 KB of noise through the transports, over loopback."""
    await _noise_through("modbus rtu over tcp", mbap=False)
    await _noise_through("modbus tcp", mbap=True)


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


def control() -> None:
    """The guard's decision on a bank of 16 packs, and what a Pylontech hold costs the bus."""
    bank = make_bank(16, load=constant_load(300.0))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    settings = ControlSettings()
    snapshot = snapshot_of(bank, now)
    resistances = {pack.address: pack.internal_resistance for pack in bank.packs}

    def decide() -> None:
        view = bank_view(snapshot, now, settings, resistances=resistances)
        judge(Change.isolate(5), view, now, settings)

    view = bank_view(snapshot, now, settings, resistances=resistances)
    _figure("guard decision (view + judge), 16 packs", _median_us(decide), "us")
    _figure(
        "guard judge alone, 16 packs",
        _median_us(lambda: judge(Change.reconnect(5), view, now, settings)),
        "us",
    )
    _figure(
        "bank safe limits, 16 packs", _median_us(lambda: safe_limits(view.packs.values())), "us"
    )
    asyncio.run(_hold_cost())


async def _hold_cost() -> None:
    """Extra bus time per poll turn while every pack of an 8-pack Pylontech bank is held."""
    bank = make_bank(8, first_address=2)
    server = await pylontech_ascii.start_server(bank)
    driver = PylontechRs485Driver.over_tcp(server.host, server.port, timeout=1.0)
    await driver.connect()
    try:
        for address in range(2, 10):
            await driver.set_current_limits(address, charge=20.0, discharge=None)
        # Sent in every poll's turn and once more between two 10 s polls.
        per_send = await _median_ms(driver.send_holds, rounds=30)
        _figure("0x94 holds re-sent, 8 packs, per send", per_send, "ms")
        _figure("0x94 holds, 8 packs, bus time per 10 s poll (two sends)", 2 * per_send, "ms")
    finally:
        await driver.close()
        await server.stop()


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


def listen_framers() -> None:
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
    """Print every figure (``control`` alone: the guard's and the holds' figures)."""
    print(f"Python {sys.version.split()[0]}")
    if sys.argv[1:] == ["control"]:
        control()
        return 0
    decoders()
    framers()
    listen_framers()
    asyncio.run(noise_wires())
    text_framers()
    asyncio.run(wires())
    asyncio.run(__import__("bench_wire").run())  # paced 9600-baud line: poll and scan
    asyncio.run(__import__("bench_gateway").run())  # paced gateway: scan, speed given or not
    asyncio.run(__import__("bench_cadence").run())
    analysis()
    control()
    side_by_side()
    return 0


if __name__ == "__main__":
    sys.exit(main())
