"""One table: Home Assistant's core ``modbus`` and this integration, on the same bank.

Each line of the table is measured in a Home Assistant of its own (one
process each, set up from a configuration folder in a temporary directory,
with the recorder on SQLite), reading a simulated bank of PACE packs over
Modbus TCP on loopback. The simulator runs in a thread of its own with its
own event loop, so the CPU it spends answering is not counted as Home
Assistant's: the figure is the process's CPU less the simulator thread's.
Between the simulator and Home Assistant a small relay counts the requests
and the bytes both ways.

The bank runs a solar day from nine in the morning, so every value moves as
on a real bank. Time is accelerated as in ``bench_recorder``: before each
poll the bank and Home Assistant's clock move on by the poll interval, and
the poll is asked for at once (automatic polling is off, so no poll is
counted twice). 360 polls of 10 s make an hour.

Core ``modbus`` reads the 34 values of the PACE map (registers 0 to 36, less
the three reserved) for every pack: "naive" with one sensor per value, the
way most configurations are written, and "grouped" with one sensor per run
of neighbouring registers of one type and scale (``virtual_count``). This
integration runs with every entity enabled.

The recorder commits once per poll (its own timer, every 5 s of the wall
clock, would commit about twice per real poll), and compiles its 5-minute
statistics once per 5 minutes of the bank's time, as on a real Home
Assistant (on the wall clock it would land in one run and not the next).
The warm-up crosses a whole hour, so the measured hour is not the first
one of its Home Assistant (whose compile creates every statistic's
metadata). Every line starts its polls from a collected heap. The columns: requests and
bytes on the wire per pack and poll; Home Assistant's CPU per pack and poll,
all threads and the event loop's share; state writes, recorder rows and
changes of a value as shown (at its display precision) per pack and hour;
the CPU of one poll of the whole bank; peak memory of the process and its
growth over a Home Assistant that reads nothing.

``python scripts/bench_table.py --profile`` prints where this integration's
poll spends its CPU instead. Nothing is asserted: this only reports.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from contextlib import nullcontext
import cProfile
from dataclasses import asdict, dataclass, field
from datetime import timedelta
import gc
from itertools import pairwise
import json
import logging
from pathlib import Path
import pstats
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench_recorder import (  # type: ignore[import-not-found]  # noqa: E402  # beside this script
    accelerated_clock,
    recorded,
    start_ha,
)
from homeassistant.components.recorder.core import Recorder  # noqa: E402
from homeassistant.components.recorder.tasks import CommitTask  # noqa: E402
from homeassistant.config import async_hass_config_yaml  # noqa: E402
from homeassistant.const import EVENT_STATE_CHANGED  # noqa: E402
from homeassistant.core import Event, HomeAssistant, callback  # noqa: E402
from homeassistant.helpers import entity_registry as er  # noqa: E402
from homeassistant.helpers.entity import Entity  # noqa: E402
from homeassistant.helpers.entity_platform import async_get_platforms  # noqa: E402
from homeassistant.helpers.recorder import get_instance  # noqa: E402
from homeassistant.setup import async_setup_component  # noqa: E402
from homeassistant.util import dt as dt_util  # noqa: E402
from pytest_homeassistant_custom_component.common import MockConfigEntry  # noqa: E402

from custom_components.rack_battery.const import DOMAIN, SCAN_INTERVAL  # noqa: E402
from custom_components.rack_battery.protocol.drivers.pace_modbus import Register  # noqa: E402
from simulator import pace_modbus  # noqa: E402
from simulator.bank import PACE_PACK, SimBank, make_bank, solar_day  # noqa: E402

POLLS_PER_HOUR = round(timedelta(hours=1) / SCAN_INTERVAL)
# How many times each line of the tables is measured (the median is shown).
ROUNDS = 3
# Polls before the measured ones: from five minutes before a whole hour to
# a minute after it (see ``_start_before_the_hour``).
WARM_UP_POLLS = 36
# The 34 values of the PACE map a core modbus user would configure: name,
# first register, how many in a row, data type, scale, precision, unit.
CORE_VALUES: tuple[tuple[str, int, int, str, float, int, str | None], ...] = (
    ("current", Register.CURRENT, 1, "int16", 0.01, 2, "A"),
    ("voltage", Register.VOLTAGE, 1, "uint16", 0.01, 2, "V"),
    ("soc", Register.SOC, 2, "uint16", 1, 0, "%"),  # and SoH
    ("capacity", Register.REMAINING_CAPACITY, 3, "uint16", 0.01, 2, "Ah"),  # full, design
    ("cycles", Register.CYCLES, 1, "uint16", 1, 0, None),
    ("flags", Register.WARNING, 4, "uint16", 1, 0, None),  # protection, status, balancing
    ("cell", Register.FIRST_CELL, 16, "uint16", 0.001, 3, "V"),
    ("temperature", Register.FIRST_CELL_TEMPERATURE, 6, "int16", 0.1, 1, "°C"),
)


@dataclass(frozen=True)
class Setup:
    """What one Home Assistant reads: by which integration, how many packs and banks."""

    label: str
    reader: str  # "ours", "core_naive" or "core_grouped"
    packs: int = 16
    banks: int = 1
    polls: int = POLLS_PER_HOUR


@dataclass
class Result:
    """What one Home Assistant cost over its polls."""

    setup: Setup
    polls: int = 0
    requests: int = 0
    bytes: int = 0
    cpu: float = 0.0  # s, Home Assistant's (the process less the simulator thread)
    loop_cpu: float = 0.0  # s, of that on the event loop's thread
    write_calls: int = 0
    state_writes: int = 0
    rows: int = 0
    shown_changes: int = 0  # states whose shown value (at display precision) changed
    entities: int = 0
    peak_rss_mb: float = 0.0
    base_rss_mb: float = 0.0
    noisiest: list[tuple[str, int, int]] = field(default_factory=list)

    def per_pack_poll(self, value: float) -> float:
        """Return a count per pack per poll."""
        return value / (self.setup.packs * self.polls)

    def per_pack_hour(self, value: float) -> float:
        """Return a count per pack per hour of polls."""
        return value * POLLS_PER_HOUR / (self.setup.packs * self.polls)


class Relay:
    """Forwards Modbus TCP between Home Assistant and the simulator, counting.

    It runs on the simulator's loop: its CPU is the simulator's, not Home
    Assistant's.
    """

    def __init__(self, target_port: int) -> None:
        """Relay to the simulator's port."""
        self.target_port = target_port
        self.requests = 0
        self.bytes = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen on a free port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and drop the connections."""
        if self._server is not None:
            self._server.close()
            self._server.close_clients()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def requests() -> None:
            # Whole MBAP frames, so that each request is counted once.
            while header := await reader.readexactly(6):
                body = await reader.readexactly(int.from_bytes(header[4:6], "big"))
                self.requests += 1
                self.bytes += len(header) + len(body)
                up_writer.write(header + body)

        async def replies() -> None:
            while data := await up_reader.read(65536):
                self.bytes += len(data)
                writer.write(data)

        try:
            await asyncio.gather(requests(), replies())
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            up_writer.close()


class SimulatorThread:
    """The simulated bank, its Modbus TCP gateway and the relay, on a thread of their own."""

    def __init__(self, packs: int) -> None:
        """Build the bank: a solar day, from nine in the morning."""
        self.bank: SimBank = make_bank(
            packs, aged=[3], first_address=1, seed=7, load=solar_day(), identity=PACE_PACK
        )
        self.bank.step(9 * 3600)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.relay: Relay = self.call(self._start).result()

    def call(self, make: Callable[[], Any]) -> Future[Any]:
        """Run a coroutine made by ``make`` on the simulator's loop."""
        return asyncio.run_coroutine_threadsafe(make(), self.loop)

    async def _start(self) -> Relay:
        server = await pace_modbus.start_server(self.bank, "127.0.0.1", 0)
        relay = Relay(server.port)
        await relay.start()
        return relay

    def step(self, seconds: float) -> None:
        """Move the bank's clock on (on its own thread), between two polls.

        The caller waits without its loop: handed over and back through
        Home Assistant's loop, the step cost that loop CPU of its own, which
        is the bench's work, not Home Assistant's.
        """

        async def step() -> None:
            self.bank.step(seconds)

        self.call(step).result()

    def cpu(self) -> float:
        """Return the CPU time the simulator's thread used so far (s)."""
        ident = self.thread.ident
        assert ident is not None
        return time.clock_gettime(time.pthread_getcpuclockid(ident))


