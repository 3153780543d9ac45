"""One bus shared by several banks: one connection, one transaction at a time, writes first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from custom_components.rack_battery.protocol.bus import BusLock, BusRegistry, Priority
from custom_components.rack_battery.protocol.connection import ConnectionSpec, Wire
from custom_components.rack_battery.protocol.discovery import discover, driver_on, find_packs
from custom_components.rack_battery.protocol.drivers.base import BmsDriver
from custom_components.rack_battery.protocol.transport.modbus_tcp import ModbusTcpTransport
from simulator.bank import SimBank, constant_load, make_bank
from simulator.pace_modbus import RunningServer, start_server
from simulator.wiretap import Wiretap

pytestmark = pytest.mark.usefixtures("socket_enabled")

# Modbus TCP: a 7-byte MBAP header, then the function code.
FUNCTION_CODE_AT = 7
WRITE_MULTIPLE = 0x10
READ_HOLDING = 0x03


@pytest.fixture
def bank() -> SimBank:
    return make_bank(4, first_address=1, load=constant_load(20.0), seed=5)


@pytest.fixture
async def server(bank: SimBank) -> AsyncIterator[RunningServer]:
    running = await start_server(bank)
    yield running
    await running.stop()


@pytest.fixture
def spec(tap: Wiretap) -> ConnectionSpec:
    return ConnectionSpec(wire=Wire.MODBUS_TCP, host=tap.host, port=tap.port)


async def test_a_write_goes_ahead_of_waiting_reads() -> None:
    """Reads wait their turn in order; a write that comes later is served first."""
    lock = BusLock()
    order: list[str] = []
    release = asyncio.Event()

    async def hold() -> None:
        async with lock.hold():
            order.append("poll A")
            await release.wait()

    async def take(name: str, priority: Priority) -> None:
        async with lock.hold(priority):
            order.append(name)

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)  # let the holder take the lock
    waiters = [
        asyncio.create_task(take("poll B", Priority.READ)),
        asyncio.create_task(take("poll C", Priority.READ)),
        asyncio.create_task(take("isolate pack", Priority.WRITE)),
    ]
    await asyncio.sleep(0)  # let each queue up
    assert lock.locked
    assert lock.waiting == 3
    release.set()
    await asyncio.gather(holder, *waiters)
    assert order == ["poll A", "isolate pack", "poll B", "poll C"]
    assert not lock.locked


async def test_a_cancelled_waiter_does_not_strand_the_bus() -> None:
    """A caller that gives up while waiting (an unload) leaves the bus to the next."""
    lock = BusLock()
    release = asyncio.Event()

    async def hold() -> None:
        async with lock.hold():
            await release.wait()

    async def take() -> str:
        async with lock.hold():
            return "served"

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    quitter = asyncio.create_task(take())
    patient = asyncio.create_task(take())
    await asyncio.sleep(0)
    quitter.cancel()
    release.set()
    await holder
    assert await patient == "served"
    with pytest.raises(asyncio.CancelledError):
        await quitter
    assert not lock.locked
    assert lock.waiting == 0


async def test_banks_on_one_gateway_share_one_connection(
    spec: ConnectionSpec, tap: Wiretap
) -> None:
    """Two banks polling at once use one TCP connection, and never overlap on it."""
    registry = BusRegistry(timeout=1.0)
    bus_a = registry.borrow(spec, "bank A")
    bus_b = registry.borrow(spec, "bank B")
    assert bus_a is bus_b
    driver_a = driver_on(bus_a, spec, "pace_modbus")
    driver_b = driver_on(bus_b, spec, "pace_modbus")
    await driver_a.connect()
    await driver_b.connect()

    async def poll(addresses: list[int], driver: BmsDriver) -> None:
        for _ in range(3):
            async with bus_a.turn():
                report = await driver.poll(addresses)
            assert sorted(report.readings) == addresses

    await asyncio.gather(poll([1, 2], driver_a), poll([3, 4], driver_b))
    assert tap.connections == 1
    assert tap.overlaps == 0
    assert tap.most_in_flight == 1
    assert len(tap.requests) >= 12

    # Bank A goes; the connection stays for bank B.
    await registry.give_back(bus_a, "bank A")
    assert len(registry) == 1
    async with bus_b.turn():
        await driver_b.read_pack(3)
    assert tap.connections == 1
    # The last bank closes it; giving it back twice changes nothing.
    await registry.give_back(bus_b, "bank B")
    await registry.give_back(bus_b, "bank B")
    assert len(registry) == 0
    assert not bus_b.transports


async def test_a_write_queued_behind_reads_reaches_the_wire_first(
    spec: ConnectionSpec, tap: Wiretap
) -> None:
    """On the wire, a write asked for while polls wait goes out before them."""
    registry = BusRegistry(timeout=1.0)
    bus = registry.borrow(spec, "bank")
    transport = bus.transport(spec)
    assert isinstance(transport, ModbusTcpTransport)
    await transport.connect()
    driver = driver_on(bus, spec, "pace_modbus")
    release = asyncio.Event()

    async def current_poll() -> None:
        async with bus.turn():
            await driver.read_pack(1)
            await release.wait()

    async def queued_poll(address: int) -> None:
        async with bus.turn():
            await driver.read_pack(address)

    async def write() -> None:
        async with bus.turn(Priority.WRITE):
            # A protection setting of pack 2, written back unchanged.
            value = (await transport.read_holding_registers(2, 60, 1))[0]
            await transport.write_registers(2, 60, [value])

    running = asyncio.create_task(current_poll())
    await asyncio.sleep(0)
    queued = [asyncio.create_task(queued_poll(3)), asyncio.create_task(queued_poll(4))]
    writer = asyncio.create_task(write())
    await asyncio.sleep(0)
    assert bus.lock.waiting == 3
    release.set()
    await asyncio.gather(running, writer, *queued)

    functions = [request[FUNCTION_CODE_AT] for request in tap.requests]
    # Poll of pack 1, then the write's read-back and write, then packs 3 and 4.
    first_write = functions.index(WRITE_MULTIPLE)
    units = [request[6] for request in tap.requests]
    assert units[:first_write] == [1] * (first_write - 1) + [2]
    assert set(units[first_write + 1 :]) == {3, 4}
    assert tap.overlaps == 0
    await registry.give_back(bus, "bank")


async def test_two_protocols_on_one_bus_share_its_lock(tap: Wiretap) -> None:
    """Two framings on the same gateway get a transport each, and one lock."""
    registry = BusRegistry(timeout=1.0)
    modbus = ConnectionSpec(wire=Wire.MODBUS_TCP, host=tap.host, port=tap.port)
    ascii_ = ConnectionSpec(wire=Wire.ASCII_TCP, host=tap.host, port=tap.port)
    bus = registry.borrow(modbus, "PACE bank")
    assert registry.borrow(ascii_, "Pylontech bank") is bus
    assert bus.transport(modbus) is not bus.transport(ascii_)
    assert bus.transport(modbus) is bus.transport(modbus)
    await registry.give_back(bus, "PACE bank")
    await registry.give_back(bus, "Pylontech bank")
    assert len(registry) == 0


async def test_discovery_finds_the_family_and_its_packs(
    spec: ConnectionSpec, bank: SimBank
) -> None:
    """Trying each family on the wire, the one that answers is found with every pack."""
    registry = BusRegistry(timeout=0.3)
    bus = registry.borrow(spec, "scan")
    shares: list[float] = []
    found = await discover(bus, spec, ["pace_modbus"], progress=shares.append)
    assert found is not None
    assert found.family == "pace_modbus"
    assert [pack.address for pack in found.packs] == [1, 2, 3, 4]
    assert [pack.serial for pack in found.packs] == [pack.serial for pack in bank.packs]
    assert shares == sorted(shares)
    assert shares[-1] == 1.0

    # Addresses another bank holds are not asked again.
    rest = await find_packs(bus, spec, "pace_modbus", skip={1, 2})
    assert [pack.address for pack in rest] == [3, 4]
    await registry.give_back(bus, "scan")
