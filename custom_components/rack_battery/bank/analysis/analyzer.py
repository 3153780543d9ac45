"""The analyzer: every rule over every snapshot, with debounce, into findings.

This is the one stateful object of the analysis. It is handed each snapshot
with the time, runs the rules, and keeps for each condition whether it is
pending (seen, not yet long enough), open, or clearing. It never reads the
clock: the same snapshots at the same times give the same findings, so a
test moves time by passing a later ``now``, and a recorded day can be
replayed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ..model import BankSnapshot, PackIdentity
from .balance import cell_imbalance, parasitic_current, soc_spread
from .catalog import RULES
from .comms import Communication
from .composition import composition
from .context import RuleContext
from .findings import Finding, Observation, Severity
from .health import capacity_mismatch, cycle_life, state_of_health
from .maintenance import MaintenanceRecord, MaintenanceSchedule, MaintenanceTask
from .resistance import ResistanceEstimate, ResistanceTracker
from .sharing import CurrentSharing
from .temperature import temperature
from .thresholds import Thresholds
from .voltage import VoltageSwings, voltage_spread

Rule = Callable[[RuleContext], list[Observation]]

STATE_VERSION = 1

# Rules that need nothing but the snapshot in hand.
STATELESS_RULES: tuple[Rule, ...] = (
    voltage_spread,
    soc_spread,
    parasitic_current,
    cell_imbalance,
    temperature,
    state_of_health,
    cycle_life,
    capacity_mismatch,
    composition,
)


@dataclass(frozen=True, kw_only=True)
class AnalysisResult:
    """What one update found.

    ``open`` is every finding open after this update, the set the Home
    Assistant layer mirrors into repairs and binary sensors. ``raised`` and
    ``cleared`` are the changes this update made (for events and the
    logbook); ``changed`` holds findings that stayed open at a different
    severity (a repair to re-create). ``maintenance_recorded`` is a task the
    analyzer recorded by itself, so the caller saves the schedule.
    """

    open: tuple[Finding, ...] = ()
    raised: tuple[Finding, ...] = ()
    cleared: tuple[Finding, ...] = ()
    changed: tuple[Finding, ...] = ()
    maintenance_recorded: MaintenanceRecord | None = None

    def for_pack(self, address: int) -> tuple[Finding, ...]:
        """Return the open findings about one pack."""
        return tuple(finding for finding in self.open if finding.address == address)

    def for_bank(self) -> tuple[Finding, ...]:
        """Return the open findings about the bank as a whole."""
        return tuple(finding for finding in self.open if finding.address is None)

    def worst(self, address: int | None = None) -> Severity | None:
        """Return the highest open severity, for the bank or one pack."""
        pool = self.open if address is None else self.for_pack(address)
        return max((f.severity for f in pool), key=lambda s: s.rank, default=None)


@dataclass(kw_only=True)
class _Track:
    """Where one condition stands between polls."""

    pending_since: datetime | None = None
    finding: Finding | None = None
    clear_since: datetime | None = None
    address: int | None = None


@dataclass(kw_only=True)
class _Change:
    raised: list[Finding] = field(default_factory=list)
    cleared: list[Finding] = field(default_factory=list)
    changed: list[Finding] = field(default_factory=list)


class BankAnalyzer:
    """Runs the rules of a parallel bank over its snapshots."""

    def __init__(
        self,
        thresholds: Thresholds | None = None,
        *,
        maintenance: MaintenanceSchedule | None = None,
    ) -> None:
        """Set up the rules; pass the maintenance schedule to have it watched too."""
        self._thresholds = thresholds or Thresholds()
        self.maintenance = maintenance
        if maintenance is not None:
            maintenance.thresholds = self._thresholds
        self._swings = VoltageSwings()
        self._sharing = CurrentSharing()
        self._resistance = ResistanceTracker()
        self._comms = Communication()
        self._tracks: dict[str, _Track] = {}
        self._previous: BankSnapshot | None = None
        self._members: set[int] = set()

    @property
    def thresholds(self) -> Thresholds:
        """Return the settings in force."""
        return self._thresholds

    @thresholds.setter
    def thresholds(self, thresholds: Thresholds) -> None:
        """Change the settings; open findings are judged by the new ones next update."""
        self._thresholds = thresholds
        if self.maintenance is not None:
            self.maintenance.thresholds = thresholds

    @property
    def open_findings(self) -> tuple[Finding, ...]:
        """Return the findings open now, ordered by id."""
        return tuple(
            track.finding for _, track in sorted(self._tracks.items()) if track.finding is not None
        )

    def resistance_estimates(self) -> dict[int, ResistanceEstimate]:
        """Return each pack's internal resistance estimate and its daily trend."""
        return self._resistance.estimates()

    @property
    def resistance(self) -> ResistanceTracker:
        """Return the resistance tracker, to store and restore its trend."""
        return self._resistance

    def export_state(self) -> dict[str, Any]:
        """Return what should survive a restart: open findings and the resistance trend.

        Without it, a restart would clear every repair and raise it again
        one debounce later, firing a pair of events for nothing. Pending
        conditions and short histories are not kept: they rebuild in minutes.
        """
        return {
            "version": STATE_VERSION,
            "open": [finding.as_dict() for finding in self.open_findings],
            "resistance_trend": self._resistance.trend_to_dict(),
        }

    def restore_state(self, data: object) -> list[str]:
        """Restore :meth:`export_state`; return what could not be read. Never raises.

        Restored findings are open again at once, and clear through the
        usual debounce if their condition is gone; they are not reported as
        raised.
        """
        dropped: list[str] = []
        if not isinstance(data, Mapping):
            if data is not None:
                dropped.append(f"state: not a mapping ({type(data).__name__})")
            return dropped
        raw_open = data.get("open", [])
        if not isinstance(raw_open, list):
            dropped.append("open: not a list")
            raw_open = []
        for index, item in enumerate(raw_open):
            finding = Finding.from_dict(item)
            if finding is None:
                dropped.append(f"open[{index}]: unreadable finding")
                continue
            if finding.rule not in RULES:
                # A rule this version no longer has would stay open for ever.
                dropped.append(f"open[{index}]: unknown rule {finding.rule!r}")
                continue
            self._tracks[finding.id] = _Track(finding=finding, address=finding.address)
        lost = self._resistance.restore_trend(data.get("resistance_trend"))
        if lost:
            dropped.append(f"resistance_trend: {lost} unreadable entries")
        return dropped

    def update(
        self,
        snapshot: BankSnapshot,
        identities: Mapping[int, PackIdentity],
        now: datetime,
    ) -> AnalysisResult:
        """Run every rule over a snapshot taken at ``now`` and return the findings."""
        t = self._thresholds
        ctx = RuleContext(
            snapshot=snapshot,
            identities=identities,
            now=now,
            thresholds=t,
            open={
                key: track.finding.severity
                for key, track in self._tracks.items()
                if track.finding is not None
            },
            previous=self._previous,
            followed=self._tracks.keys(),
        )
        self._forget_departed(ctx.members)

        observations: list[Observation] = []
        for rule in STATELESS_RULES:
            observations.extend(rule(ctx))
        observations.extend(self._swings.observe(ctx))
        observations.extend(self._sharing.observe(ctx))
        observations.extend(self._resistance.observe(ctx))
        observations.extend(self._comms.observe(ctx))

        recorded: MaintenanceRecord | None = None
        if self.maintenance is not None:
            recorded = self.maintenance.observe(snapshot, now)
            observations.extend(self._maintenance_observations(now))

        change = _Change()
        for observation in observations:
            self._apply(observation, now, change)
        self._close_departed(ctx.members, change)
        self._previous = snapshot

        return AnalysisResult(
            open=self.open_findings,
            raised=tuple(change.raised),
            cleared=tuple(change.cleared),
            changed=tuple(change.changed),
            maintenance_recorded=recorded,
        )

    def _maintenance_observations(self, now: datetime) -> list[Observation]:
        assert self.maintenance is not None
        due = {finding.rule: finding for finding in self.maintenance.due(now)}
        observations: list[Observation] = []
        for task_rule in (task.rule for task in MaintenanceTask):
            finding = due.get(task_rule)
            observations.append(
                Observation(
                    rule=task_rule,
                    address=None,
                    severity=finding.severity if finding else None,
                    values=finding.values if finding else {},
                    instant=True,
                    since=finding.since if finding else None,
                )
            )
        return observations

    def _apply(self, observation: Observation, now: datetime, change: _Change) -> None:
        """Move one condition along: pending -> open -> clearing -> gone."""
        t = self._thresholds
        key = observation.id
        track = self._tracks.get(key)
        if track is None:
            if observation.severity is None:
                return
            track = self._tracks[key] = _Track(address=observation.address)

        if track.finding is None:
            if observation.severity is None:
                del self._tracks[key]  # it did not hold: start over next time
                return
            if track.pending_since is None:
                track.pending_since = now
            raise_after = observation.raise_after or t.raise_after
            if observation.instant or now - track.pending_since >= raise_after:
                track.finding = Finding(
                    id=key,
                    rule=observation.rule,
                    severity=observation.severity,
                    address=observation.address,
                    values=observation.values,
                    since=observation.since or track.pending_since,
                )
                change.raised.append(track.finding)
            return

        if observation.severity is not None:
            track.clear_since = None
            before = track.finding
            track.finding = replace(
                before, severity=observation.severity, values=observation.values
            )
            if before.severity is not observation.severity:
                change.changed.append(track.finding)
            return

        if track.clear_since is None:
            track.clear_since = now
        if observation.instant or now - track.clear_since >= t.clear_after:
            change.cleared.append(track.finding)
            del self._tracks[key]

    def _forget_departed(self, members: set[int]) -> None:
        """Drop the history of packs that are no longer part of the bank."""
        for address in self._members - members:
            self._swings.forget(address)
            self._sharing.forget(address)
            self._resistance.forget(address)
            self._comms.forget(address)
        self._members = set(members)

    def _close_departed(self, members: set[int], change: _Change) -> None:
        """Clear at once what was open about a pack that left the bank."""
        for key, track in list(self._tracks.items()):
            if track.address is None or track.address in members:
                continue
            if track.finding is not None:
                change.cleared.append(track.finding)
            del self._tracks[key]