def _core_yaml(port: int, packs: int, grouped: bool) -> str:
    """Return core modbus's configuration for the same values of every pack."""
    lines = [
        "modbus:",
        "  - name: pace",
        "    type: tcp",
        "    host: 127.0.0.1",
        f"    port: {port}",
        "    message_wait_milliseconds: 0",
        "    sensors:",
    ]
    interval = int(SCAN_INTERVAL.total_seconds())
    for address in range(1, packs + 1):
        for name, first, count, data_type, scale, precision, unit in CORE_VALUES:
            sensors: list[tuple[str, int, int]] = (
                [(f"pack {address} {name}", first, count - 1)]
                if grouped
                else [(f"pack {address} {name} {i + 1}", first + i, 0) for i in range(count)]
            )
            for sensor_name, register, virtual in sensors:
                lines += [
                    f"      - name: {sensor_name}",
                    f"        unique_id: {sensor_name.replace(' ', '_')}",
                    f"        device_address: {address}",
                    f"        address: {register}",
                    "        input_type: holding",
                    f"        data_type: {data_type}",
                    f"        scale: {scale}",
                    f"        precision: {precision}",
                    f"        scan_interval: {interval}",
                    "        state_class: measurement",
                ]
                if unit:
                    lines.append(f"        unit_of_measurement: '{unit}'")
                if virtual:
                    lines.append(f"        virtual_count: {virtual}")
    return "\n".join(lines) + "\n"


