"""Serve a simulated parallel bank to a real Home Assistant, in real time.

    python -m simulator                                   # PACE Modbus TCP on 127.0.0.1:5020
    python -m simulator --protocol pylontech-ascii        # Pylontech RS485 ASCII on :8899
    python -m simulator --aged 3 --load solar-day --speed 60
    python -m simulator --protocol seplos-v2 --fault 2=late --fault-cycle 60

The bank keeps its own clock (nothing in :mod:`simulator.bank` reads wall
time, so the tests stay deterministic); this command is the one place that
ties that clock to the wall, ``--speed`` simulated seconds per real second,
so that an hour of a solar day can pass in a minute while Home Assistant
polls it. It runs until Ctrl-C or SIGTERM and then closes its port, so that
``scripts/develop`` can start it again straight away.

``--fault ADDRESS=FAULT`` (repeatable) puts one of the wire faults of
:class:`simulator.wire_faults.WireFault` on a pack's replies (``garbage``,
``noise_burst``, ``late``, ``echo``, ``restart``, ...); ``--fault-cycle S``
takes the faults off and puts them back every S seconds, so that an outage
and the return can be watched in Home Assistant. PACE Modbus is then served
by the byte-level line rather than the gateway server, which owns its framing.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Sequence
import contextlib
from dataclasses import dataclass
import importlib
import json
import logging
from pathlib import Path
import signal
from typing import Any, Protocol

from .bank import (
    PACE_PACK,
    PYLONTECH_PACK,
    LoadProfile,
    PackMaker,
    SimBank,
    constant_load,
    make_bank,
    solar_day,
    step_load,
)
from .wire_faults import WireFault, WireFaults
from .wiretap import Wiretap, start_wiretap

_LOGGER = logging.getLogger("simulator")

# How often the bank's clock catches up with the wall. The integration polls
# every ten seconds, so a second is fine-grained enough for what it reads.
TICK_SECONDS = 1.0
# How often a summary of every pack is logged: often enough to see the bank
# move, rarely enough to read the console.
SUMMARY_SECONDS = 10.0

# The house loads of `--load steps`: (duration s, current A) repeated, a
# kettle and an oven switching on over an idle bank, then the sun charging it.
_STEPS: tuple[tuple[float, float], ...] = (
    (600.0, 5.0),
    (120.0, 60.0),
    (600.0, 15.0),
    (600.0, -30.0),
)


class Server(Protocol):
    """What every simulator personality's ``start_server`` returns."""

    @property
    def host(self) -> str:
        """Return the address listened on."""

    @property
    def port(self) -> int:
        """Return the port actually bound."""

    async def stop(self) -> None:
        """Stop listening and drop the connections."""


StartServer = Callable[[SimBank, str, int], Awaitable[Server]]


@dataclass
class _LineServer:
    """A byte-level line served over Modbus TCP, shown as a server is."""

    host: str
    port: int
    wire: WireFaults
    stop_line: Callable[[], Awaitable[None]]

    async def stop(self) -> None:
        await self.stop_line()


def _start_pace_modbus_line() -> StartServer:
    from .pace_modbus_line import make_line  # noqa: PLC0415

    async def start(bank: SimBank, host: str, port: int) -> Server:
        line = make_line(bank)
        bound_host, bound_port = await line.serve_modbus_tcp(host, port)
        return _LineServer(bound_host, bound_port, line.wire, line.stop)

    return start


def _start_pace_modbus() -> StartServer:
    # Imported only when asked for, so that one personality's dependencies
    # never stop another from serving.
    from .pace_modbus import start_server  # noqa: PLC0415

    return start_server


def _start_pylontech_ascii() -> StartServer:
    from .pylontech_ascii import start_server  # noqa: PLC0415

    return start_server


def _start_pylontech_ascii_per_pack() -> StartServer:
    from .pylontech_ascii import start_per_pack_server  # noqa: PLC0415

    return start_per_pack_server


