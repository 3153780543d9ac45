"""Scans through a transparent gateway whose RS485 line runs at 9600 baud: speed given, or not.

The simulator serves the line over loopback TCP as a transparent gateway
would, the line behind it paced at its baud rate (bytes at baud/10 per
second, each pack answering after its answer time, ``simulator/paced.py``).
The bus is borrowed as the config flow borrows it, timed by the wire.

Each scan of addresses with 4 packs among them is run twice:

- with the gateway's speed given in the flow: the timeouts are worked out
  from the wire plus the gateway's hop, then learned (``protocol/timing.py``);
- with "I don't know": every empty address costs the flat second.

Each is set beside what it needs: the timeouts it waited out at the empty
addresses, plus the wire-time limit of the transactions that were answered
(every byte of them at 10 bits a byte, each pack's answer time and the
document's gap between frames). The loopback hop itself costs next to
nothing, so a real gateway adds its round trips on top of both.

Reported only: nothing here asserts. Target: a scan within 1.5x of what it
needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
import time

# The same line and the same four packs among the addresses as the serial
# line's bench.
from bench_wire import BAUD, SCAN_PACKS, counts  # type: ignore[import-not-found]  # beside this script

from custom_components.rack_battery.protocol.bus import BusRegistry
from custom_components.rack_battery.protocol.connection import ConnectionSpec, Wire
from custom_components.rack_battery.protocol.discovery import discover
from custom_components.rack_battery.protocol.pylon.frame import encode_frame
from custom_components.rack_battery.protocol.timing import (
    DEFAULT_TIMEOUT,
    GATEWAY_HOP,
    family_timing,
)
from custom_components.rack_battery.protocol.transport.ascii_tcp import AsciiTcpTransport
from custom_components.rack_battery.protocol.transport.modbus_tcp import ModbusTransport
from simulator import pace_ascii
from simulator.bank import PACE_PACK, SimBank, constant_load, make_bank
from simulator.pace_modbus_line import make_line
from simulator.paced import PacedPort, answer_time
from simulator.pylon_line import serve_tcp

# A PACE Modbus scan's first request to an address is an 8-byte read; a PACE
# ASCII scan's is the 0x90 presence probe, a frame without INFO.
PACE_MODBUS_PROBE = 8
PACE_ASCII_PROBE = len(encode_frame(0x25, 1, 0x46, 0x90))

# Serves a bank behind a paced gateway; returns (host, port, the paced
# connections' ports, a stop).
type Gateway = tuple[str, int, list[PacedPort], Callable[[], Awaitable[None]]]


@dataclass(frozen=True)
class Scan:
    """One scan: how long it took and what it needed."""

    took: float
    asked: int
    silent: int
    waited: float
    needed: float


def _bank() -> SimBank:
    packs = make_bank(len(SCAN_PACKS), load=constant_load(20.0), identity=PACE_PACK).packs
    return SimBank(
        packs=[replace(pack, address=at) for pack, at in zip(packs, SCAN_PACKS, strict=True)],
        load=constant_load(20.0),
    )


async def _rtu_gateway(bank: SimBank) -> Gateway:
    line = make_line(bank)
    host, port = await line.serve_rtu_tcp(baudrate=BAUD, answer_time=answer_time("pace_modbus"))
    return host, port, line.ports, line.stop


async def _ascii_gateway(bank: SimBank) -> Gateway:
    server = await serve_tcp(
        bank, pace_ascii.DIALECT, baudrate=BAUD, answer_time=answer_time("pace_ascii")
    )
    return server.host, server.port, server.ports, server.stop


async def _scan(
    serve: Callable[[SimBank], Awaitable[Gateway]],
    wire: Wire,
    family: str,
    probe: int,
    *,
    speed: int | None,
) -> Scan:
    """Scan a paced gateway, told its speed or not; set the time beside what it needs."""
    host, port, ports, stop = await serve(_bank())
    spec = ConnectionSpec(wire=wire, host=host, port=port, baudrate=speed)
    registry = BusRegistry(timeout=DEFAULT_TIMEOUT, wire_timed=True)
    bus = registry.borrow(spec, "bench")
    try:
        transport = bus.transport(spec)
        assert isinstance(transport, ModbusTransport | AsciiTcpTransport)
        start = time.perf_counter()
        found = await discover(bus, spec, [family])
        took = time.perf_counter() - start
        assert found is not None
        assert [pack.address for pack in found.packs] == list(SCAN_PACKS)
        asked, silent = counts(transport.stats)
        # The requests to empty addresses crossed the line inside their timeouts.
        crossed = sum(paced.heard_bytes + paced.sent_bytes for paced in ports)
        wire_seconds = (crossed - silent * probe) * 10 / BAUD
        answered = asked - silent
        gap = family_timing(family).gap
        needed = transport.timer.waited + wire_seconds + answered * (answer_time(family) + gap)
        return Scan(took, asked, silent, transport.timer.waited, needed)
    finally:
        await registry.give_back(bus, "bench")
        await stop()


def _line(label: str, scan: Scan, flat: Scan) -> None:
    ratio = scan.took / scan.needed
    verdict = "within" if ratio <= 1.5 else "OVER"
    print(
        f"{label:40s} {scan.took * 1e3:7.0f} ms  needs {scan.needed * 1e3:7.0f} ms "
        f"({scan.silent} timeouts, {scan.waited * 1e3:5.0f} ms of them)  "
        f"ratio {ratio:4.2f} ({verdict} 1.5x)  "
        f"flat 1 s: {flat.took * 1e3:6.0f} ms ({flat.waited * 1e3:5.0f} ms of timeouts)"
    )


async def run() -> None:
    """Print the paced-gateway scan figures."""
    print(
        f"Paced transparent gateway, RS485 at {BAUD} baud behind it, "
        f"{len(SCAN_PACKS)} packs at {', '.join(map(str, SCAN_PACKS))}; "
        f"the gateway's hop is allowed {GATEWAY_HOP * 1e3:.0f} ms"
    )
    cases = (
        ("scan, PACE Modbus, RTU over TCP", _rtu_gateway, Wire.MODBUS_RTU_TCP, "pace_modbus"),
        ("scan, PACE ASCII over TCP", _ascii_gateway, Wire.ASCII_TCP, "pace_ascii"),
    )
    probes = {"pace_modbus": PACE_MODBUS_PROBE, "pace_ascii": PACE_ASCII_PROBE}
    for label, serve, wire, family in cases:
        given = await _scan(serve, wire, family, probes[family], speed=BAUD)
        flat = await _scan(serve, wire, family, probes[family], speed=None)
        _line(label, given, flat)


if __name__ == "__main__":
    asyncio.run(run())