def _identities(bank: SimBank, addresses: range) -> list[dict[str, Any]]:
    return [
        {
            "address": pack.address,
            "family": "pace_modbus",
            "model": pack.model,
            "serial": pack.serial,
            "firmware": pack.firmware,
            "cell_count": len(pack.cell_offsets),
            "design_capacity": pack.design_capacity,
            "manufacturer": pack.manufacturer,
        }
        for pack in bank.packs
        if pack.address in addresses
    ]


async def _add_banks(hass: HomeAssistant, sim: SimulatorThread, setup: Setup) -> list[Any]:
    """Add the banks (several on one gateway: the packs shared out), every entity enabled."""
    per_bank = setup.packs // setup.banks
    entries = []
    for index in range(setup.banks):
        addresses = range(1 + index * per_bank, 1 + (index + 1) * per_bank)
        entry = MockConfigEntry(
            domain=DOMAIN,
            title=f"PACE bank {index + 1}" if setup.banks > 1 else "PACE bank",
            unique_id=f"127.0.0.1:{sim.relay.port}:{index}",
            data={
                "wire": "modbus_tcp",
                "family": "pace_modbus",
                "host": "127.0.0.1",
                "port": sim.relay.port,
                "packs": _identities(sim.bank, addresses),
            },
            # Polls are asked for by the bench, one per step of the bank.
            pref_disable_polling=True,
        )
        entry.add_to_hass(hass)
        if not await hass.config_entries.async_setup(entry.entry_id):
            raise RuntimeError("the bank did not set up")
        entries.append(entry)
    await hass.async_block_till_done()
    registry = er.async_get(hass)
    for entry in entries:
        for entity in er.async_entries_for_config_entry(registry, entry.entry_id):
            if entity.disabled_by is not None:
                registry.async_update_entity(entity.entity_id, disabled_by=None)
        await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    return [hass.config_entries.async_get_entry(entry.entry_id) for entry in entries]


def _core_entities(hass: HomeAssistant) -> list[Any]:
    """Return core modbus's polling sensors, their own timers stopped."""
    polling: list[Any] = []
    for platform in async_get_platforms(hass, "modbus"):
        entity: Any
        for entity in platform.entities.values():
            if hasattr(entity, "_async_update_if_not_in_progress"):
                entity._async_cancel_update_polling()
                entity._async_cancel_future_pending_update()
                polling.append(entity)
    return polling