def _start_pylontech_ascii_per_pack_pty() -> StartPty:
    from .pylontech_ascii import start_per_pack_pty  # noqa: PLC0415

    return start_per_pack_pty


def _start_pace_ascii() -> StartServer:
    from .pace_ascii import start_server  # noqa: PLC0415

    return start_server


def _start_seplos_v2() -> StartServer:
    from .seplos_v2 import start_server  # noqa: PLC0415

    return start_server


def _start_jk_pb_master() -> StartServer:
    from .jk_pb import start_server  # noqa: PLC0415

    return start_server


class PtyLine(Protocol):
    """What a personality serving on a pseudo-terminal returns."""

    @property
    def path(self) -> str:
        """Return the tty a driver opens as its serial port."""

    async def stop(self) -> None:
        """Stop answering and close the pair."""


class StartPty(Protocol):
    """Serves a bank on a pseudo-terminal, at a baud rate (None: unpaced)."""

    def __call__(self, bank: SimBank, *, baudrate: int | None = None) -> Awaitable[PtyLine]:
        """Start serving."""
        ...


def _pty_of(module: str) -> Callable[[], StartPty]:
    def load() -> StartPty:
        start_pty: StartPty = importlib.import_module(f"simulator.{module}").start_pty
        return start_pty

    return load


@dataclass(frozen=True, kw_only=True)
class Personality:
    """A wire format the bank can speak, and how a real bus of it is laid out."""

    description: str
    # PACE packs are numbered from 1 by their DIP switches; on a Pylontech
    # bus address 1 is the inverter's own, so the packs start at 2.
    first_address: int
    # 5020 rather than Modbus's own 502, which only root may bind; 8899 is
    # what transparent RS485-to-TCP gateways (Elfin EW11 and kin) ship with.
    default_port: int
    loader: Callable[[], StartServer]
    # Serves on a pseudo-terminal instead (``--serial``), where the wire has one.
    pty_loader: Callable[[], StartPty] | None = None
    # Serves where wire faults can be played (``--fault``), if not ``loader``.
    fault_loader: Callable[[], StartServer] | None = None
    # What the packs call themselves: a PACE bank is not a Pylontech one.
    identity: PackMaker = PYLONTECH_PACK
    # The speed its serial line runs at out of the box (``--serial``).
    baudrate: int = 9600


PERSONALITIES: dict[str, Personality] = {
    "pace-modbus": Personality(
        description="PACE Modbus V1.3 (Modbus TCP; RTU with --serial)",
        first_address=1,
        default_port=5020,
        loader=_start_pace_modbus,
        pty_loader=_pty_of("pace_modbus_line"),
        fault_loader=_start_pace_modbus_line,
        identity=PACE_PACK,
    ),
    "pylontech-ascii": Personality(
        description="Pylontech RS485 ASCII over raw TCP",
        first_address=2,
        default_port=8899,
        loader=_start_pylontech_ascii,
        pty_loader=_pty_of("pylontech_ascii"),
        baudrate=115200,
    ),
    # Older master firmware: no group read (INFO 0xFF), every pack on its own.
    "pylontech-ascii-per-pack": Personality(
        description="Pylontech RS485 ASCII, a master that refuses group reads",
        first_address=2,
        default_port=8899,
        loader=_start_pylontech_ascii_per_pack,
        pty_loader=_start_pylontech_ascii_per_pack_pty,
    ),
    "pace-ascii": Personality(
        description="PACE RS485 ASCII (VER 0x25)",
        first_address=1,
        default_port=8899,
        loader=_start_pace_ascii,
        pty_loader=_pty_of("pace_ascii"),
        identity=PACE_PACK,
    ),
    "seplos-v2": Personality(
        description="Seplos V2 RS485",
        first_address=1,
        default_port=8899,
        loader=_start_seplos_v2,
        pty_loader=_pty_of("seplos_v2"),
    ),
    # The pack at DIP 0 is the master and drives the bus itself (listen-only).
    "jk-pb-master": Personality(
        description="JK-PB bank whose DIP-0 master drives the RS485 bus (raw RTU)",
        first_address=0,
        default_port=8899,
        loader=_start_jk_pb_master,
        pty_loader=_pty_of("jk_pb"),
        baudrate=115200,
    ),
}


