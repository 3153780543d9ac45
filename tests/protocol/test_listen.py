"""Listen-only mode: per-pack readings from a simulated master's traffic, sending nothing.

The simulated line counts every byte that arrives at it from outside; the
listener must leave that count at zero on every wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import os
import random

import pytest

from custom_components.rack_battery.protocol.connection import ConnectionSpec, Wire
from custom_components.rack_battery.protocol.errors import (
    BusUnavailable,
    PackNotResponding,
    SerialPortMissing,
)
from custom_components.rack_battery.protocol.listen import (
    BusListener,
    ByteSource,
    SerialSource,
    TcpSource,
    detect_master,
    open_listener,
    source_for,
)
from custom_components.rack_battery.protocol.rtu import seal
from simulator import jk_pb as sim_jk, seplos_v3 as sim_seplos
from simulator.bank import SimBank, constant_load, make_bank
from simulator.modbus_line import Fault, ModbusLine, master_request

pytestmark = pytest.mark.usefixtures("socket_enabled")

# How long a test waits for the bus at most before it fails (not a sleep).
PATIENCE = 5.0


async def until(listener: BusListener, condition: Callable[[], bool]) -> None:
    """Wait, on the listener's own activity, until a condition holds."""
    async with asyncio.timeout(PATIENCE):
        while not condition():
            listener.activity.clear()
            await listener.activity.wait()


async def open_source(line: ModbusLine, wire: str, baudrate: int) -> ByteSource:
    if wire == "pty":
        return SerialSource(line.open_pty(), baudrate=baudrate)
    host, port = await line.serve_rtu_tcp()
    return TcpSource(host, port)


CASES = {
    # family: (address of the master, line, polls, baud)
    "seplos_v3": (0, sim_seplos.make_line, sim_seplos.master_polls, 19200),
    "jk_pb": (0, sim_jk.make_line, sim_jk.master_polls, 115200),
}


@pytest.fixture(params=["seplos_v3", "jk_pb"])
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def bank() -> SimBank:
    # A master at address 0 and two packs it polls, under a 30 A load.
    return make_bank(3, first_address=0, load=constant_load(30.0))


@pytest.fixture(params=["pty", "rtu_tcp"])
async def listening(
    request: pytest.FixtureRequest, family: str, bank: SimBank
) -> AsyncIterator[tuple[ModbusLine, BusListener]]:
    _, make_line, polls, baudrate = CASES[family]
    line = make_line(bank)
    source = await open_source(line, request.param, baudrate)
    line.start_master(polls(bank))
    listener = BusListener(source, family, window=60.0)
    await listener.connect()
    yield line, listener
    await listener.close()
    await line.stop()


async def test_readings_from_the_masters_traffic_without_sending_a_byte(
    listening: tuple[ModbusLine, BusListener], bank: SimBank
) -> None:
    line, listener = listening
    # A JK-PB master sends its own frames; a Seplos V3 master's data never crosses the line.
    heard = (0, 1, 2) if listener.listened_family == "jk_pb" else (1, 2)
    await until(listener, lambda: all(listener.readings_heard[a] >= 2 for a in heard))
    report = await listener.poll([0, 1, 2])
    for address in heard:
        reading = report.readings[address]
        pack = bank.pack(address)
        assert reading.voltage == pytest.approx(pack.voltage, abs=0.005 + 1e-9)
        assert reading.current == pytest.approx(pack.current, abs=0.005 + 1e-9)
        assert reading.soc == pytest.approx(100 * pack.soc, abs=0.5 + 1e-9)
        assert reading.cell_voltages == pytest.approx(pack.cell_voltages, abs=0.0005 + 1e-9)
        assert reading.charge_enabled is True
    assert set(report.failed) == {0, 1, 2} - set(heard)
    assert listener.frames > 0
    for address in (1, 2):
        assert listener.stats.pack(address).requests > 0
        assert listener.stats.pack(address).replies > 0
    assert line.received == 0  # not one byte sent, asserted on the wire