def _precisions(hass: HomeAssistant, domain: str) -> dict[str, int | None]:
    """Return the precision each entity's value is shown with (None: as it is)."""
    shown: dict[str, int | None] = {}
    for platform in async_get_platforms(hass, domain):
        for entity in platform.entities.values():
            description = getattr(entity, "entity_description", None)
            precision = getattr(description, "suggested_display_precision", None)
            if precision is None:
                precision = getattr(entity, "_precision", None)
            shown[entity.entity_id] = precision
    return shown


async def _rows(hass: HomeAssistant, database: Path, entity_ids: set[str]) -> Counter[str]:
    """Return the state rows written so far of the given entities."""
    rows: Counter[str] = await recorded(hass, database)
    return Counter({entity_id: n for entity_id, n in rows.items() if entity_id in entity_ids})


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _shown(state: str, precision: int | None) -> str:
    if precision is None:
        return state
    try:
        return f"{float(state):.{precision}f}"
    except ValueError:
        return state


async def _start_reader(
    hass: HomeAssistant, sim: SimulatorThread, setup: Setup, config_dir: Path
) -> tuple[str, Callable[[], Awaitable[Any]]]:
    """Set up core modbus or this integration; return its domain and how to poll it once."""
    if setup.reader == "ours":
        entries = await _add_banks(hass, sim, setup)
        coordinators = [entry.runtime_data.coordinator for entry in entries]
        return DOMAIN, lambda: asyncio.gather(*(c.async_refresh() for c in coordinators))
    yaml = config_dir / "configuration.yaml"
    yaml.write_text(
        yaml.read_text()
        + _core_yaml(sim.relay.port, setup.packs, grouped=setup.reader == "core_grouped")
    )
    config = await async_hass_config_yaml(hass)
    if not await async_setup_component(hass, "modbus", config):
        raise RuntimeError("core modbus did not set up")
    await hass.async_block_till_done()
    await asyncio.sleep(1)  # its first reads, 0.1 s after its start
    await hass.async_block_till_done()
    entities = _core_entities(hass)
    # As its timers would: every sensor's update at once, the hub's lock
    # taking them in turn.
    return "modbus", lambda: asyncio.gather(
        *(entity._async_update_if_not_in_progress() for entity in entities)
    )


class Changes:
    """Counts state changes, and those whose shown value (at display precision) changed."""

    def __init__(self, hass: HomeAssistant, precisions: dict[str, int | None]) -> None:
        """Start from the states as they are."""
        self.precisions = precisions
        self.changed: Counter[str] = Counter()
        self.shown: Counter[str] = Counter()
        self.last = {
            entity_id: _shown(state.state, precision)
            for entity_id, precision in precisions.items()
            if (state := hass.states.get(entity_id)) is not None
        }

    @callback
    def count(self, event: Event[Any]) -> None:
        """Count one state_changed event.

        A callback, run in the loop: a plain function would be handed to
        the executor at every state change, charging Home Assistant with
        the cost of the count (more for whoever writes more states).
        """
        entity_id = event.data["entity_id"]
        if entity_id not in self.precisions or (new := event.data["new_state"]) is None:
            return
        self.changed[entity_id] += 1
        shown = _shown(new.state, self.precisions[entity_id])
        if self.last.get(entity_id) != shown:
            self.shown[entity_id] += 1
            self.last[entity_id] = shown


class _WriteCount:
    """Counts the state writes entities make, changed or not."""

    def __init__(self) -> None:
        self.count = 0
        self._original = Entity._async_write_ha_state

        def counted(entity: Entity) -> None:
            self.count += 1
            self._original(entity)

        Entity._async_write_ha_state = counted  # type: ignore[method-assign,assignment]

    def close(self) -> None:
        """Stop counting."""
        Entity._async_write_ha_state = self._original  # type: ignore[method-assign]


def _count_writes() -> _WriteCount:
    return _WriteCount()


def _more_rows_than_shown(result: Result, changes: Changes, rows: Counter[str]) -> None:
    """Note the changes of shown values, and which sensors wrote more rows than those.

    The sensors are summed over the packs (``pack_N``).
    """
    result.shown_changes = sum(changes.shown.values())
    excess: Counter[str] = Counter()
    shown: Counter[str] = Counter()
    for entity_id, n in rows.items():
        kind = re.sub(r"pack_\d+_", "pack_N_", entity_id)
        excess[kind] += n
        shown[kind] += changes.shown[entity_id]
    result.noisiest = sorted(
        ((kind, n, shown[kind]) for kind, n in excess.items() if n > shown[kind]),
        key=lambda item: item[2] - item[1],
    )[:8]


