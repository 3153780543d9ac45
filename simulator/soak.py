"""Poll simulated banks on every wire for a long while, with faults, and see what grows.

    scripts/soak                 # 100,000 polls
    scripts/soak --polls 5000 --seed 3

Each wire (Modbus TCP, RTU over TCP, RTU on a pseudo-terminal, Pylon ASCII
over TCP and on a pseudo-terminal, a master-polled line read by listening,
CAN through a socketcand daemon) carries a simulated bank, reached as Home
Assistant reaches it: a bus borrowed from a ``BusRegistry``, a driver over
its shared transport, each poll in a turn on the bus. Two pollers share each
bus, as two banks on one gateway do, so the bus's queue is in use. Every
few polls the wire's faults change at random (any of
:class:`~simulator.wire_faults.WireFault` on any pack, or none), with reply
timeouts of a few tens of milliseconds, so that time runs fast.

After a warm-up, and again at the end, it takes the traced memory
(tracemalloc, after a garbage collection), the asyncio tasks, the open file
descriptors and sockets, and the bus queue (the most callers waiting for a
turn, over the warm-up's last stretch and the run's). All four must stay
flat; the verdict says so. The run's figures are returned as a
:class:`SoakReport`, which a test reads with fewer polls.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
import contextlib
from dataclasses import dataclass, field
import functools
import gc
import logging
import os
import random
import sys
import tracemalloc
from typing import Any

from custom_components.rack_battery.bank.model import PollReport
from custom_components.rack_battery.protocol.bus import Bus, BusRegistry
from custom_components.rack_battery.protocol.connection import ConnectionSpec, Wire
from custom_components.rack_battery.protocol.discovery import driver_on
from custom_components.rack_battery.protocol.drivers.base import BmsDriver
from custom_components.rack_battery.protocol.errors import BusUnavailable
from custom_components.rack_battery.protocol.listen import BusListener, open_listener
from custom_components.rack_battery.protocol.transport.factory import Transport, open_transport

from . import jk_pb, pace_modbus_line, pylontech_ascii, pylontech_can, seplos_v2, seplos_v3
from .bank import SimBank, constant_load, make_bank
from .wire_faults import CONNECTION_FAULTS, WireFault, WireFaults

# Reply timeout: loopback answers in well under a millisecond when the
# machine is idle; the faults that wait it out are what make a soak slow.
TIMEOUT = 0.03
# The CAN driver waits this long for a cycle, sent this often.
CAN_WINDOW = 0.1
CAN_PERIOD = 0.005
# How many polls a fault (or a clean stretch) lasts, at most, and how many
# of the stretches have a fault.
STRETCH = 12
FAULT_SHARE = 0.35
# Memory may grow this much from the warm-up to the end and still be flat:
# caches that fill once (interned strings, free lists) but not a leak.
MEMORY_SLACK = 256 * 1024
# How many clean polls a wire gets, at most, to answer again once its faults end.
QUIET_TRIES = 5


@dataclass
class Snapshot:
    """What the process holds at one moment."""

    memory: int  # bytes traced
    tasks: int
    fds: int
    sockets: int
    queue: int  # the most callers waiting for a bus turn over the last stretch


@dataclass
class SoakReport:
    """The start and end of a soak, and what happened in between."""

    polls: int
    start: Snapshot
    end: Snapshot
    faults_played: int
    bus_failures: int
    pack_failures: int
    per_wire: dict[str, int] = field(default_factory=dict)
    # Polls that found the bus down, by wire.
    down: dict[str, int] = field(default_factory=dict)
    # Seconds spent in polls (turn included), by wire.
    busy: dict[str, float] = field(default_factory=dict)

    @property
    def flat(self) -> dict[str, bool]:
        """Return, for each of the four figures, whether it stayed flat."""
        return {
            "memory": self.end.memory - self.start.memory <= MEMORY_SLACK,
            "tasks": self.end.tasks <= self.start.tasks,
            "fds/sockets": self.end.fds <= self.start.fds
            and self.end.sockets <= self.start.sockets,
            "bus queue": self.end.queue <= self.start.queue,
        }

    def lines(self) -> list[str]:
        """Return the report as lines of text."""
        start, end = self.start, self.end
        rows = [
            f"polls: {self.polls}",
            "  by wire (bus down): "
            + ", ".join(f"{k} {v} ({self.down.get(k, 0)})" for k, v in self.per_wire.items()),
            f"faults played: {self.faults_played}  failed polls (bus down): "
            f"{self.bus_failures}  pack reads failed: {self.pack_failures}",
            "memory (tracemalloc, allocated since half way and still alive): "
            f"{start.memory / 1024:.0f} KiB at 60 % -> {end.memory / 1024:.0f} KiB at the end "
            f"({(end.memory - start.memory) / 1024:+.0f} KiB)",
            f"asyncio tasks: {start.tasks} -> {end.tasks}",
            f"open fds: {start.fds} -> {end.fds}  sockets: {start.sockets} -> {end.sockets}",
            f"bus queue (most waiting): {start.queue} -> {end.queue}",
        ]
        verdict = self.flat
        rows.append(
            "verdict: "
            + ("FLAT" if all(verdict.values()) else "GROWING")
            + " ("
            + ", ".join(f"{name} {'flat' if ok else 'GROWS'}" for name, ok in verdict.items())
            + ")"
        )
        return rows


@dataclass
class _Line:
    """One wire with a bank on it, and what polls it."""

    name: str
    spec: ConnectionSpec
    family: str
    addresses: list[int]
    faults: WireFaults
    serial: bool
    listen: bool = False
    settle: Callable[[], Any] | None = None


def _fds() -> tuple[int, int]:
    names = os.listdir("/proc/self/fd")
    sockets = 0
    for name in names:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                sockets += 1
    return len(names), sockets


def _snapshot(queue: int) -> Snapshot:
    gc.collect()
    fds, sockets = _fds()
    return Snapshot(
        memory=tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0,
        tasks=len(asyncio.all_tasks()),
        fds=fds,
        sockets=sockets,
        queue=queue,
    )


def _change_faults(line: _Line, rng: random.Random) -> int:
    """Mend the line, and perhaps put a random fault on a random pack; return how many."""
    line.faults.mend()
    if rng.random() >= FAULT_SHARE:
        return 0
    choices = [fault for fault in WireFault if not (line.serial and fault in CONNECTION_FAULTS)]
    line.faults.inject(rng.choice(line.addresses), rng.choice(choices))
    return 1


@contextlib.asynccontextmanager
async def _lines(seed: int, copies: int) -> AsyncIterator[list[_Line]]:
    """Serve ``copies`` banks on every wire; yield how to reach each."""
    lines: list[_Line] = []
    stops: list[Callable[[], Any]] = []
    try:
        for copy in range(copies):
            await _serve_every_wire(seed + copy, f"#{copy}" if copies > 1 else "", lines, stops)
        yield lines
    finally:
        for stop in reversed(stops):
            await stop()


async def _serve_every_wire(  # noqa: PLR0915 - one stanza per wire
    seed: int, suffix: str, lines: list[_Line], stops: list[Callable[[], Any]]
) -> None:
    """Serve a bank on every wire; add how to reach each to ``lines``."""

    def bank(first: int, count: int = 3) -> SimBank:
        built = make_bank(count, first_address=first, seed=seed, load=constant_load(20))
        built.step(60)
        return built

    def scaled(faults: WireFaults) -> WireFaults:
        faults.late_by = TIMEOUT * 2.5
        faults.drip_over = TIMEOUT * 0.3
        faults.burst = 2048
        return faults

    line = pace_modbus_line.make_line(bank(1))
    scaled(line.wire)
    host, port = await line.serve_modbus_tcp()
    stops.append(line.stop)
    spec = ConnectionSpec(wire=Wire.MODBUS_TCP, host=host, port=port)
    lines.append(_Line("modbus_tcp", spec, "pace_modbus", [1, 2, 3], line.wire, False))

    line = jk_pb.make_line(bank(1))
    scaled(line.wire)
    host, port = await line.serve_rtu_tcp()
    stops.append(line.stop)
    spec = ConnectionSpec(wire=Wire.MODBUS_RTU_TCP, host=host, port=port)
    lines.append(_Line("rtu_tcp", spec, "jk_pb", [1, 2, 3], line.wire, False))

    line = pace_modbus_line.make_line(bank(1))
    scaled(line.wire)
    path = line.open_pty()
    stops.append(line.stop)
    spec = ConnectionSpec(wire=Wire.MODBUS_RTU_SERIAL, serial_port=path, baudrate=19200)
    lines.append(_Line("rtu_pty", spec, "pace_modbus", [1, 2, 3], line.wire, True))

    server = await pylontech_ascii.start_server(bank(2), "127.0.0.1", 0)
    scaled(server.faults.wire)
    stops.append(server.stop)
    spec = ConnectionSpec(wire=Wire.ASCII_TCP, host=server.host, port=server.port)
    lines.append(_Line("ascii_tcp", spec, "pylontech_rs485", [2, 3, 4], server.faults.wire, False))

    pty = await seplos_v2.start_pty(bank(1))
    scaled(pty.faults.wire)
    stops.append(pty.stop)
    spec = ConnectionSpec(wire=Wire.ASCII_SERIAL, serial_port=pty.path, baudrate=9600)
    lines.append(_Line("ascii_pty", spec, "seplos_v2", [1, 2, 3], pty.faults.wire, True))

    master_bank = bank(0)
    line = seplos_v3.make_line(master_bank)
    scaled(line.wire)
    host, port = await line.serve_rtu_tcp()
    line.start_master(seplos_v3.master_polls(master_bank), period=0.001)
    stops.append(line.stop)
    spec = ConnectionSpec(wire=Wire.MODBUS_RTU_TCP, host=host, port=port)
    # A listener reads what the master has said: each poll waits for a round.
    lines.append(
        _Line(
            "listen",
            spec,
            "seplos_v3",
            [1, 2],
            line.wire,
            False,
            listen=True,
            settle=functools.partial(line.wait_rounds, 1),
        )
    )

    can_server = await pylontech_can.start_server(bank(0, 4), "127.0.0.1", 0, period=CAN_PERIOD)
    scaled(can_server.wire)
    can_server.wire.late_by = CAN_WINDOW * 1.5
    stops.append(can_server.stop)
    spec = ConnectionSpec(
        wire=Wire.CAN,
        can_interface="socketcand",
        can_channel=f"{can_server.host}:{can_server.port}/{can_server.channel}",
        baudrate=500_000,
    )
    lines.append(_Line("can", spec, "pylontech_can", [0], can_server.wire, False))
    for each in lines[-7:]:
        each.name += suffix


async def _turn(line: _Line, bus: Bus, driver: BmsDriver, *, lost: bool) -> PollReport | None:
    """Poll the wire in one turn on its bus, opening what was lost first; None: the bus was down."""
    async with bus.turn():
        try:
            if lost:
                await _reopen(line, driver)
            return await driver.poll(line.addresses)
        except BusUnavailable:
            return None


async def _reopen(line: _Line, driver: BmsDriver) -> None:
    """Open what was lost, as the coordinator does, and let a listener hear the master."""
    await driver.connect()
    if isinstance(driver, BusListener):
        await driver.hear(within=CAN_WINDOW * 10, addresses=line.addresses)


async def _quiet(drivers: Sequence[tuple[_Line, Bus, BmsDriver]]) -> None:
    """End every fault, wait for what they put off, and poll each wire until it answers."""
    for line, _, _ in drivers:
        line.faults.mend()
    for line, _, _ in drivers:
        await line.faults.settled()
    for line, bus, driver in drivers:
        lost = False
        for _ in range(QUIET_TRIES):
            if line.settle is not None:
                await line.settle()
            report = await _turn(line, bus, driver, lost=lost)
            lost = report is None
            if report is not None and not report.failed:
                break


async def run_soak(  # noqa: PLR0915 - set up, run, measure, tear down
    polls: int, *, seed: int = 1, copies: int = 1, warmup: float = 0.1
) -> SoakReport:
    """Poll every wire until ``polls`` polls are done in all; return what changed."""
    rng = random.Random(seed)
    # Tracing every allocation doubles the cost of a poll, so memory is
    # traced over the second half only: what was allocated after the half
    # and is still alive at the end, taken at 60 % (the half's working set
    # has been replaced by then) and at the end.
    started = not tracemalloc.is_tracing()
    trace_at = max(1, polls // 2)
    memory_at = max(trace_at + 1, polls * 6 // 10)
    memory_start = 0

    def opener(spec: ConnectionSpec) -> Transport:
        return open_transport(spec, timeout=CAN_WINDOW if spec.wire is Wire.CAN else TIMEOUT)

    registry = BusRegistry(timeout=TIMEOUT, opener=opener)
    done = 0
    faults_played = bus_failures = pack_failures = 0
    per_wire: dict[str, int] = {}
    down: dict[str, int] = {}
    busy: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    queue_max = 0
    start: Snapshot | None = None
    warm_at = max(1, int(polls * warmup))
    try:
        async with _lines(seed, copies) as lines:
            buses: list[Bus] = []
            drivers: list[tuple[_Line, Bus, BmsDriver]] = []
            for line in lines:
                bus = registry.borrow(line.spec, line.name)
                buses.append(bus)
                driver: BmsDriver = (
                    open_listener(line.spec, line.family, window=1.0)
                    if line.listen
                    else driver_on(bus, line.spec, line.family)
                )
                with contextlib.suppress(BusUnavailable):
                    await driver.connect()
                drivers.append((line, bus, driver))
                per_wire[line.name] = 0

            pollers = [
                (line, bus, driver, lead) for line, bus, driver in drivers for lead in (True, False)
            ]
            end: Snapshot | None = None

            async def poller(
                line: _Line, bus: Bus, driver: BmsDriver, lead: bool, until: int
            ) -> None:
                nonlocal done, faults_played, bus_failures, pack_failures, queue_max
                nonlocal memory_start
                left = 0
                lost = False
                while done < until:
                    if lead:
                        if left <= 0:
                            left = rng.randint(1, STRETCH)
                            faults_played += _change_faults(line, rng)
                        left -= 1
                    if line.settle is not None:
                        await line.settle()
                    began = loop.time()
                    report = await _turn(line, bus, driver, lost=lost)
                    lost = report is None
                    if report is None:
                        bus_failures += 1
                        down[line.name] = down.get(line.name, 0) + 1
                    else:
                        pack_failures += len(report.failed)
                    queue_max = max(queue_max, *(each.lock.waiting for each in buses))
                    done += 1
                    per_wire[line.name] += 1
                    busy[line.name] = busy.get(line.name, 0.0) + loop.time() - began
                    if done == trace_at and started:
                        tracemalloc.start()
                    if done == memory_at:
                        gc.collect()
                        memory_start = tracemalloc.get_traced_memory()[0]
                    if done % 10_000 == 0:
                        print(f"  {done} polls", file=sys.stderr, flush=True)

            async def run_until(until: int) -> None:
                await asyncio.gather(
                    *(poller(line, bus, driver, lead, until) for line, bus, driver, lead in pollers)
                )

            # Both snapshots are taken in the same quiet state: no poller
            # running, every fault mended, whatever a fault put off delivered,
            # and every wire answering again. Taken mid-run instead, one
            # figure depends on whether a gateway happened to be restarting
            # at that moment, which is chance, not a leak.
            await run_until(warm_at)
            await _quiet(drivers)
            start = _snapshot(queue_max)
            queue_max = 0
            await run_until(polls)
            await _quiet(drivers)
            end = _snapshot(queue_max)
            start.memory = memory_start
            for line, bus, driver in drivers:
                await driver.close()
                await registry.give_back(bus, line.name)
    finally:
        if started:
            tracemalloc.stop()
    assert start is not None
    assert end is not None
    return SoakReport(
        polls=done,
        start=start,
        end=end,
        faults_played=faults_played,
        bus_failures=bus_failures,
        pack_failures=pack_failures,
        per_wire=per_wire,
        down=down,
        busy=busy,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run a soak and print what changed; exit 1 if anything grew."""
    parser = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--copies", type=int, default=3, help="banks on each wire, polled side by side (3)"
    )
    args = parser.parse_args(argv)
    # The faults make the client libraries complain at every turn; the
    # report is what counts here.
    logging.basicConfig(level=logging.CRITICAL)
    report = asyncio.run(run_soak(args.polls, seed=args.seed, copies=args.copies))
    for row in report.lines():
        print(row)
    return 0 if all(report.flat.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