async def test_a_pack_that_drops_off_is_failed_and_comes_back(
    listening: tuple[ModbusLine, BusListener], bank: SimBank
) -> None:
    line, listener = listening
    await until(listener, lambda: all(listener.readings_heard[a] >= 1 for a in (1, 2)))
    bank.take_off_bus(2)
    await until(listener, lambda: listener.is_silent(2))
    report = await listener.poll([1, 2])
    assert set(report.readings) == {1}
    assert "did not answer the master" in report.failed[2]
    bank.put_on_bus(2)
    heard = listener.readings_heard[2]
    await until(listener, lambda: listener.readings_heard[2] > heard)
    assert (await listener.poll([1, 2])).failed == {}
    assert line.received == 0


@pytest.mark.parametrize("fault", [Fault.CRC, Fault.GARBAGE, Fault.PARTIAL, Fault.WRONG_ADDRESS])
async def test_broken_replies_are_not_taken_for_readings(
    listening: tuple[ModbusLine, BusListener], bank: SimBank, fault: Fault
) -> None:
    line, listener = listening
    await until(listener, lambda: listener.readings_heard[1] >= 1)
    line.faults[1] = fault
    # Two rounds of pack 2's replies pass while pack 1's are broken.
    start = listener.readings_heard[2]
    await until(listener, lambda: listener.readings_heard[2] >= start + 2)
    during = listener.readings_heard[1]
    await until(listener, lambda: listener.readings_heard[2] >= start + 4)
    if fault is not Fault.GARBAGE:
        # A broken reply is never decoded (noise before a sound frame is
        # skipped, and the frame then still counts).
        assert listener.readings_heard[1] == during
        # The master moved on without an answer it could take.
        assert listener.stats.pack(1).timeouts > 0
    else:
        assert listener.stats.noise_bytes > 0
    if fault is Fault.WRONG_ADDRESS:
        # The reply named the wrong unit: thrown away, and counted against pack 1.
        assert listener.stats.pack(1).discarded > 0
    del line.faults[1]
    await until(listener, lambda: listener.readings_heard[1] > during)
    reading = await listener.read_pack(1)
    assert reading.voltage == pytest.approx(bank.pack(1).voltage, abs=0.005 + 1e-9)
    assert line.received == 0


async def test_detect_master_on_a_busy_and_a_quiet_line(family: str, bank: SimBank) -> None:
    _, make_line, polls, baudrate = CASES[family]
    busy = make_line(bank)
    quiet = make_line(bank)
    busy_port, quiet_port = busy.open_pty(), quiet.open_pty()
    busy.start_master(polls(bank))
    try:
        assert await detect_master(SerialSource(busy_port, baudrate=baudrate), window=PATIENCE)
        assert not await detect_master(SerialSource(quiet_port, baudrate=baudrate), window=0.2)
        host, port = await busy.serve_rtu_tcp()
        assert await detect_master(TcpSource(host, port), window=PATIENCE)
        assert busy.received == 0
        assert quiet.received == 0
    finally:
        await busy.stop()
        await quiet.stop()