def _recorder_on_bank_time(recorder: Recorder) -> Callable[[], None]:
    """Return the recorder's part of a poll: its commit, and its 5-minute statistics when due.

    The recorder commits every 5 s of the wall clock, once per real 10 s
    poll: the tick commits once per poll. It also compiles the statistics of
    every sensor with a state class every 5 minutes of the wall clock, at a
    cost that grows with the sensors; an hour of polls runs in well under a
    minute here, so that compile landed in one run and not the next (a
    64-pack bank's cost per pack moved threefold with it). The tick runs it
    at its real rate instead, on the bank's clock, for every line alike.
    """
    # The recorder keeps no public handle on its 5-minute timer.
    if recorder._periodic_listener is not None:
        recorder._periodic_listener()
        recorder._periodic_listener = None
    period = dt_util.utcnow().timestamp() // 300

    def tick() -> None:
        nonlocal period
        recorder.queue_task(CommitTask())
        now = dt_util.utcnow()
        if now.timestamp() // 300 != period:
            period = now.timestamp() // 300
            recorder._async_five_minute_tasks(now)

    return tick


def _start_before_the_hour(advance: Callable[[timedelta], None]) -> None:
    """Move the bank's clock on to five minutes before the next whole hour.

    The warm-up polls then cross that hour, which is when the recorder
    first compiles the sensors' statistics and the cell history first
    writes its hour: each creates the metadata of every statistic it
    keeps, once in the life of a Home Assistant. The measured polls start
    a minute after the hour, with that done, and an hour of them compiles
    the hourly statistics (and closes the cell history's hour) exactly
    once, as every hour of a running Home Assistant does.
    """
    now = dt_util.utcnow()
    advance(now.replace(minute=55, second=15, microsecond=0) + timedelta(hours=1) - now)


async def measure(folder: Path, setup: Setup, profile: cProfile.Profile | None = None) -> Result:
    """Run one Home Assistant over ``setup.polls`` polls and return what it cost."""
    sim = SimulatorThread(setup.packs)
    result = Result(setup, polls=setup.polls)
    database = folder / "home-assistant_v2.db"
    config_dir = folder / "config"
    config_dir.mkdir()
    with accelerated_clock() as advance:
        _start_before_the_hour(advance)
        hass = await start_ha(config_dir, database, commit_interval=30)
        result.base_rss_mb = _rss_mb()
        try:
            domain, poll = await _start_reader(hass, sim, setup, config_dir)
            precisions = _precisions(hass, domain)
            result.entities = len(precisions)

            recorder_tick = _recorder_on_bank_time(get_instance(hass))

            async def one_poll() -> None:
                sim.step(SCAN_INTERVAL.total_seconds())
                advance(SCAN_INTERVAL)
                await poll()
                await hass.async_block_till_done()
                recorder_tick()

            for _ in range(WARM_UP_POLLS):
                await one_poll()
            before = await _rows(hass, database, set(precisions))
            # Every line starts its polls from a collected heap, so that one
            # does not pay for the garbage another's set-up left behind.
            gc.collect()
            changes = Changes(hass, precisions)
            unsubscribe = hass.bus.async_listen(EVENT_STATE_CHANGED, changes.count)
            writes = _count_writes()
            requests, wire = sim.relay.requests, sim.relay.bytes
            cpu = time.process_time() - sim.cpu()
            loop_cpu = time.thread_time()
            with profile or nullcontext():
                for _ in range(setup.polls):
                    await one_poll()
                await get_instance(hass).async_block_till_done()
            result.cpu = time.process_time() - sim.cpu() - cpu
            result.loop_cpu = time.thread_time() - loop_cpu
            writes.close()
            unsubscribe()
            result.requests = sim.relay.requests - requests
            result.bytes = sim.relay.bytes - wire
            result.write_calls = writes.count
            result.state_writes = sum(changes.changed.values())
            rows = await _rows(hass, database, set(precisions)) - before
            result.rows = sum(rows.values())
            _more_rows_than_shown(result, changes, rows)
            result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            return result
        finally:
            await hass.async_stop()
            await asyncio.wrap_future(sim.call(sim.relay.stop))
            sim.loop.call_soon_threadsafe(sim.loop.stop)


