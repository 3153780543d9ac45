"""Poll and scan times on a serial line at its real speed, next to what the wire allows.

The simulator plays a PACE Modbus line on a pseudo-terminal at 9600 baud:
bytes at baud/10 per second, each pack answering after its answer time
(``simulator/paced.py``). The driver opens it as a serial port and times
its requests by the wire (``protocol/timing.py``), as the integration does.

- A full-bank poll is set beside its wire-time limit: every byte that
  crossed the line times 10 / baud, the packs' answer times, and the 100 ms
  the PACE document asks between frames.
- A scan of units 1 to 15 with 4 packs and 11 empty addresses is set beside
  what it needs: the timeouts it waited out at the empty addresses, plus
  the wire-time limit of the transactions that were answered (each
  followed by the document's gap).

Reported only: nothing here asserts. Targets: poll within 1.15x of the
limit, scan within 1.5x of what it needs.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
import time

from custom_components.rack_battery.protocol.bus import BusRegistry
from custom_components.rack_battery.protocol.connection import ConnectionSpec, Wire
from custom_components.rack_battery.protocol.discovery import discover, driver_on
from custom_components.rack_battery.protocol.linkstats import LinkStats
from custom_components.rack_battery.protocol.timing import (
    FAMILY_TIMING,
    derived_timeout,
    family_timing,
)
from custom_components.rack_battery.protocol.transport.modbus_tcp import ModbusTransport
from simulator.bank import PACE_PACK, SimBank, constant_load, make_bank
from simulator.modbus_line import ModbusLine
from simulator.pace_modbus_line import make_line, open_paced_pty
from simulator.paced import PacedPort, answer_time

BAUD = 9600
FAMILY = "pace_modbus"
POLLS = 5
# Four packs among the fifteen units, with gaps before, between and after.
SCAN_PACKS = (2, 5, 6, 11)


def _line(addresses: tuple[int, ...]) -> tuple[ModbusLine, PacedPort, ConnectionSpec]:
    packs = make_bank(len(addresses), load=constant_load(20.0), identity=PACE_PACK).packs
    bank = SimBank(
        packs=[replace(pack, address=at) for pack, at in zip(packs, addresses, strict=True)],
        load=constant_load(20.0),
    )
    line = make_line(bank)
    path = open_paced_pty(line, BAUD)
    spec = ConnectionSpec(wire=Wire.MODBUS_RTU_SERIAL, serial_port=path, baudrate=BAUD)
    return line, line.ports[-1], spec


def counts(stats: LinkStats) -> tuple[int, int]:
    """Return (requests, timeouts) over every address."""
    packs = stats.packs.values()
    return sum(pack.requests for pack in packs), sum(pack.timeouts for pack in packs)


def _ratio(label: str, measured: float, limit: float, target: float) -> None:
    ratio = measured / limit
    verdict = "within" if ratio <= target else "OVER"
    print(
        f"{label:44s} {measured * 1e3:8.0f} ms  limit {limit * 1e3:8.0f} ms  "
        f"ratio {ratio:5.2f} ({verdict} {target:g}x)"
    )


async def _poll(count: int) -> None:
    """Poll a bank of ``count`` packs at units 1.. and set it beside the wire's limit."""
    addresses = tuple(range(1, count + 1))
    line, port, spec = _line(addresses)
    registry = BusRegistry(timeout=1.0, wire_timed=True)
    bus = registry.borrow(spec, "bench")
    try:
        driver = driver_on(bus, spec, FAMILY)
        transport = bus.transport(spec)
        assert isinstance(transport, ModbusTransport)
        await driver.connect()
        await driver.poll(addresses)  # the port opened and settled
        timing = family_timing(FAMILY)
        ratios: list[tuple[float, float]] = []
        for _ in range(POLLS):
            # The gap before the first request belongs to the previous poll.
            bytes_before = port.heard_bytes + port.sent_bytes
            asked_before, _ = counts(transport.stats)
            async with bus.turn():
                start = time.perf_counter()
                report = await driver.poll(addresses)
                took = time.perf_counter() - start
            assert len(report.readings) == count, report.failed
            asked = counts(transport.stats)[0] - asked_before
            wire = (port.heard_bytes + port.sent_bytes - bytes_before) * 10 / BAUD
            limit = wire + asked * answer_time(FAMILY) + (asked - 1) * timing.gap
            ratios.append((took, limit))
            await asyncio.sleep(timing.gap)
        ratios.sort(key=lambda pair: pair[0] / pair[1])
        took, limit = ratios[len(ratios) // 2]
        _ratio(f"poll of {count} PACE packs, {BAUD} baud pty", took, limit, 1.15)
        sizes = {"request_bytes": 8, "reply_bytes": 79}
        learned = transport.timer.timeout(1, **sizes)
        derived = derived_timeout(baudrate=BAUD, timing=timing, **sizes)
        print(
            f"  timeout of a 37-register read: derived {derived * 1e3:.0f} ms, "
            f"learned {learned * 1e3:.0f} ms"
        )
    finally:
        await registry.give_back(bus, "bench")
        await line.stop()


async def _scan() -> None:
    """Scan units 1 to 15 with four packs; set it beside the timeouts and wire time it needs."""
    line, port, spec = _line(SCAN_PACKS)
    registry = BusRegistry(timeout=1.0, wire_timed=True)
    bus = registry.borrow(spec, "bench")
    try:
        transport = bus.transport(spec)
        assert isinstance(transport, ModbusTransport)
        start = time.perf_counter()
        found = await discover(bus, spec, [FAMILY])
        took = time.perf_counter() - start
        assert found is not None
        assert [pack.address for pack in found.packs] == list(SCAN_PACKS)
        asked, silent = counts(transport.stats)
        answered = asked - silent
        timing = family_timing(FAMILY)
        # The requests to empty addresses crossed the line inside their timeouts.
        empty_request_bytes = silent * 8
        wire = (port.heard_bytes + port.sent_bytes - empty_request_bytes) * 10 / BAUD
        answered_limit = wire + answered * (answer_time(FAMILY) + timing.gap)
        needed = transport.timer.waited + answered_limit
        print(
            f"scan of units 1-15 ({len(SCAN_PACKS)} packs, {15 - len(SCAN_PACKS)} empty): "
            f"{asked} requests, {silent} timeouts waiting {transport.timer.waited * 1e3:.0f} ms, "
            f"{answered} answered in a wire-time limit of {answered_limit * 1e3:.0f} ms"
        )
        _ratio(f"scan, {BAUD} baud pty", took, needed, 1.5)
    finally:
        await registry.give_back(bus, "bench")
        await line.stop()


def _derived_table() -> None:
    """Print each family's derived timeout for its main read, at three speeds."""
    # Request and longest reply of each family's main read, in bytes (see tests).
    reads = {
        "pace_modbus": (8, 79),
        "seplos_v3": (8, 39),
        "jk_pb": (8, 85),
        "pace_ascii": (20, 274),
        "seplos_v2": (20, 274),
        "pylontech_rs485": (20, 274),
    }
    speeds = (9600, 19200, 115200)
    print("derived timeout of the main read (ms): " + "  ".join(f"{b:>6}" for b in speeds))
    for family in sorted(FAMILY_TIMING):
        if family not in reads:
            continue
        request, reply = reads[family]
        figures = [
            derived_timeout(
                baudrate=speed,
                request_bytes=request,
                reply_bytes=reply,
                timing=family_timing(family),
            )
            for speed in speeds
        ]
        print(f"  {family:36s}" + "  ".join(f"{figure * 1e3:6.0f}" for figure in figures))


async def run() -> None:
    """Print the paced-line figures."""
    _derived_table()
    print(
        f"Paced serial line, {BAUD} baud: PACE answers after {answer_time(FAMILY) * 1e3:.0f} ms "
        f"(simulated), {family_timing(FAMILY).gap * 1e3:.0f} ms between frames (document)"
    )
    await _poll(4)
    await _poll(15)
    await _scan()


if __name__ == "__main__":
    asyncio.run(run())
