"""Control of a bank from Home Assistant: asks the guard, writes, reads back.

Every change to a pack (a switch turned, an action called) comes through
``BankController.async_change``. The guard in ``bank/control.py`` judges it
from the latest poll; a refusal is a translated ``ServiceValidationError``
naming the guard's numbers. An allowed change is written in a turn of its
own on the bus, ahead of waiting reads, and then read back: a change the
BMS does not show within two polls is an error to the caller and a repair
naming the pack. Nothing here decides what is safe, and nothing here writes
unless the user has turned control on in the bank's options.

A reconnect asked "when matched" that the guard refuses only because the
pack's voltage is too far from the bus is held instead (``held``): after
every poll the guard judges it again, and the first poll it allows carries
it out, read back over the polls that follow as any change is. The rules of
what may wait and for how long are the guard's (``bank/control.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import Context, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr, issue_registry as ir
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.util import dt as dt_util

from .bank.control import (
    BankView,
    Change,
    ControlSettings,
    Decision,
    HeldRejoin,
    PackState,
    Reason,
    RejoinStep,
    SafeLimits,
    bank_view,
    hold_rejoin,
    judge,
    rejoin_step,
    safe_limits,
)
from .bank.model import PackReading
from .buses import CONF_LISTEN_ONLY
from .const import (
    CONF_CONTROL,
    CONF_FAMILY,
    CONF_JOIN_VOLTAGE,
    CONF_MARGIN,
    CONF_MIN_CONNECTED,
    CONF_MIN_INTERVAL,
    CONF_REJOIN_TIMEOUT,
    DOMAIN,
    EVENT_CONTROL,
    LOGGER,
    SCAN_INTERVAL,
)
from .policy_runner import STORE_POLICY_HOLDS, PolicyRunner
from .protocol.bus import Priority
from .protocol.catalog import NO_CONTROL, ControlCapabilities, control_of
from .protocol.drivers.pylontech_rs485 import CurrentHold
from .protocol.errors import ProtocolError

if TYPE_CHECKING:
    from .coordinator import BankCoordinator, BankData

# The defaults the options form offers, as the guard has them.
_DEFAULTS = ControlSettings()
DEFAULT_MIN_CONNECTED = _DEFAULTS.min_connected
DEFAULT_MARGIN_PERCENT = round(_DEFAULTS.current_margin * 100)
DEFAULT_JOIN_VOLTAGE = _DEFAULTS.max_join_voltage
DEFAULT_MIN_INTERVAL_MINUTES = round(_DEFAULTS.min_interval.total_seconds() / 60)
DEFAULT_REJOIN_TIMEOUT_MINUTES = round(_DEFAULTS.rejoin_timeout.total_seconds() / 60)

# Polls a write may take to show in a reading before it counts as not taken.
READ_BACK_POLLS = 2
# How long the next poll may take to come.
READ_BACK_WAIT = SCAN_INTERVAL * 2

# Who made a change, in the event and the logbook.
BY_USER = "user"

ACTION_ISOLATE = "isolate"
ACTION_RECONNECT = "reconnect"
ACTION_PATHS = "set_paths"
ACTION_LIMITS = "set_current_limit"
# A reconnect "when matched" held, cancelled, or given up.
ACTION_HOLD = "hold_rejoin"
ACTION_CANCEL = "cancel_rejoin"
ACTION_GIVE_UP = "rejoin_gave_up"

STORE_ISOLATED = "isolated"
STORE_REJOIN = "rejoin"
# The repair of a change that did not take: this, the entry id, the address.
ISSUE_PREFIX = "control_not_taken_"
# The repair of a reconnect "when matched" that gave up: likewise.
GAVE_UP_PREFIX = "rejoin_gave_up_"


def async_forget_control_repairs(hass: HomeAssistant, entry_id: str) -> None:
    """Remove the repairs of changes that did not take or gave up, when their bank goes."""
    prefixes = (f"{ISSUE_PREFIX}{entry_id}_", f"{GAVE_UP_PREFIX}{entry_id}_")
    for domain, key in list(ir.async_get(hass).issues):
        if domain == DOMAIN and key.startswith(prefixes):
            ir.async_delete_issue(hass, DOMAIN, key)


@runtime_checkable
class HoldingDriver(Protocol):
    """A driver whose limits lapse unless sent again (the catalog's ``hold_seconds``)."""

    @property
    def holds(self) -> Mapping[int, CurrentHold]:
        """Return the limits held, by pack address."""

    @property
    def own_limits(self) -> Mapping[int, tuple[float | None, float | None]]:
        """Return each pack's own (charge, discharge) limits, as read while nothing was held."""

    def hold(self, address: int, hold: CurrentHold) -> None:
        """Keep a limit on a pack from the next send."""

    def release(self, address: int | None = None) -> None:
        """Stop holding a pack's limits (every pack's, address None)."""

    async def send_holds(self) -> dict[int, ProtocolError]:
        """Send every held limit again."""

    async def set_current_limits(
        self, address: int, *, charge: float | None, discharge: float | None
    ) -> None:
        """Hold a pack's limits and send them now."""


def capabilities(entry: ConfigEntry) -> ControlCapabilities:
    """Return what the bank's packs let a caller change; nothing for a listen-only bank."""
    if entry.data.get(CONF_LISTEN_ONLY):
        return NO_CONTROL
    return control_of(entry.data[CONF_FAMILY])


def control_enabled(entry: ConfigEntry) -> bool:
    """Return whether the user turned control on, for a bank that can be written to."""
    return capabilities(entry).can_write and bool(entry.options.get(CONF_CONTROL, False))


def control_settings(options: Mapping[str, Any]) -> ControlSettings:
    """Return the guard's settings from the bank's options (clamped by the guard)."""

    def number(key: str, default: float) -> float:
        value = options.get(key, default)
        return default if isinstance(value, bool) or not isinstance(value, int | float) else value

    return ControlSettings(
        min_connected=round(number(CONF_MIN_CONNECTED, DEFAULT_MIN_CONNECTED)),
        current_margin=number(CONF_MARGIN, DEFAULT_MARGIN_PERCENT) / 100,
        max_join_voltage=number(CONF_JOIN_VOLTAGE, DEFAULT_JOIN_VOLTAGE),
        min_interval=timedelta(minutes=number(CONF_MIN_INTERVAL, DEFAULT_MIN_INTERVAL_MINUTES)),
        poll_interval=SCAN_INTERVAL,
        rejoin_timeout=timedelta(
            minutes=number(CONF_REJOIN_TIMEOUT, DEFAULT_REJOIN_TIMEOUT_MINUTES)
        ),
    )


def _shows(reading: PackReading | None, change: Change) -> bool:
    """Return whether a reading shows the paths a change asked for."""
    if reading is None:
        return False
    return (change.charge is None or reading.charge_enabled is change.charge) and (
        change.discharge is None or reading.discharge_enabled is change.discharge
    )


def _action(change: Change, caps: ControlCapabilities) -> str:
    """Return what a change does, by the paths the family can switch.

    Opening every one of them isolates the pack, closing every one puts it
    back: a Seplos V3's charge path alone, as ``isolate_change`` takes it.
    """
    if change.charge_limit is not None or change.discharge_limit is not None:
        return ACTION_LIMITS
    asked = [
        value
        for value, offered in (
            (change.charge, caps.charge_path),
            (change.discharge, caps.discharge_path),
        )
        if offered
    ]
    if asked and all(value is False for value in asked):
        return ACTION_ISOLATE
    if asked and all(value is True for value in asked):
        return ACTION_RECONNECT
    return ACTION_PATHS


@dataclass(kw_only=True)
class ControlRecord:
    """What was last done to a pack, and when."""

    when: datetime
    action: str


class BankController:
    """Carries out the changes the guard allows on one bank's packs."""

    def __init__(self, hass: HomeAssistant, coordinator: BankCoordinator) -> None:
        """Control the packs the coordinator polls."""
        self.hass = hass
        self.coordinator = coordinator
        self.entry = coordinator.config_entry
        # The packs the user isolated, kept across restarts (store.py).
        self.isolated: set[int] = set()
        # When the held limits were last sent, and how long (s) the
        # BMS keeps one without a repeat.
        self._holds_sent_at: datetime | None = None
        # The send between polls last started, which a caller may await.
        self.sending_holds: asyncio.Task[None] | None = None
        self._hold_lapse = 0.0
        self._last_change: dict[int, datetime] = {}
        # The view of the latest poll, and what it was worked out from.
        self._poll_view: tuple[BankData, tuple[object, ...], BankView] | None = None
        # The reconnects held until the voltages match, kept across restarts.
        self.held: dict[int, HeldRejoin] = {}
        # Held reconnects being carried out: None while written, then the
        # polls read since the write.
        self._carrying: dict[int, int | None] = {}
        # The poll the held reconnects were last judged on.
        self._judged: object = None
        # Automatic protection: what the policies propose after each poll.
        self.policies = PolicyRunner(self)

    @property
    def capabilities(self) -> ControlCapabilities:
        """Return what the bank's packs let a caller change."""
        return capabilities(self.entry)

    @property
    def enabled(self) -> bool:
        """Return whether control is on for this bank."""
        return control_enabled(self.entry)

    @property
    def settings(self) -> ControlSettings:
        """Return the guard's settings from the bank's options."""
        return control_settings(self.entry.options)

    # --- what is kept across restarts ---------------------------------------

    def export_state(self) -> dict[str, Any]:
        """Return what control keeps in the bank's store."""
        return {
            STORE_ISOLATED: sorted(self.isolated),
            STORE_REJOIN: [held.to_dict() for _, held in sorted(self.held.items())],
            STORE_POLICY_HOLDS: self.policies.export_state(),
        }

    def restore_state(self, data: object) -> None:
        """Read back the isolated packs and the held reconnects; start judging those.

        Packs isolated are held again where the BMS lets a hold lapse. A held
        reconnect goes on waiting for the guard, and nothing else; with
        control off it is dropped.
        """
        raw = data.get(STORE_ISOLATED) if isinstance(data, Mapping) else None
        if isinstance(raw, list):
            self.isolated = {a for a in raw if isinstance(a, int) and a in self.coordinator.packs}
        rejoins = data.get(STORE_REJOIN) if isinstance(data, Mapping) else None
        if self.enabled:
            for item in rejoins if isinstance(rejoins, list) else []:
                held = HeldRejoin.from_dict(item)
                if held is not None and held.address in self.coordinator.packs:
                    self.held[held.address] = held
            self.entry.async_on_unload(self.coordinator.async_add_listener(self._on_poll))
        self.policies.restore_state(data)
        driver = self.coordinator.driver
        if not isinstance(driver, HoldingDriver):
            return
        if not self.enabled:
            # Control off released every hold: the packs are back in the
            # bank, and turning control on again does not take them out.
            self.isolated.clear()
            return
        for address in self.isolated:
            driver.hold(address, CurrentHold(charge=0.0, discharge=0.0))
        if (lapse := self.capabilities.hold_seconds) is not None:
            # A poll every 10 s is no margin for a BMS that lets a limit go
            # after 10 s: between polls, a quarter of the hold time looks
            # whether half of it has passed since the limits were last sent.
            self._hold_lapse = lapse
            self.entry.async_on_unload(
                async_track_time_interval(
                    self.hass,
                    self._keep_holds,
                    timedelta(seconds=lapse / 4),
                    name=f"{DOMAIN} holds {self.entry.entry_id}",
                    cancel_on_shutdown=True,
                )
            )

    @callback
    def _keep_holds(self, _now: datetime) -> None:
        """Send the held limits between polls where half their hold time has passed."""
        driver = self.coordinator.driver
        if (
            not isinstance(driver, HoldingDriver)
            or not driver.holds
            or self._holds_sent_at is None
            or (dt_util.utcnow() - self._holds_sent_at).total_seconds() < self._hold_lapse / 2
        ):
            return
        self.sending_holds = self.entry.async_create_background_task(
            self.hass, self._async_send_holds_in_turn(), f"{DOMAIN} holds"
        )

    async def _async_send_holds_in_turn(self) -> None:
        async with self.coordinator.bus.turn(Priority.WRITE):
            await self.async_send_holds()

    async def async_send_holds(self) -> None:
        """Send every held limit again.

        Called in the poll's own turn on the bus, and between polls where
        half the hold time has passed since.
        """
        driver = self.coordinator.driver
        if not self.enabled or not isinstance(driver, HoldingDriver):
            return
        self._holds_sent_at = dt_util.utcnow()
        for address, err in (await driver.send_holds()).items():
            LOGGER.warning(
                "%s: the limit held on pack %s could not be sent again: %s",
                self.coordinator.name,
                address,
                err,
            )

    def release(self) -> None:
        """Stop holding any limit (on unload): the BMS returns to its own within its hold time."""
        driver = self.coordinator.driver
        if isinstance(driver, HoldingDriver):
            driver.release()

    # --- a change ------------------------------------------------------------

    def view(self, now: datetime) -> BankView:
        """Return the bank as the guard judges it from the latest poll.

        With the analyzer's resistance estimates (those of enough current
        steps to be judged on), and where the driver keeps them, the packs'
        own limits, to which a throttle may be raised again.
        """
        snapshot = self.coordinator.data.snapshot
        capacities = {
            address: identity.design_capacity
            for address, identity in self.coordinator.packs.items()
        }
        analyzer = self.coordinator.analyzer
        enough = analyzer.thresholds.resistance_min_samples
        resistances = {
            address: estimate.ohms
            for address, estimate in analyzer.resistance_estimates().items()
            if estimate.samples >= enough
        }
        driver = self.coordinator.driver
        # A path opened by holding its limit at 0 A shows that 0 A as the
        # pack's limit; closing it gives the pack its own back.
        held_open = (
            {
                address: (hold.charge == 0, hold.discharge == 0)
                for address, hold in driver.holds.items()
            }
            if isinstance(driver, HoldingDriver)
            else None
        )
        return bank_view(
            snapshot,
            now,
            self.settings,
            capacities=capacities,
            resistances=resistances,
            held_open=held_open,
            own_limits=driver.own_limits if isinstance(driver, HoldingDriver) else None,
        )

    def _view_of_poll(self) -> BankView:
        """Return the view as of the latest poll, worked out once for all who show it.

        Worked out again when the poll, the options or a held limit changed.
        """
        data = self.coordinator.data
        driver = self.coordinator.driver
        key: tuple[object, ...] = (
            self.entry.options,
            *((driver.holds, driver.own_limits) if isinstance(driver, HoldingDriver) else ()),
        )
        cached = self._poll_view
        if cached is None or cached[0] is not data or cached[1] != key:
            cached = self._poll_view = (data, key, self.view(data.snapshot.taken_at))
        return cached[2]

    def safe_limits(self) -> SafeLimits:
        """Return the most current the bank can take each way, as of the latest poll."""
        return safe_limits(self._view_of_poll().packs.values())

    def pack_state(self, address: int) -> PackState | None:
        """Return a pack as the guard sees it: its limits and how far they may be raised."""
        return self._view_of_poll().packs.get(address)

    def judge(self, change: Change, now: datetime) -> Decision:
        """Return the guard's decision on a change, from the latest poll."""
        return judge(
            change,
            self.view(now),
            now,
            self.settings,
            last_change=self._last_change.get(change.address),
        )

    def isolate_change(self, address: int) -> Change:
        """Return the change that takes a pack out: every path this family can switch back.

        A Seplos V3 is taken out by its charge path alone: its discharge
        FETs, once off, have no command to turn them on again.
        """
        caps = self.capabilities
        return Change(
            address=address,
            charge=False if caps.charge_path else None,
            discharge=False if caps.discharge_path else None,
        )

    def reconnect_change(self, address: int) -> Change:
        """Return the change that puts a pack back: every path this family can close."""
        caps = self.capabilities
        return Change(
            address=address,
            charge=True if caps.charge_path else None,
            discharge=True if caps.discharge_path else None,
        )

    async def async_change(
        self,
        change: Change,
        *,
        who: str = BY_USER,
        context: Context | None = None,
        when_matched: bool = False,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Judge a change, write it, and read it back; raise what went wrong, translated.

        ``when_matched``: a reconnect the guard refuses only because the
        voltages are apart is held (see the module) instead of refused.
        A change that opens a path of the pack cancels its held reconnect.
        """
        address = change.address
        pack = self._pack_name(address)
        if not self.enabled:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="control_disabled",
                translation_placeholders={"bank": self.entry.title},
            )
        self._check_offered(change, pack)
        if change.charge is False or change.discharge is False:
            self.cancel_rejoin(address, who=who, context=context)
        now = dt_util.utcnow()
        decision = self.judge(change, now)
        if not decision.allowed:
            if when_matched and (
                held := hold_rejoin(change, decision, now, self.settings, who=who)
            ):
                self._hold(held, context)
                return
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key=refusal_key(decision),
                translation_placeholders=_placeholders(pack, decision),
            )
        if decision.reason is Reason.NO_CHANGE:
            if who == BY_USER:
                self._remember(change, True, who)
            return
        try:
            await self._write(change)
        except ProtocolError as err:
            self._raise_repair(address, pack)
            self._fire(change, who, decision, confirmed=False, context=context, details=details)
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="write_failed",
                translation_placeholders={"pack": pack, "error": str(err) or type(err).__name__},
            ) from err
        self._last_change[address] = now
        confirmed = await self._read_back(change)
        self._remember(change, confirmed, who)
        self._fire(change, who, decision, confirmed=confirmed, context=context, details=details)
        if not confirmed:
            self._raise_repair(address, pack)
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="write_not_taken",
                translation_placeholders={"pack": pack, "polls": str(READ_BACK_POLLS)},
            )
        ir.async_delete_issue(self.hass, DOMAIN, self._issue_id(address))

    def _check_offered(self, change: Change, pack: str) -> None:
        """Refuse what this family cannot do (or cannot undo), before the guard."""
        caps = self.capabilities
        if change.address not in self.coordinator.packs:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="unknown_pack",
                translation_placeholders={"pack": pack},
            )
        if caps.can_write and not caps.writable(change.address):
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="broadcast_unit",
                translation_placeholders={"pack": pack, "unit": str(change.address)},
            )
        asks_charge = change.charge is not None
        asks_discharge = change.discharge is not None
        throttles = change.charge_limit is not None or change.discharge_limit is not None
        if (
            (asks_charge and not caps.charge_path)
            or (asks_discharge and not caps.discharge_path)
            or (throttles and not caps.throttle)
            or (caps.paths_together and asks_charge != asks_discharge)
        ):
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="not_offered",
                translation_placeholders={"pack": pack},
            )

    async def _write(self, change: Change) -> None:
        """Write the change in a turn of its own on the bus, ahead of waiting reads."""
        driver = self.coordinator.driver
        held = driver.holds.get(change.address) if isinstance(driver, HoldingDriver) else None
        try:
            await self._write_in_turn(change)
        except ProtocolError:
            # A hold the BMS did not take is not sent again every poll behind
            # the caller's back: the pack keeps what it held before.
            if isinstance(driver, HoldingDriver):
                if held is None:
                    driver.release(change.address)
                else:
                    driver.hold(change.address, held)
            raise

    async def _write_in_turn(self, change: Change) -> None:
        driver = self.coordinator.driver
        async with self.coordinator.bus.turn(Priority.WRITE):
            if change.charge_limit is not None or change.discharge_limit is not None:
                if not isinstance(driver, HoldingDriver):
                    raise ProtocolError("this family cannot be throttled")
                await driver.set_current_limits(
                    change.address, charge=change.charge_limit, discharge=change.discharge_limit
                )
            if change.charge is not None or change.discharge is not None:
                await driver.set_paths(
                    change.address, charge=change.charge, discharge=change.discharge
                )

    async def _read_back(self, change: Change) -> bool:
        """Read the pack at once, then at each of the next two polls until it shows the change.

        A FET shows at once. A BMS that lets a hold lapse shows a released
        limit only once its hold time (about one poll interval) is over.
        """
        await self.coordinator.async_refresh()
        if change.charge is None and change.discharge is None:
            # A throttle shows as the BMS's limit, which it may round: the
            # poll shows it, and no path state is asked of it.
            return True
        for _ in range(READ_BACK_POLLS):
            if self._shown(change):
                return True
            if not await self._next_poll():
                return False
        return self._shown(change)

    def _shown(self, change: Change) -> bool:
        return _shows(self.coordinator.data.snapshot.readings.get(change.address), change)

    async def _next_poll(self) -> bool:
        """Wait for the coordinator's next poll; False if none comes within two intervals."""
        polled: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        @callback
        def updated() -> None:
            if not polled.done():
                polled.set_result(None)

        remove = self.coordinator.async_add_listener(updated)
        try:
            async with asyncio.timeout(READ_BACK_WAIT.total_seconds()):
                await polled
        except TimeoutError:
            return False
        finally:
            remove()
        return True

    def _remember(self, change: Change, confirmed: bool, who: str = BY_USER) -> None:
        """Keep which packs the user isolated, for a restart; a pack back in waits no more.

        A policy keeps its own (policy_runner.py); a pack the user changes
        is the user's from then on.
        """
        if not confirmed or who != BY_USER:
            return
        self.policies.user_changed(change)
        before = set(self.isolated)
        action = _action(change, self.capabilities)
        if action == ACTION_ISOLATE:
            self.isolated.add(change.address)
        elif change.charge is True or change.discharge is True:
            self.isolated.discard(change.address)
            ir.async_delete_issue(self.hass, DOMAIN, self._gave_up_id(change.address))
            waited = (
                None if change.address in self._carrying else self.held.pop(change.address, None)
            )
            if waited is not None:
                self.coordinator.async_update_listeners()
                self.coordinator.async_save_soon()
        if self.isolated != before:
            self.coordinator.async_save_soon()

    # --- rejoin when matched ---------------------------------------------------

    def _hold(self, held: HeldRejoin, context: Context | None) -> None:
        """Hold a reconnect until the guard allows it; show it and say so."""
        address = held.address
        self.held[address] = held
        ir.async_delete_issue(self.hass, DOMAIN, self._gave_up_id(address))
        LOGGER.info(
            "%s: pack %s waits to rejoin (%s: %s) until %s",
            self.coordinator.name,
            address,
            held.reason.value,
            dict(held.values),
            held.give_up_at.isoformat(),
        )
        self._fire_rejoin(held, ACTION_HOLD, context=context)
        self.coordinator.async_save_soon()
        self.coordinator.async_update_listeners()

    def cancel_rejoin(
        self, address: int, *, who: str = BY_USER, context: Context | None = None
    ) -> bool:
        """Cancel a pack's held reconnect; False where none waits (or it is being written)."""
        if address in self._carrying or (held := self.held.pop(address, None)) is None:
            return False
        self._fire_rejoin(held, ACTION_CANCEL, who=who, context=context)
        self.coordinator.async_save_soon()
        self.coordinator.async_update_listeners()
        return True

    @callback
    def _on_poll(self) -> None:
        """Judge every held reconnect on a new poll; carry out one the guard allows.

        Called for every update of the coordinator; a poll is judged once,
        and without a new one only the time runs out.
        """
        data = self.coordinator.data
        fresh = data is not None and data is not self._judged
        self._judged = data
        now = dt_util.utcnow()
        for address, held in list(self.held.items()):
            if address in self._carrying:
                if fresh:
                    self._read_back_held(held)
                continue
            if not fresh:
                if now >= held.give_up_at:
                    self._give_up(held)
                continue
            decision = self.judge(held.change, now)
            step, updated = rejoin_step(held, decision, now)
            LOGGER.debug(
                "%s: pack %s held reconnect: %s (%s: %s)",
                self.coordinator.name,
                address,
                step.value,
                decision.reason.value,
                dict(decision.values),
            )
            if step is RejoinStep.JOIN:
                self._carrying[address] = None
                self.entry.async_create_background_task(
                    self.hass,
                    self._async_carry_out(held),
                    f"{DOMAIN} rejoin pack {address}",
                )
            elif step is RejoinStep.GIVE_UP:
                self._give_up(held)
            elif step is RejoinStep.DONE:
                # Connected by other means (at the rack, by its BMS).
                del self.held[address]
                self.coordinator.async_save_soon()
            elif updated is not held:
                self.held[address] = updated

    async def _async_carry_out(self, held: HeldRejoin) -> None:
        """Write a held reconnect the guard allowed; the polls that follow read it back."""
        address = held.address
        try:
            await self._write(held.change)
        except ProtocolError as err:
            LOGGER.warning(
                "%s: pack %s did not accept its held reconnect: %s",
                self.coordinator.name,
                address,
                err,
            )
            self._finish_held(held, confirmed=False)
            return
        self._last_change[address] = dt_util.utcnow()
        self._carrying[address] = 0
        await self.coordinator.async_refresh()

    def _read_back_held(self, held: HeldRejoin) -> None:
        """Confirm a held reconnect written, or give it up after two more polls."""
        polls = self._carrying[held.address]
        if polls is None:
            return  # still being written
        if self._shown(held.change):
            self._finish_held(held, confirmed=True)
        elif polls >= READ_BACK_POLLS:
            self._finish_held(held, confirmed=False)
        else:
            self._carrying[held.address] = polls + 1

    def _finish_held(self, held: HeldRejoin, *, confirmed: bool) -> None:
        """Close a held reconnect carried out: keep, tell, repair as any change does."""
        address = held.address
        self._carrying.pop(address, None)
        self.held.pop(address, None)
        self._remember(held.change, confirmed, held.who)
        decision = Decision(allowed=True, reason=Reason.ALLOWED, address=address)
        self._fire(held.change, held.who, decision, confirmed=confirmed, context=None, held=held)
        if confirmed:
            ir.async_delete_issue(self.hass, DOMAIN, self._issue_id(address))
        else:
            self._raise_repair(address, self._pack_name(address))
        self.coordinator.async_save_soon()
        self.coordinator.async_update_listeners()

    def _give_up(self, held: HeldRejoin) -> None:
        """Stop waiting for a reconnect whose time is over; a repair says why."""
        address = held.address
        del self.held[address]
        minutes = round((held.give_up_at - held.since).total_seconds() / 60)
        LOGGER.warning(
            "%s: pack %s gave up waiting to rejoin after %s min (%s: %s)",
            self.coordinator.name,
            address,
            minutes,
            held.reason.value,
            dict(held.values),
        )
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            self._gave_up_id(address),
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key=_directed(f"{GAVE_UP_PREFIX}{held.reason.value}", held.values),
            translation_placeholders={
                **_placeholders(self._pack_name(address), held),
                "bank": self.entry.title,
                "minutes": str(minutes),
            },
        )
        self._fire_rejoin(held, ACTION_GIVE_UP)
        self.coordinator.async_save_soon()
        self.coordinator.async_update_listeners()

    def _gave_up_id(self, address: int) -> str:
        return f"{GAVE_UP_PREFIX}{self.entry.entry_id}_{address}"

    def _fire_rejoin(
        self,
        held: HeldRejoin,
        action: str,
        *,
        who: str | None = None,
        context: Context | None = None,
    ) -> None:
        """Tell the bus (and so the logbook) of a reconnect held, cancelled, or given up."""
        reading = self.coordinator.data.snapshot.readings.get(held.address)
        data: dict[str, Any] = {
            "entry_id": self.entry.entry_id,
            "device_id": self.pack_device_id(held.address),
            "address": held.address,
            "action": action,
            "who": who or held.who,
            "reason": held.reason.value,
            "values": dict(held.values),
            "since": held.since.isoformat(),
            "give_up_at": held.give_up_at.isoformat(),
            "voltage": None if reading is None else reading.voltage,
            "current": None if reading is None else reading.current,
        }
        self.hass.bus.async_fire(EVENT_CONTROL, data, context=context)

    def _fire(
        self,
        change: Change,
        who: str,
        decision: Decision,
        *,
        confirmed: bool,
        context: Context | None,
        held: HeldRejoin | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Tell the bus (and so the logbook) what was done, by whom, and the numbers.

        ``held``: the change was a reconnect held until matched.
        """
        reading = self.coordinator.data.snapshot.readings.get(change.address)
        data: dict[str, Any] = {
            "entry_id": self.entry.entry_id,
            "device_id": self.pack_device_id(change.address),
            "address": change.address,
            "action": ACTION_RECONNECT if held is not None else _action(change, self.capabilities),
            "who": who,
            "held": held is not None,
            "reason": decision.reason.value,
            "confirmed": confirmed,
            "charge": change.charge,
            "discharge": change.discharge,
            "charge_limit": change.charge_limit,
            "discharge_limit": change.discharge_limit,
            "charge_enabled": None if reading is None else reading.charge_enabled,
            "discharge_enabled": None if reading is None else reading.discharge_enabled,
            "voltage": None if reading is None else reading.voltage,
            "current": None if reading is None else reading.current,
            **(details or {}),
        }
        if held is not None:
            data["since"] = held.since.isoformat()
        self.hass.bus.async_fire(EVENT_CONTROL, data, context=context)

    def fire_refusal(
        self, change: Change, who: str, decision: Decision, details: Mapping[str, Any]
    ) -> None:
        """Tell the bus (and so the logbook) of a change the guard refused to a policy."""
        self._fire(change, who, decision, confirmed=False, context=None, details=details)

    def _issue_id(self, address: int) -> str:
        # Not under the bank's finding prefix: findings.py mirrors those to
        # the open findings, and would take this one away.
        return f"{ISSUE_PREFIX}{self.entry.entry_id}_{address}"

    def _raise_repair(self, address: int, pack: str) -> None:
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            self._issue_id(address),
            is_fixable=False,
            severity=ir.IssueSeverity.ERROR,
            translation_key="control_not_taken",
            translation_placeholders={"pack": pack, "bank": self.entry.title},
        )

    def _pack_name(self, address: int) -> str:
        return f"{self.entry.title} pack {address}"

    def pack_device_id(self, address: int) -> str | None:
        """Return the device id of the pack at an address."""
        from .entity import pack_device_key  # noqa: PLC0415 - entity imports the coordinator

        identity = self.coordinator.packs.get(address)
        if identity is None:
            return None
        # Looked up among the bank's own devices: async_get_device by
        # identifiers is refused from 2026.x on, and its replacement is not
        # in 2025.4.
        wanted = (DOMAIN, pack_device_key(self.entry, identity))
        for device in dr.async_entries_for_config_entry(
            dr.async_get(self.hass), self.entry.entry_id
        ):
            if wanted in device.identifiers:
                return device.id
        return None


def refusal_key(decision: Decision) -> str:
    """Return the translation key of a refusal.

    Where the guard names a direction, each has a message of its own, so
    that every language words charging and discharging in its own way
    ("refused_overload_discharge").
    """
    return _directed(f"refused_{decision.reason.value}", decision.values)


def _directed(key: str, values: Mapping[str, float | int | str]) -> str:
    """Return a translation key, with the direction the guard names, if any, after it."""
    direction = values.get("direction")
    return f"{key}_{direction}" if isinstance(direction, str) else key


def _placeholders(pack: str, decision: Decision | HeldRejoin) -> dict[str, str]:
    """Return a refusal's placeholders: the pack, then the guard's numbers as text."""
    values = {key: str(value) for key, value in decision.values.items()}
    return {"pack": pack, **values}