SETUPS: tuple[Setup, ...] = (
    Setup("core modbus, naive (1 sensor per value)", "core_naive"),
    Setup("core modbus, grouped (virtual_count)", "core_grouped"),
    Setup("rack_battery, every entity enabled", "ours"),
)
SCALING: tuple[Setup, ...] = (
    Setup("1 pack", "ours", packs=1, polls=120),
    Setup("4 packs", "ours", packs=4, polls=120),
    Setup("16 packs", "ours", packs=16, polls=120),
    Setup("64 packs (Modbus units 1-64)", "ours", packs=64, polls=60),
    Setup("4 banks of 4 packs, one gateway", "ours", packs=16, banks=4, polls=120),
)


def _measure_in_child(setup: Setup) -> Result:
    """Measure in a process of its own: a Home Assistant leaves process-wide state behind."""
    done = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps(asdict(setup))],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise RuntimeError(f"{setup.label}: the measurement failed")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    data["setup"] = Setup(**data["setup"])
    data["noisiest"] = [tuple(item) for item in data["noisiest"]]
    return Result(**data)


def _table(results: list[Result], naive: Result | None) -> None:
    """Print one line per Home Assistant: per pack and poll, per pack and hour, memory."""
    print(
        f"{'':40s} {'requests':>8s} {'bytes':>6s} {'HA CPU':>7s} {'(loop)':>7s} {'vs':>6s}"
        f" {'state':>6s} {'rows':>5s} {'shown':>6s} {'poll':>6s} {'peak':>5s} {'+':>4s}"
    )
    print(
        f"{'':40s} {'/pack/poll':>15s} {'ms/pack/poll':>15s} {'naive':>6s}"
        f" {'writes':>6s} {'/pack/hour':>12s} {'ms CPU':>6s} {'MB':>5s} {'MB':>4s}"
    )
    for result in results:
        cpu = result.per_pack_poll(result.cpu) * 1e3
        ratio = (
            f"{naive.per_pack_poll(naive.cpu) / result.per_pack_poll(result.cpu):5.1f}x"
            if naive is not None and result.cpu
            else ""
        )
        print(
            f"{result.setup.label:40s} {result.per_pack_poll(result.requests):8.2f}"
            f" {result.per_pack_poll(result.bytes):6.0f} {cpu:7.2f}"
            f" {result.per_pack_poll(result.loop_cpu) * 1e3:7.2f} {ratio:>6s}"
            f" {result.per_pack_hour(result.state_writes):6.0f}"
            f" {result.per_pack_hour(result.rows):5.0f}"
            f" {result.per_pack_hour(result.shown_changes):6.0f}"
            f" {result.cpu * 1e3 / result.polls:6.1f}"
            f" {result.peak_rss_mb:5.0f} {result.peak_rss_mb - result.base_rss_mb:4.0f}"
        )


def run() -> None:
    """Print the table against core modbus, then the cost per pack from 1 to 64 packs."""
    print(
        f"Side by side, {SETUPS[0].packs} PACE packs over Modbus TCP, solar day, "
        f"{SCAN_INTERVAL.total_seconds():.0f} s polls (CPU: Home Assistant's process less the "
        "simulator's thread)"
    )
    results = _median_runs(SETUPS)
    _table(results, results[0])
    for kind, rows, shown in results[-1].noisiest:
        print(f"  more rows than shown changes: {kind} {rows} rows, {shown} changes")
    print("rack_battery, every entity enabled, by bank size:")
    scaling = _median_runs(SCALING)
    _table(scaling, results[0])
    _marginal([result for result in scaling if result.setup.banks == 1])