async def test_sources_by_wire(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(ValueError, match="only raw RTU"):
        source_for(ConnectionSpec(wire=Wire.MODBUS_TCP, host="127.0.0.1", port=502))
    listener = open_listener(
        ConnectionSpec(wire=Wire.MODBUS_RTU_SERIAL, serial_port=f"{tmp_path}/ttyUSB7"), "jk_pb"
    )
    assert isinstance(listener.source, SerialSource)
    assert listener.source.baudrate == 115200
    with pytest.raises(SerialPortMissing):
        await listener.connect()
    with pytest.raises(BusUnavailable):
        await listener.read_pack(1)


async def test_nothing_heard_is_no_reading(bank: SimBank) -> None:
    line = sim_seplos.make_line(bank)
    listener = BusListener(SerialSource(line.open_pty(), baudrate=19200), "seplos_v3")
    await listener.connect()
    try:
        with pytest.raises(PackNotResponding, match="not heard"):
            await listener.read_pack(1)
        with pytest.raises(BusUnavailable):
            await listener.poll([1, 2])  # a bus where nobody is heard is down
    finally:
        await listener.close()
        await line.stop()


class Gateway:
    """A loopback TCP 'gateway' whose bytes the test writes itself."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.connected = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> TcpSource:
        async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.append(writer)
            self.connected.set()

        self.server = await asyncio.start_server(accept, "127.0.0.1", 0)
        return TcpSource("127.0.0.1", int(self.server.sockets[0].getsockname()[1]))

    async def send(self, data: bytes) -> None:
        await self.connected.wait()
        for writer in self.writers:
            writer.write(data)
            await writer.drain()

    async def stop(self) -> None:
        for writer in self.writers:
            writer.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def trigger(unit: int, register: int) -> bytes:
    return master_request(unit, 0x10, register, 1)


def ack(unit: int, register: int) -> bytes:
    return seal(bytes((unit, 0x10)) + register.to_bytes(2, "big") + b"\x00\x01")


@pytest.fixture
async def wire() -> AsyncIterator[Gateway]:
    made = Gateway()
    yield made
    await made.stop()


async def test_jk_frames_belong_to_the_write_reply_that_answers_their_trigger(
    wire: Gateway, bank: SimBank
) -> None:
    listener = BusListener(await wire.start(), "jk_pb", window=60.0)
    await listener.connect()
    try:
        one, two = bank.pack(1), bank.pack(2)
        live = sim_jk.TRIGGER_LIVE
        # Pack 1 answers its trigger; then pack 2's frame arrives with a reply
        # naming unit 3, which nobody asked: it is thrown away, not laid at 2's door.
        await wire.send(trigger(1, live) + sim_jk.pack_frame(one, live) + b"\x00" + ack(1, live))
        await wire.send(trigger(2, live) + sim_jk.pack_frame(two, live) + ack(3, live))
        # The master's own frame and reply from unit 0, nobody having asked.
        master = bank.pack(0)
        await wire.send(sim_jk.pack_frame(master, live) + ack(0, live) + trigger(1, live))
        await until(listener, lambda: listener.stats.pack(2).requests >= 1 and listener.frames >= 8)
        assert set(listener.packs_heard()) == {0, 1}
        assert (await listener.read_pack(1)).voltage == pytest.approx(one.voltage, abs=0.001)
        assert (await listener.read_pack(0)).voltage == pytest.approx(master.voltage, abs=0.001)
        assert listener.stats.pack(2).discarded == 2  # the frame and the foreign reply
        assert listener.stats.pack(2).timeouts == 1
        assert listener.stats.pack(1).replies == 1
        # A settings frame gives the identity its cells and capacity.
        settings = sim_jk.TRIGGER_SETTINGS
        frame = sim_jk.pack_frame(one, settings)
        await wire.send(trigger(1, settings) + frame + ack(1, settings))
        await until(listener, lambda: listener.stats.pack(1).replies >= 2)
        identity = await listener.read_identity(1)
        assert identity.cell_count == len(one.cell_voltages)
        assert identity.design_capacity == pytest.approx(one.design_capacity)
    finally:
        await listener.close()


async def test_64_kb_of_noise_is_dropped_counted_and_survived(wire: Gateway, bank: SimBank) -> None:
    listener = BusListener(await wire.start(), "jk_pb", window=60.0)
    await listener.connect()
    try:
        live = sim_jk.TRIGGER_LIVE
        noise = random.Random(11).randbytes(65536)
        await wire.send(noise)
        await wire.send(trigger(1, live) + sim_jk.pack_frame(bank.pack(1), live) + ack(1, live))
        await until(listener, lambda: listener.readings_heard[1] >= 1)
        assert listener.stats.noise_bytes >= len(noise) - 1024
        assert listener.packs_heard() == [1]
    finally:
        await listener.close()


async def test_a_settings_frame_naming_another_pack_is_not_taken(
    wire: Gateway, bank: SimBank
) -> None:
    listener = BusListener(await wire.start(), "jk_pb", window=60.0)
    await listener.connect()
    try:
        settings = sim_jk.TRIGGER_SETTINGS
        # Unit 1 is asked, but the frame says DIP address 2 (byte 270).
        frame = sim_jk.pack_frame(bank.pack(2), settings)
        await wire.send(trigger(1, settings) + frame + ack(1, settings) + trigger(2, settings))
        await until(listener, lambda: listener.stats.pack(2).requests >= 1)
        # The write reply answers the trigger; the frame before it is not pack 1's.
        assert listener.stats.pack(1).discarded == 1
        assert listener.stats.pack(1).replies == 1
        assert listener._packs[1].settings is None
    finally:
        await listener.close()


async def test_a_cut_short_jk_frame_is_not_read_and_the_next_one_is(
    wire: Gateway, bank: SimBank
) -> None:
    """Some adapters cut a 55AA frame to 287..299 bytes: it fails its sum and is noise."""
    listener = BusListener(await wire.start(), "jk_pb", window=60.0)
    await listener.connect()
    try:
        live = sim_jk.TRIGGER_LIVE
        one, two = bank.pack(1), bank.pack(2)
        cut = sim_jk.pack_frame(one, live)[:290]
        await wire.send(trigger(1, live) + cut + ack(1, live))
        await wire.send(trigger(2, live) + sim_jk.pack_frame(two, live) + ack(2, live))
        await until(listener, lambda: listener.readings_heard[2] >= 1)
        assert listener.readings_heard[1] == 0
        assert listener.stats.noise_bytes >= 290
        assert (await listener.read_pack(2)).voltage == pytest.approx(two.voltage, abs=0.001)
    finally:
        await listener.close()


@pytest.mark.parametrize("seed", range(4))
async def test_mangled_master_bus_traffic_is_survived(
    wire: Gateway, bank: SimBank, seed: int
) -> None:
    """64 KB of a JK-PB master bus with bytes hit, cut and added; then a clean exchange is read."""
    rng = random.Random(seed)
    live, settings = sim_jk.TRIGGER_LIVE, sim_jk.TRIGGER_SETTINGS
    cycle = b""
    for pack in bank.packs:
        for register in (live, settings):
            asked = trigger(pack.address, register) if pack.address else b""
            cycle += asked + sim_jk.pack_frame(pack, register) + ack(pack.address, register)
    stream = bytearray((cycle * (65536 // len(cycle) + 1))[:65536])
    for _ in range(300):
        at = rng.randrange(len(stream))
        match rng.randrange(3):
            case 0:
                stream[at] = rng.randrange(256)
            case 1:
                stream[at:at] = rng.randbytes(rng.randrange(1, 20))
            case _:
                del stream[at : at + rng.randrange(1, 40)]
    listener = BusListener(await wire.start(), "jk_pb", window=60.0)
    await listener.connect()
    try:
        await wire.send(bytes(stream))
        # Whatever the mangled stream left pending, a clean exchange is read.
        before = listener.readings_heard[2]
        await wire.send(trigger(2, live) + sim_jk.pack_frame(bank.pack(2), live) + ack(2, live))
        await until(listener, lambda: listener.readings_heard[2] > before)
        assert set(listener.packs_heard()) <= {0, 1, 2}
        # No pack shows another's values: a frame is only ever its own pack's.
        report = await listener.poll(listener.packs_heard())
        assert 2 in report.readings
        for address, reading in report.readings.items():
            assert reading.voltage == pytest.approx(bank.pack(address).voltage, abs=0.001)
            assert reading.cell_voltages == pytest.approx(
                bank.pack(address).cell_voltages, abs=0.001
            )
    finally:
        await listener.close()
