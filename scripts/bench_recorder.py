"""Count what the bank costs Home Assistant's recorder: state rows per hour.

A real Home Assistant, set up from a configuration folder in a temporary
directory with the recorder on SQLite, reads four simulated PACE packs over
Modbus TCP on loopback. The simulator runs a solar day (a load in the night,
the sun charging by day) on its own clock, so every value moves as it would
on a real bank. Time is accelerated: each poll moves the simulator and the
bank's clock on by the poll interval, and the next poll follows at once.

It prints the rows the recorder wrote to its states table per pack and for
the bank, per hour of polls, with the entities enabled by default and with
every entity enabled. Nothing is asserted: this only reports.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
import logging
from pathlib import Path
import sqlite3
import subprocess
import sys
import tempfile
from typing import Any

from homeassistant import bootstrap, runner
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.recorder import get_instance
from homeassistant.util import dt as dt_util

from custom_components.rack_battery.const import DOMAIN, SCAN_INTERVAL
from simulator import pace_modbus
from simulator.bank import SimBank, make_bank, solar_day

ROOT = Path(__file__).resolve().parents[1]
PACKS = 4
POLLS_PER_HOUR = round(timedelta(hours=1) / SCAN_INTERVAL)


@contextmanager
def accelerated_clock() -> Iterator[Callable[[timedelta], None]]:
    """Let the bank's clock run ahead of the wall clock, poll by poll.

    Home Assistant reads the time through ``dt_util.utcnow``; the energy
    meter and the rules see the time a poll would really be taken at.
    """
    real = dt_util.utcnow
    offset = timedelta()

    def utcnow() -> datetime:
        return real() + offset

    def advance(by: timedelta) -> None:
        nonlocal offset
        offset += by

    dt_util.utcnow = utcnow  # type: ignore[assignment]
    try:
        yield advance
    finally:
        dt_util.utcnow = real


async def start_ha(config_dir: Path, database: Path, commit_interval: int = 0) -> HomeAssistant:
    """Start a Home Assistant with this integration and the recorder on ``database``."""
    (config_dir / "custom_components").mkdir()
    (config_dir / "custom_components" / DOMAIN).symlink_to(ROOT / "custom_components" / DOMAIN)
    (config_dir / "configuration.yaml").write_text(
        "homeassistant:\n  unit_system: metric\n  time_zone: UTC\n"
        f"recorder:\n  db_url: sqlite:///{database}\n  commit_interval: {commit_interval}\n"
    )
    hass = await bootstrap.async_setup_hass(
        runner.RuntimeConfig(config_dir=str(config_dir), skip_pip=True)
    )
    if hass is None:
        raise RuntimeError("Home Assistant did not set up")
    # Bootstrap logs to the console at INFO; only the figures matter here.
    logging.getLogger().setLevel(logging.CRITICAL)
    await hass.async_start()
    await hass.async_block_till_done()
    return hass


async def _add_bank(hass: HomeAssistant, host: str, port: int, bank: SimBank) -> str:
    flow: Any = await hass.config_entries.flow.async_init(DOMAIN, context={"source": "user"})
    flow = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {"next_step_id": "modbus_tcp"}
    )
    flow = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {"host": host, "port": port, "family": "pace_modbus"}
    )
    while flow["type"] == "progress":
        await asyncio.sleep(0.2)
        flow = await hass.config_entries.flow.async_configure(flow["flow_id"])
    flow = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {"packs": [str(pack.address) for pack in bank.packs]}
    )
    await hass.async_block_till_done()
    return str(flow["result"].entry_id)


async def recorded(hass: HomeAssistant, database: Path) -> Counter[str]:
    """Return the state rows written so far, by entity id."""
    await hass.async_block_till_done()
    await get_instance(hass).async_block_till_done()

    def count() -> Counter[str]:
        with sqlite3.connect(database) as db:
            rows = db.execute(
                "SELECT states_meta.entity_id, COUNT(*) FROM states "
                "JOIN states_meta ON states.metadata_id = states_meta.metadata_id "
                "GROUP BY states_meta.entity_id"
            ).fetchall()
        return Counter({entity_id: n for entity_id, n in rows if entity_id})

    return await hass.async_add_executor_job(count)


async def _hour_of_polls(
    hass: HomeAssistant, entry_id: str, bank: SimBank, advance: Callable[[timedelta], None]
) -> None:
    entry = hass.config_entries.async_get_entry(entry_id)
    assert entry is not None
    coordinator = entry.runtime_data.coordinator
    for _ in range(POLLS_PER_HOUR):
        bank.step(SCAN_INTERVAL.total_seconds())
        advance(SCAN_INTERVAL)
        await coordinator.async_refresh()
        await hass.async_block_till_done()


def _report(label: str, rows: Counter[str]) -> None:
    pack = sum(n for entity_id, n in rows.items() if "_pack_" in entity_id) / PACKS
    bank = sum(n for entity_id, n in rows.items() if "_pack_" not in entity_id)
    print(f"{label:48s} {pack:10.0f} rows per pack per hour, {bank:6.0f} for the bank")
    noisiest = ", ".join(
        f"{entity_id.split('.', 1)[1]} {n}" for entity_id, n in rows.most_common(4)
    )
    print(f"{'':48s} most: {noisiest}")


async def _measure(folder: Path, all_enabled: bool) -> Counter[str]:
    bank = make_bank(PACKS, aged=[3], first_address=1, seed=7, load=solar_day())
    bank.step(9 * 3600)  # nine in the morning: the sun takes over from the load
    server = await pace_modbus.start_server(bank, "127.0.0.1", 0)
    with accelerated_clock() as advance:
        database = folder / "home-assistant_v2.db"
        config_dir = folder / "config"
        config_dir.mkdir()
        hass = await start_ha(config_dir, database)
        try:
            entry_id = await _add_bank(hass, server.host, server.port, bank)
            if all_enabled:
                registry = er.async_get(hass)
                for entity in er.async_entries_for_config_entry(registry, entry_id):
                    if entity.disabled_by is not None:
                        registry.async_update_entity(entity.entity_id, disabled_by=None)
                await hass.config_entries.async_reload(entry_id)
                await hass.async_block_till_done()
            # A few polls to settle, then one hour counted.
            before = await recorded(hass, database)
            await _hour_of_polls(hass, entry_id, bank, advance)
            after = await recorded(hass, database)
            return after - before
        finally:
            await hass.async_stop()
            await server.stop()


def main(argv: list[str]) -> int:
    """Print the recorder's figures, each from a Home Assistant of its own.

    One process per measurement: a Home Assistant set up in a process
    leaves process-wide state behind (its blocking-call guard) that a second
    one in the same process would trip over.
    """
    logging.basicConfig(level=logging.ERROR)
    if argv[1:] in (["--defaults"], ["--all-enabled"]):
        all_enabled = argv[1] == "--all-enabled"
        with tempfile.TemporaryDirectory() as folder:
            rows = asyncio.run(_measure(Path(folder), all_enabled))
        label = "every entity enabled" if all_enabled else "entities enabled by default"
        _report(f"recorder, {label}", rows)
    else:
        for which in ("--defaults", "--all-enabled"):
            # Home Assistant's own start-up chatter goes to stderr; it is
            # shown only when a measurement fails.
            done = subprocess.run(
                [sys.executable, __file__, which], stderr=subprocess.PIPE, text=True, check=False
            )
            if done.returncode != 0:
                sys.stderr.write(done.stderr)
                return done.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