def _median_runs(setups: tuple[Setup, ...]) -> list[Result]:
    """Measure every setup ROUNDS times, in turns, and keep each one's run of median CPU.

    On a machine shared with other work one run of a few seconds can be
    slowed by a third; taking the setups in turns spreads such a stretch
    over all of them, and the median leaves it out.
    """
    runs: list[list[Result]] = [[] for _ in setups]
    for _ in range(ROUNDS):
        for index, setup in enumerate(setups):
            runs[index].append(_measure_in_child(setup))
    print(f"(each line: the median of {ROUNDS} runs, taken in turns)")
    return [sorted(each, key=lambda result: result.cpu)[len(each) // 2] for each in runs]


def _marginal(results: list[Result]) -> None:
    """Print what each pack added to a bank costs: the slope between two bank sizes.

    A bank's poll costs a few milliseconds of its own (its own entities,
    the rules over the bank, the recorder's commit) and each pack a share
    more; the cost grows linearly when that share stays the same from one
    size to the next, while the cost per pack falls as the bank's own part
    is spread over more packs.
    """
    for smaller, larger in pairwise(results):
        added = larger.setup.packs - smaller.setup.packs
        per_poll = (larger.cpu / larger.polls - smaller.cpu / smaller.polls) * 1e3 / added
        loop = (larger.loop_cpu / larger.polls - smaller.loop_cpu / smaller.polls) * 1e3 / added
        print(
            f"  each pack added from {smaller.setup.packs} to {larger.setup.packs}: "
            f"{per_poll:.2f} ms of HA CPU per poll ({loop:.2f} on the loop)"
        )


def _timed(fn: Callable[..., Any], name: str, spent: dict[str, float]) -> Callable[..., Any]:
    """Wrap a function so that the CPU of the thread it runs in is added up under ``name``."""

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.thread_time() - start

    return timed


def _profile() -> None:
    """Print where a poll's CPU goes, part by part, then cProfile's busiest functions.

    Python 3.12 and later profile every thread at once (the recorder's too)
    and by the wall clock, so a function the loop left for another thread
    looks slow: the parts measured by thread CPU come first for that reason.
    """
    from homeassistant.helpers import update_coordinator  # noqa: PLC0415
    from homeassistant.helpers.entity import Entity  # noqa: PLC0415

    from custom_components.rack_battery import coordinator  # noqa: PLC0415
    from custom_components.rack_battery.protocol.drivers import pace_modbus  # noqa: PLC0415

    spent: dict[str, float] = {}
    parts: tuple[tuple[Any, str, str], ...] = (
        (coordinator.BankCoordinator, "_analyze", "rules, energy (coordinator._analyze)"),
        (
            update_coordinator.DataUpdateCoordinator,
            "async_update_listeners",
            "entities told of the poll (writes included)",
        ),
        (Entity, "_async_write_ha_state", "state writes (Home Assistant's part)"),
        (pace_modbus, "decode_pack", "decoding the registers"),
    )
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in parts]
    for owner, name, label in parts:
        setattr(owner, name, _timed(getattr(owner, name), label, spent))
    profile = cProfile.Profile()
    try:
        with tempfile.TemporaryDirectory() as folder:
            setup = Setup("profile", "ours", polls=120)
            result = asyncio.run(measure(Path(folder), setup, profile))
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
    per = 1e3 / (setup.packs * setup.polls)
    print(f"{'Home Assistant, all threads':48s} {result.cpu * per:6.3f} ms CPU per pack per poll")
    print(f"{'  on the event loop':48s} {result.loop_cpu * per:6.3f}")
    for label, seconds in spent.items():
        print(f"{'    ' + label:48s} {seconds * per:6.3f}")
    print(f"{'  elsewhere (recorder, executor)':48s} {(result.cpu - result.loop_cpu) * per:6.3f}")
    print("(the parts include the profiler's own cost)")
    pstats.Stats(profile).sort_stats("tottime").print_stats(25)


def main(argv: list[str]) -> int:
    """Print the table; ``--one SETUP`` measures one line; ``--profile`` profiles our poll."""
    logging.basicConfig(level=logging.ERROR)
    if argv[1:2] == ["--one"]:
        setup = Setup(**json.loads(argv[2]))
        with tempfile.TemporaryDirectory() as folder:
            result = asyncio.run(measure(Path(folder), setup))
        print(json.dumps(asdict(result)))
    elif argv[1:2] == ["--profile"]:
        _profile()
    else:
        run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
