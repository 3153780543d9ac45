"""The coordinator that polls one bank, and the runtime data of its entry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, override

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import Platform
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed
from homeassistant.util import dt as dt_util

from .bank.analysis import (
    AnalysisResult,
    BankAnalyzer,
    MaintenanceRecord,
    MaintenanceSchedule,
    MaintenanceTask,
    Thresholds,
    Value,
)
from .bank.energy import EnergyMeter
from .bank.hourly import HourlyAggregator
from .bank.model import BankSnapshot, PackIdentity, PackReading, PollReport, moved_fields
from .const import CONF_CONTROL, DOMAIN, LOGGER, SCAN_INTERVAL
from .controller import BankController
from .protocol.bus import Bus
from .protocol.drivers.base import BmsDriver
from .protocol.errors import BusUnavailable, FrameError, PackNotResponding
from .protocol.listen import BusListener
from .store import ANALYSIS, CONTROL, ENERGY, HOURLY, MAINTENANCE, BankStore, log_dropped

type RackBatteryConfigEntry = ConfigEntry[RackBatteryRuntimeData]

# Open findings are saved whenever they change; the resistance trend (a point
# a day) and the energy totals (a little every poll) are saved with them, or
# at least this often, so a crash loses at most this much of either.
SAVE_INTERVAL = timedelta(minutes=10)
# In what moved in a pack (BankData.moved): the pack's open findings changed.
# No field of a reading has this name.
FINDINGS_MOVED = "open findings"
# How long a listener whose line came back listens before it is read again.
HEAR_AGAIN_WAIT = 5.0


@dataclass(frozen=True, kw_only=True)
class BankData:
    """One poll of the bank, and what the rules made of it."""

    snapshot: BankSnapshot
    analysis: AnalysisResult
    # What moved in each pack's reading since the poll before, for a pack
    # read in both (bank/model.py, moved_fields); a pack not here (and the
    # bank, None) may have changed in every way.
    moved: Mapping[int | None, frozenset[str]] = field(default_factory=dict)


@dataclass(eq=False, slots=True)
class Interest:
    """What one pack entity shows: some fields of its pack's reading, or its findings.

    Among ``reads``, ``FINDINGS_MOVED`` stands for the pack's open findings.
    The options count too: new options unsettle every interest, so an
    entity that compares a field with the user's setting (the low battery
    level) is worked out again.

    An entity listens with one as its context, and the coordinator tells
    it of a poll only when one of those fields moved, or the pack's reading
    came or went, or the poll failed. ``settled``: what the entity shows was
    last worked out by a poll (a state written otherwise, when it is added
    or renamed, lets the next poll work it out again).
    """

    address: int
    reads: frozenset[str]
    settled: bool = False


class BankCoordinator(DataUpdateCoordinator[BankData]):
    """Polls every pack of one bank and reports which answered.

    A poll comes back partial: each pack is read on its own, so one pack that
    falls silent leaves the others, and the bank's totals over them, current.
    Only a bus that answers nobody fails the poll.

    A bank of 16 packs has some 700 entities, and most of a pack's values
    stay put from one poll to the next: the entities that listen with an
    ``Interest`` are kept here, by pack, and only those whose fields moved
    are told of a poll (``_tell_interested``); to Home Assistant they are one
    listener.
    """

    config_entry: RackBatteryConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        entry: RackBatteryConfigEntry,
        driver: BmsDriver,
        packs: dict[int, PackIdentity],
        *,
        bus: Bus,
    ) -> None:
        """Initialize the coordinator over a bus borrowed from the registry."""
        self.driver = driver
        self.packs = packs
        self.bus = bus
        self._running: asyncio.Task[BankData] | None = None
        self._silent: set[int] = set()
        # The listeners with an Interest, by pack, and how to stop hearing
        # as their one listener when the last of them goes.
        self._interested: dict[int, dict[object, tuple[CALLBACK_TYPE, Interest]]] = {}
        self._stop_telling: CALLBACK_TYPE | None = None
        # The last poll found the bus down (its link may need opening again).
        self._bus_lost = False
        self.store = BankStore(hass, entry.entry_id)
        # What the bank runs with: a change of the data reloads it, of the
        # options only retunes the rules (see _async_entry_updated).
        self._set_up_with = dict(entry.data)
        self._options = dict(entry.options)
        # Replaced in _async_setup by one with the stored schedule and state.
        self.maintenance = MaintenanceSchedule(
            created=dt_util.utcnow(), tz=dt_util.get_default_time_zone()
        )
        self.analyzer = BankAnalyzer(
            Thresholds.from_dict(entry.options), maintenance=self.maintenance
        )
        self.energy = EnergyMeter()
        # The cells' hourly statistics being gathered (cell_history.py).
        self.hourly = HourlyAggregator()
        self._saved_revision = 0
        self._saved_at: datetime | None = None
        self._loaded = False
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=entry.title,
            update_interval=SCAN_INTERVAL,
        )
        # Carries out the changes the guard allows, once the user turned
        # control on (controller.py).
        self.controller = BankController(hass, self)

    @override
    async def _async_setup(self) -> None:
        """Read back the maintenance schedule, the open findings and the energy totals."""
        thresholds = Thresholds.from_dict(self.config_entry.options)
        restored = await self.store.async_load(
            now=dt_util.utcnow(), thresholds=thresholds, tz=dt_util.get_default_time_zone()
        )
        self.maintenance = restored.schedule
        self.energy = restored.energy
        self.hourly = restored.hourly
        self.analyzer = BankAnalyzer(thresholds, maintenance=self.maintenance)
        lost = self.analyzer.restore_state(restored.analysis)
        log_dropped(self.name, [*restored.dropped, *(f"{ANALYSIS}.{item}" for item in lost)])
        self.controller.restore_state(restored.control)
        self._loaded = True
        # Automatic protection looks at every poll (policy_runner.py).
        self.config_entry.async_on_unload(
            self.async_add_listener(self.controller.policies.async_after_poll)
        )
        self.config_entry.async_on_unload(
            self.config_entry.add_update_listener(self._async_entry_updated)
        )

    async def _async_entry_updated(self, hass: HomeAssistant, entry: ConfigEntry) -> None:
        """Reload the bank when its bus or packs changed; apply changed options in place.

        This listener is the only thing that reloads a running bank after a
        change of its entry: the flows that move it or add a pack only update
        the entry. Home Assistant (2026.6 on) reports a flow that reloads an
        entry which has an update listener, and 2026.12 refuses it.
        """
        # Turning control on or off adds or removes the switches: a reload,
        # whose unload also releases every limit held on a pack.
        if entry.data != self._set_up_with or bool(entry.options.get(CONF_CONTROL)) != bool(
            self._options.get(CONF_CONTROL)
        ):
            hass.config_entries.async_schedule_reload(entry.entry_id)
            return
        if entry.options != self._options:
            self.apply_options(entry.options)
            await self.async_request_refresh()

    def apply_options(self, options: Mapping[str, Any]) -> None:
        """Judge the bank by new settings from the next poll on, without a reload.

        A reload would drop every short history the rules keep (voltage
        swings, load steps), and findings would take their debounce again.
        """
        self._options = dict(options)
        self.analyzer.thresholds = Thresholds.from_dict(options)
        # What an entity shows may depend on the options (the low battery
        # level): every one works itself out again at the next poll.
        for listeners in self._interested.values():
            for _, interest in listeners.values():
                interest.settled = False

    async def async_record_maintenance(
        self, task: MaintenanceTask, when: datetime, result: Mapping[str, Value]
    ) -> MaintenanceRecord:
        """Record work the user did, save it, and let the rules see it at once."""
        record = self.maintenance.record(task, when, result)
        self._save_later(dt_util.utcnow())
        await self.async_refresh()
        return record

    def stored_data(self) -> dict[str, Any]:
        """Return what the bank keeps across restarts."""
        return {
            MAINTENANCE: self.maintenance.to_dict(),
            ANALYSIS: self.analyzer.export_state(),
            ENERGY: self.energy.to_dict(),
            HOURLY: self.hourly.to_dict(),
            CONTROL: self.controller.export_state(),
        }

    def async_save_soon(self) -> None:
        """Save what the bank keeps a little later (an hour of statistics written)."""
        self._save_later(dt_util.utcnow())

    def _save_later(self, now: datetime) -> None:
        self._saved_revision = self.maintenance.revision
        self._saved_at = now
        self.store.async_delay_save(self.stored_data)

    @override
    async def async_shutdown(self) -> None:
        """Stop polling, and write what the bank keeps before it goes."""
        await super().async_shutdown()
        # A coordinator that never read its store must not write over it.
        if self._loaded:
            await self.store.async_save(self.stored_data())

    def _analyze(self, snapshot: BankSnapshot) -> BankData:
        """Count the energy and run the rules over a poll; save when what is kept has changed."""
        now = snapshot.taken_at
        self.energy.update(snapshot)
        snapshot = replace(
            snapshot,
            energy_charged=self.energy.charged,
            energy_discharged=self.energy.discharged,
        )
        analysis = self.analyzer.update(snapshot, self.packs, now)
        if (
            analysis.raised
            or analysis.cleared
            or analysis.changed
            or self.maintenance.revision != self._saved_revision
            or self._saved_at is None
            or now - self._saved_at >= SAVE_INTERVAL
        ):
            self._save_later(now)
        return BankData(snapshot=snapshot, analysis=analysis, moved=self._moved(snapshot, analysis))

    def _moved(
        self, snapshot: BankSnapshot, analysis: AnalysisResult
    ) -> dict[int | None, frozenset[str]]:
        """Return what moved in each pack since the poll shown last (after a failure: unknown).

        A pack whose findings were raised, cleared or changed by this poll
        has ``FINDINGS_MOVED`` among what moved.
        """
        if self.data is None or not self.last_update_success:
            return {}
        before = self.data.snapshot.readings
        moved: dict[int | None, frozenset[str]] = {
            address: moved_fields(old, reading)
            for address, reading in snapshot.readings.items()
            if (old := before.get(address)) is not None
        }
        for finding in (*analysis.raised, *analysis.cleared, *analysis.changed):
            if (fields := moved.get(finding.address)) is not None:
                moved[finding.address] = fields | {FINDINGS_MOVED}
        return moved

    @override
    @callback
    def async_add_listener(
        self, update_callback: CALLBACK_TYPE, context: Any = None
    ) -> Callable[[], None]:
        """Listen for polls; a listener with an Interest is told only when its fields move."""
        if not isinstance(context, Interest):
            return super().async_add_listener(update_callback, context)
        token = object()
        self._interested.setdefault(context.address, {})[token] = (update_callback, context)
        if self._stop_telling is None:
            self._stop_telling = super().async_add_listener(self._tell_interested)

        @callback
        def remove() -> None:
            listeners = self._interested.get(context.address, {})
            listeners.pop(token, None)
            if not listeners:
                self._interested.pop(context.address, None)
            if not self._interested and self._stop_telling is not None:
                self._stop_telling()
                self._stop_telling = None

        return remove

    @callback
    def _tell_interested(self) -> None:
        """Tell each listener with an Interest of a poll that moved what it shows."""
        moved = self.data.moved if self.last_update_success else {}
        for address, listeners in list(self._interested.items()):
            fields = moved.get(address)
            for update_callback, interest in list(listeners.values()):
                if fields is None or not interest.settled or not interest.reads.isdisjoint(fields):
                    # One entity's error must not keep the poll from the others.
                    try:
                        update_callback()
                    except Exception:
                        self.logger.exception("%s: an entity failed to show the poll", self.name)

    @override
    async def _async_update_data(self) -> BankData:
        """Poll the bank, or join the poll already running.

        DataUpdateCoordinator schedules the next poll only after one ends, but
        a refresh asked for meanwhile (a manual update, another caller) runs
        at once; on a slow bus a second poll would queue behind the first and
        polls would pile up. So it shares the running poll's result instead.
        """
        if (running := self._running) is not None:
            return await asyncio.shield(running)
        self._running = running = asyncio.ensure_future(self._poll_bank())
        try:
            return await running
        finally:
            self._running = None

    async def _poll_bank(self) -> BankData:
        """Poll the bank in one turn on the bus, then run the rules over it."""
        async with self.bus.turn():
            # A limit that lapses unless repeated is sent again every turn,
            # well inside its hold time.
            await self.controller.async_send_holds()
            snapshot = await self._poll_bank_in_turn()
        return self._analyze(snapshot)

    async def _poll_bank_in_turn(self) -> BankSnapshot:
        """Poll the bank, reporting which packs answered."""
        try:
            if self._bus_lost:
                # A transport opens its link again by itself on its next
                # request, but a listener's source stays shut once the
                # gateway has dropped it: open whatever was lost first, and
                # let a listener hear the master go round before it is read.
                await self.driver.connect()
                if isinstance(self.driver, BusListener):
                    await self.driver.hear(within=HEAR_AGAIN_WAIT, addresses=self.packs)
            report = await self.driver.poll(self.packs)
        except BusUnavailable as err:
            self._bus_lost = True
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="bus_unavailable",
                translation_placeholders={"error": str(err)},
            ) from err

        self._bus_lost = False
        # A pack that just fell silent gets one more chance within the poll:
        # on a busy RS485 line a single late reply is common, and one blip
        # should not blank its entities. A pack silent for a while is not
        # asked twice, so a pack that is really gone cannot double every poll.
        if newly_silent := report.failed.keys() - self._silent:
            report = await self._retry(report, newly_silent)

        self._log_silence(report)
        return BankSnapshot(
            taken_at=dt_util.utcnow(), readings=report.readings, failed=report.failed
        )

    async def _retry(self, report: PollReport, addresses: set[int]) -> PollReport:
        """Ask the packs that just fell silent once more."""
        readings: dict[int, PackReading] = dict(report.readings)
        failed = dict(report.failed)
        for address in sorted(addresses):
            try:
                readings[address] = self.driver.screened(
                    address, await self.driver.read_pack(address)
                )
            except (PackNotResponding, FrameError) as err:
                failed[address] = str(err) or type(err).__name__
            except BusUnavailable:
                # The link died between the two attempts: what answered a
                # moment ago is still current, and the next poll will say so.
                break
            else:
                del failed[address]
        return PollReport(readings=readings, failed=failed)

    def _log_silence(self, report: PollReport) -> None:
        """Log a pack falling silent once, and log its return."""
        for address, error in report.failed.items():
            if address not in self._silent:
                self._silent.add(address)
                LOGGER.warning(
                    "%s: pack %s did not answer and is shown unavailable: %s",
                    self.name,
                    address,
                    error,
                )
        for address in report.readings.keys() & self._silent:
            self._silent.discard(address)
            LOGGER.info("%s: pack %s is answering again", self.name, address)


@dataclass(kw_only=True)
class RackBatteryRuntimeData:
    """Runtime data of a bank's config entry."""

    coordinator: BankCoordinator
    bank_device_id: str
    # The platforms set up for the bank (the switches only with control on).
    platforms: list[Platform] = field(default_factory=list)