class _PtyServer:
    """A pseudo-terminal line, shown where a TCP server shows host:port."""

    def __init__(self, line: PtyLine) -> None:
        self._line = line
        self.host = "serial"
        self.port = line.path

    async def stop(self) -> None:
        await self._line.stop()


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above zero, not {text}")
    return value


def _fault(text: str) -> tuple[int, WireFault]:
    """Return "ADDRESS=FAULT" as the pair it names."""
    address, _, name = text.partition("=")
    try:
        return int(address), WireFault(name)
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected ADDRESS=FAULT with FAULT one of {', '.join(WireFault)}, not {text!r}"
        ) from err


def _clock(text: str) -> float:
    """Return "HH:MM" as seconds after midnight."""
    try:
        hours, minutes = (int(part) for part in text.split(":"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected HH:MM, not {text!r}") from err
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise argparse.ArgumentTypeError(f"no such time of day: {text!r}")
    return hours * 3600.0 + minutes * 60.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Read the command line; refuse combinations that could not describe a bank."""
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Serve a simulated bank of 48 V packs wired in parallel.",
    )
    parser.add_argument("--protocol", choices=sorted(PERSONALITIES), default="pace-modbus")
    parser.add_argument("--packs", type=int, default=4, help="number of packs (default 4)")
    parser.add_argument(
        "--aged",
        type=int,
        action="append",
        default=[],
        metavar="I",
        help="position (0-based) of a pack some years older than the rest; repeatable",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, help="default 5020 for pace-modbus, 8899 for pylontech-ascii"
    )
    parser.add_argument("--seed", type=int, default=1, help="spread of the packs (default 1)")
    parser.add_argument("--load", choices=("constant", "steps", "solar-day"), default="constant")
    parser.add_argument(
        "--amps",
        type=float,
        default=10.0,
        help="bank current of --load constant, discharge positive (default 10)",
    )
    parser.add_argument(
        "--speed",
        type=_positive_float,
        default=1.0,
        help="simulated seconds per real second (default 1)",
    )
    parser.add_argument(
        "--start-time",
        type=_clock,
        default=0.0,
        metavar="HH:MM",
        help="time of day the bank's clock starts at; matters for solar-day (default 00:00)",
    )
    parser.add_argument(
        "--serial",
        action="store_true",
        help="serve on a pseudo-terminal and print its path, instead of TCP (ASCII protocols)",
    )
    parser.add_argument(
        "--baud",
        type=int,
        metavar="RATE",
        help="the pseudo-terminal's line speed (default: the family's own, 9600 or 115200)",
    )
    parser.add_argument(
        "--unpaced",
        action="store_true",
        help="move the pseudo-terminal's bytes at once, with no answer time (default: real speed)",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="hold every answer back this long, as a slow gateway would (TCP only; default 0)",
    )
    parser.add_argument(
        "--state-file",
        metavar="PATH",
        help="write the bank's values as JSON to PATH every second: what Home Assistant shows",
    )
    parser.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="ADDRESS=FAULT",
        help=f"a wire fault on one pack's replies, one of: {', '.join(WireFault)}; repeatable",
    )
    parser.add_argument(
        "--fault-cycle",
        type=_positive_float,
        metavar="S",
        help="take the faults off and put them back every S seconds (default: always on)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log at debug level")
    args = parser.parse_args(argv)
    if args.latency < 0:
        parser.error("--latency must not be negative")
    if args.latency and args.serial:
        parser.error("--latency is offered on TCP only")
    if not 1 <= args.packs <= 15:
        parser.error("--packs must be between 1 and 15, as on one RS485 bus")
    if bad := [index for index in args.aged if not 0 <= index < args.packs]:
        parser.error(f"--aged {bad[0]} is not a pack of {args.packs} (0..{args.packs - 1})")
    if args.port is None:
        args.port = PERSONALITIES[args.protocol].default_port
    if args.serial and PERSONALITIES[args.protocol].pty_loader is None:
        parser.error(f"--serial is not offered for {args.protocol}")
    last = PERSONALITIES[args.protocol].first_address + args.packs - 1
    if bad := [
        a for a, _ in args.fault if not PERSONALITIES[args.protocol].first_address <= a <= last
    ]:
        parser.error(f"--fault {bad[0]}=...: no pack at address {bad[0]}")
    return args


def make_load(name: str, amps: float) -> LoadProfile:
    """Return the load profile a ``--load`` name stands for."""
    if name == "steps":
        return step_load(_STEPS)
    if name == "solar-day":
        return solar_day()
    return constant_load(amps)


def _hhmm(seconds: float) -> str:
    """Return the bank's clock as day and time of day, as a solar-day load reads it."""
    day, rest = divmod(int(seconds), 86400)
    return f"day {day + 1} {rest // 3600:02d}:{rest % 3600 // 60:02d}"


def log_summary(bank: SimBank) -> None:
    """Log the bank and one line per pack: what Home Assistant should be showing."""
    _LOGGER.info(
        "%s  load %6.1f A  bus %6.2f V",
        _hhmm(bank.clock),
        bank.load(bank.clock),
        bank.bus_voltage,
    )
    for pack in bank.packs:
        _LOGGER.info(
            "  pack @%-2d %s  %6.2f V  %+7.2f A  SoC %5.1f %%  SoH %5.1f %%  %4.1f °C%s",
            pack.address,
            pack.serial,
            pack.voltage,
            pack.current,
            pack.soc * 100.0,
            pack.soh,
            pack.temperature,
            "" if pack.online else "  (off the bus)",
        )


def state_of(bank: SimBank) -> dict[str, Any]:
    """Return the bank's values as a BMS reports them, in the bank model's units."""
    # Only here: the readings come through the integration's bank model.
    from .readings import reading_of  # noqa: PLC0415

    packs = []
    for pack in bank.packs:
        reading = reading_of(pack)
        packs.append(
            {
                "address": pack.address,
                "serial": pack.serial,
                "model": pack.model,
                "online": pack.online,
                "voltage": reading.voltage,
                "current": reading.current,
                "soc": reading.soc,
                "soh": reading.soh,
                "remaining_capacity": reading.remaining_capacity,
                "full_capacity": reading.full_capacity,
                "cycles": reading.cycles,
                "temperatures": list(reading.temperatures),
                "cell_voltages": list(reading.cell_voltages),
            }
        )
    return {"clock": bank.clock, "bus_voltage": bank.bus_voltage, "packs": packs}


def write_state(bank: SimBank, path: Path) -> None:
    """Write the bank's values to ``path`` whole, so a reader never sees half a file."""
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(state_of(bank), indent=1))
    part.replace(path)


async def advance(bank: SimBank, speed: float, state_file: Path | None = None) -> None:
    """Step the bank's clock with the wall's, ``speed`` times as fast, until cancelled.

    Each tick steps by the time that really passed rather than by the nominal
    second, so a slow event loop (Home Assistant starting beside us on two
    cores) makes the bank lag by at most one tick, never drift.
    """
    loop = asyncio.get_running_loop()
    last = loop.time()
    next_summary = last + SUMMARY_SECONDS
    while True:
        await asyncio.sleep(TICK_SECONDS)
        now = loop.time()
        bank.step(speed * (now - last))
        last = now
        if state_file is not None:
            write_state(bank, state_file)
        if now >= next_summary:
            log_summary(bank)
            next_summary = now + SUMMARY_SECONDS


def _wire_of(server: object) -> WireFaults:
    """Return the wire faults of whatever line is being served."""
    line = getattr(server, "_line", server)  # a pty line shown as a server
    wire = getattr(line, "wire", None)
    if wire is None:
        wire = line.faults.wire  # type: ignore[attr-defined]
    assert isinstance(wire, WireFaults)
    return wire


async def play_faults(
    wire: WireFaults, faults: Sequence[tuple[int, WireFault]], cycle: float | None
) -> None:
    """Put the faults on, and (with a cycle) take them off and on again, until cancelled."""
    while True:
        for address, fault in faults:
            wire.inject(address, fault)
        _LOGGER.info(
            "Wire faults on: %s", ", ".join(f"@{address} {fault}" for address, fault in faults)
        )
        if cycle is None:
            await asyncio.Event().wait()
            return
        await asyncio.sleep(cycle)
        wire.mend()
        _LOGGER.info("Wire faults off")
        await asyncio.sleep(cycle)


async def serve(args: argparse.Namespace) -> None:
    """Build the bank, serve it and advance it until asked to stop."""
    personality = PERSONALITIES[args.protocol]
    bank = make_bank(
        args.packs,
        seed=args.seed,
        first_address=personality.first_address,
        aged=tuple(args.aged),
        load=make_load(args.load, args.amps),
        identity=personality.identity,
    )
    # Start the clock at the requested time of day; a zero step settles the
    # currents for the load at that hour.
    bank.clock = args.start_time
    bank.step(0.0)

    server: Server | _PtyServer
    tap: Wiretap | None = None
    pace = ""
    if args.serial and personality.pty_loader is not None:
        baudrate = None if args.unpaced else args.baud or personality.baudrate
        server = _PtyServer(await personality.pty_loader()(bank, baudrate=baudrate))
        pace = f" at {baudrate} baud" if baudrate else " unpaced"
    elif args.latency > 0:
        # The bank on a free port, and a tap that holds its answers back in front.
        start_server = personality.loader()
        server = await start_server(bank, args.host, 0)
        tap = await start_wiretap(
            server.host, server.port, args.host, port=args.port, reply_delay=args.latency
        )
    else:
        loader = personality.fault_loader if args.fault and personality.fault_loader else None
        start_server = (loader or personality.loader)()
        server = await start_server(bank, args.host, args.port)
    state_file = Path(args.state_file) if args.state_file else None
    if state_file is not None:
        write_state(bank, state_file)
    last = personality.first_address + args.packs - 1
    aged = ", @".join(str(personality.first_address + index) for index in sorted(set(args.aged)))
    # One plain line on stdout, flushed, so a script waiting for it sees it
    # even when stdout is a file or a pipe.
    print(
        f"Simulating {args.packs} packs (addresses {personality.first_address}..{last}"
        f"{f'; aged: @{aged}' if aged else ''}) as {personality.description} "
        f"on {server.host}:{tap.port if tap else server.port}{pace}; load {args.load}, "
        f"speed x{args.speed:g}{f', answers {args.latency:g} s late' if tap else ''}",
        flush=True,
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    ticker = asyncio.create_task(advance(bank, args.speed, state_file))
    tasks = [ticker]
    if args.fault:
        wire = _wire_of(server)
        tasks.append(asyncio.create_task(play_faults(wire, args.fault, args.fault_cycle)))
    log_summary(bank)
    try:
        await stop.wait()
    finally:
        # A terminal's Ctrl-C reaches us and scripts/develop, which then sends
        # SIGTERM as well: ignore the second, we are already on our way out.
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
            signal.signal(signum, signal.SIG_IGN)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if tap is not None:
            await tap.stop()
        await server.stop()
        _LOGGER.info("Stopped serving on %s:%s", server.host, server.port)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator; return the process's exit status."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        asyncio.run(serve(args))
    except OSError as err:
        # Most often the port is taken, by an earlier simulator still running.
        _LOGGER.error("Cannot serve on %s:%s: %s", args.host, args.port, err)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
