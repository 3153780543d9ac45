"""The maintenance schedule of a parallel bank, and its history.

A parallel bank goes wrong slowly: a terminal loosens a little with every
heat cycle, a pack's capacity drifts from the others', the packs' charge
drifts apart. Nobody notices until one pack trips. A few checks on a
calendar catch it early:

- ``voltage_check``, monthly: the spread of the pack voltages at rest. The
  analyzer records it by itself from a quiet moment of the bank, with the
  spread it measured, so the user only hears of it when it cannot be taken.
- ``capacity_test``, every 6 months: compare each pack's reported full
  capacity (or a partial discharge) with the last test.
- ``terminal_check``, twice a year: clean the terminals, check the torque of
  every lug and busbar bolt. A loose terminal is the parallel bank's most
  common fault and its most dangerous.
- ``full_capacity_test``, yearly: a full discharge and charge, which
  recalibrates every BMS's SoC and measures the real capacity.

A task falls due its interval after it was last done, or after the
schedule was created if it never was, so a new installation is not nagged
on day one. Intervals are calendar days in the bank owner's time zone: work
done just after midnight in May is due on the same date 182 days later, not
on the evening before because the clocks went back in between.

The schedule goes to and from a plain dict for Home Assistant's storage; a
corrupt or partial dict loses only what cannot be read, and says what that
was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from enum import StrEnum
import math
from types import MappingProxyType
from typing import Any, NamedTuple

from ..model import BankSnapshot
from .findings import Finding, Severity, Value, finding_id
from .thresholds import Thresholds

STORAGE_VERSION = 1
_HISTORY_PER_TASK = 50  # records kept per task; the oldest go first


class MaintenanceTask(StrEnum):
    """A recurring piece of work on the bank."""

    VOLTAGE_CHECK = "voltage_check"
    CAPACITY_TEST = "capacity_test"
    TERMINAL_CHECK = "terminal_check"
    FULL_CAPACITY_TEST = "full_capacity_test"

    @property
    def rule(self) -> str:
        """Return the rule key of this task's finding, e.g. ``maintenance_capacity_test``."""
        return f"maintenance_{self.value}"


# Tasks the analyzer records by itself: they are reported due only after a
# grace period in which the bank had no quiet moment to take them.
AUTOMATIC_TASKS = frozenset({MaintenanceTask.VOLTAGE_CHECK})


def intervals_from(thresholds: Thresholds) -> dict[MaintenanceTask, timedelta]:
    """Return each task's interval as the settings give it."""
    return {
        MaintenanceTask.VOLTAGE_CHECK: timedelta(days=thresholds.voltage_check_days),
        MaintenanceTask.CAPACITY_TEST: timedelta(days=thresholds.capacity_test_days),
        MaintenanceTask.TERMINAL_CHECK: timedelta(days=thresholds.terminal_check_days),
        MaintenanceTask.FULL_CAPACITY_TEST: timedelta(days=thresholds.full_capacity_test_days),
    }


@dataclass(frozen=True, kw_only=True)
class MaintenanceRecord:
    """One time a task was done, and what it found."""

    task: MaintenanceTask
    when: datetime
    result: Mapping[str, Value] = field(default_factory=dict)
    automatic: bool = False

    def __post_init__(self) -> None:
        """Keep a record immutable."""
        object.__setattr__(self, "result", MappingProxyType(dict(self.result)))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready form."""
        return {
            "task": self.task.value,
            "when": self.when.isoformat(),
            "result": dict(self.result),
            "automatic": self.automatic,
        }


class RestoredSchedule(NamedTuple):
    """A schedule read back from storage, and what could not be read."""

    schedule: MaintenanceSchedule
    dropped: list[str]


class MaintenanceSchedule:
    """When each task was done, when it is due next, and which are due now."""

    def __init__(
        self,
        *,
        created: datetime,
        thresholds: Thresholds | None = None,
        tz: tzinfo = UTC,
    ) -> None:
        """Start a schedule on the day the bank was set up.

        ``tz`` is the time zone whose calendar the intervals count in, and
        whose dates the findings name.
        """
        self.created = _aware(created)
        self.tz = tz
        self.thresholds = thresholds or Thresholds()
        self._history: dict[MaintenanceTask, list[MaintenanceRecord]] = {
            task: [] for task in MaintenanceTask
        }
        self.revision = 0  # goes up with every change, so the caller knows to save

    @property
    def thresholds(self) -> Thresholds:
        """Return the settings the intervals come from."""
        return self._thresholds

    @thresholds.setter
    def thresholds(self, thresholds: Thresholds) -> None:
        self._thresholds = thresholds
        self.intervals = intervals_from(thresholds)

    def record(
        self,
        task: MaintenanceTask | str,
        when: datetime,
        result: Mapping[str, Value] | None = None,
        *,
        automatic: bool = False,
    ) -> MaintenanceRecord:
        """Record that a task was done, with what it found.

        This is what a repair's fix flow calls when the user confirms the
        work. Records are kept in date order, the newest 50 per task.
        """
        task = MaintenanceTask(task)
        entry = MaintenanceRecord(
            task=task, when=_aware(when), result=result or {}, automatic=automatic
        )
        history = self._history[task]
        history.append(entry)
        history.sort(key=lambda item: item.when)
        del history[:-_HISTORY_PER_TASK]
        self.revision += 1
        return entry

    def last(self, task: MaintenanceTask | str) -> MaintenanceRecord | None:
        """Return when a task was last done, or None."""
        history = self._history[MaintenanceTask(task)]
        return history[-1] if history else None

    def next_due(self, task: MaintenanceTask | str) -> datetime:
        """Return when a task falls due next."""
        task = MaintenanceTask(task)
        last = self.last(task)
        start = last.when if last is not None else self.created
        # Adding to a time in a zone adds wall-clock time: the same hour of
        # the day on the date the interval gives, across a change of clocks.
        return start.astimezone(self.tz) + self.intervals[task]

    def local_date(self, when: datetime) -> date:
        """Return the date a moment falls on in the schedule's time zone."""
        return _aware(when).astimezone(self.tz).date()

    def history(self, task: MaintenanceTask | str | None = None) -> list[MaintenanceRecord]:
        """Return the records of one task, or of all, oldest first."""
        if task is not None:
            return list(self._history[MaintenanceTask(task)])
        everything = [entry for entries in self._history.values() for entry in entries]
        return sorted(everything, key=lambda entry: entry.when)

    def due(self, now: datetime) -> list[Finding]:
        """Return a finding for every task that is due.

        ``since`` is the due date. A task overdue by more than half its
        interval is a warning, otherwise info. An automatic task is reported
        only once its grace period has passed without a chance to take it.

        Values: ``task``, ``due`` (ISO date), ``last_done`` (ISO date, or
        "" if never), ``interval_days``, ``overdue_days``.
        """
        now = _aware(now)
        findings: list[Finding] = []
        for task in MaintenanceTask:
            due = self.next_due(task)
            report_from = due
            if task in AUTOMATIC_TASKS:
                report_from = due + timedelta(days=self.thresholds.voltage_check_grace_days)
            if now < report_from:
                continue
            interval = self.intervals[task]
            overdue = now - due
            last = self.last(task)
            findings.append(
                Finding(
                    id=finding_id(task.rule, None),
                    rule=task.rule,
                    severity=Severity.WARNING if overdue > interval / 2 else Severity.INFO,
                    address=None,
                    since=due,
                    values={
                        "task": task.value,
                        "due": self.local_date(due).isoformat(),
                        "last_done": self.local_date(last.when).isoformat() if last else "",
                        "interval_days": round(interval / timedelta(days=1)),
                        "overdue_days": overdue.days,
                    },
                )
            )
        return findings

    def observe(self, snapshot: BankSnapshot, now: datetime) -> MaintenanceRecord | None:
        """Take the monthly voltage check from a quiet moment of the bank.

        It is taken once it is due, from a snapshot in which every pack
        answered and the bank current is below ``voltage_check_max_c_rate``
        of its capacity: under load the spread also holds each pack's cable
        drop, and a pack that did not answer would be missing from it.
        Returns the record when one was taken.
        """
        now = _aware(now)
        task = MaintenanceTask.VOLTAGE_CHECK
        if now < self.next_due(task) or snapshot.failed:
            return None
        voltages = {a: r.voltage for a, r in snapshot.readings.items() if r.voltage is not None}
        if len(voltages) < 2 or len(voltages) != len(snapshot.readings):
            return None
        capacity = snapshot.full_capacity
        current = snapshot.current
        if capacity is None or current is None:
            return None
        if abs(current) > self.thresholds.voltage_check_max_c_rate * capacity:
            return None
        highest = max(voltages, key=lambda address: voltages[address])
        lowest = min(voltages, key=lambda address: voltages[address])
        spread = voltages[highest] - voltages[lowest]
        passed = spread < self.thresholds.voltage_spread_warning
        return self.record(
            task,
            now,
            {
                "spread": round(spread, 3),
                "highest": highest,
                "lowest": lowest,
                "bank_current": round(current, 1),
                "packs": len(voltages),
                "passed": "yes" if passed else "no",
            },
            automatic=True,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the schedule for Home Assistant's storage.

        The intervals are not stored: they are settings, and come from the
        options each time.
        """
        return {
            "version": STORAGE_VERSION,
            "created": self.created.isoformat(),
            "history": [entry.to_dict() for entry in self.history()],
        }

    @classmethod
    def from_dict(
        cls,
        data: object,
        *,
        now: datetime,
        thresholds: Thresholds | None = None,
        tz: tzinfo = UTC,
    ) -> RestoredSchedule:
        """Read a stored schedule back, keeping whatever can be read.

        Never raises. A missing or unreadable creation date becomes ``now``
        (the schedule starts over, rather than nagging at once); each record
        that cannot be read is dropped alone, and each such loss is named in
        ``dropped`` so the caller can log it.
        """
        dropped: list[str] = []
        if not isinstance(data, Mapping):
            if data is not None:
                dropped.append(f"store: not a mapping ({type(data).__name__}), started anew")
            return RestoredSchedule(cls(created=now, thresholds=thresholds, tz=tz), dropped)
        version = data.get("version")
        if version != STORAGE_VERSION:
            dropped.append(f"version: {version!r} is not {STORAGE_VERSION}, read as far as known")
        created = _parse_time(data.get("created"))
        if created is None:
            dropped.append(f"created: {data.get('created')!r} unreadable, now used instead")
            created = now
        schedule = cls(created=created, thresholds=thresholds, tz=tz)
        history = data.get("history", [])
        if not isinstance(history, list):
            dropped.append(f"history: not a list ({type(history).__name__})")
            history = []
        for index, item in enumerate(history):
            problem = schedule._restore(item)
            if problem:
                dropped.append(f"history[{index}]: {problem}")
        schedule.revision = 0
        return RestoredSchedule(schedule, dropped)

    def _restore(self, item: object) -> str | None:
        """Restore one stored record; return what was wrong with it, if anything."""
        if not isinstance(item, Mapping):
            return f"not a mapping ({type(item).__name__})"
        try:
            task = MaintenanceTask(str(item.get("task")))
        except ValueError:
            return f"unknown task {item.get('task')!r}"
        when = _parse_time(item.get("when"))
        if when is None:
            return f"unreadable time {item.get('when')!r}"
        raw = item.get("result", {})
        result: dict[str, Value] = {}
        lost: list[str] = []
        if isinstance(raw, Mapping):
            for key, value in raw.items():
                if isinstance(key, str) and _is_value(value):
                    result[key] = value
                else:
                    lost.append(repr(key))
        elif raw is not None:
            lost.append("result")
        self.record(task, when, result, automatic=item.get("automatic") is True)
        if lost:
            return f"kept, without unreadable result entries {', '.join(lost)}"
        return None


def _is_value(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int | str)


def _parse_time(raw: object) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        return _aware(datetime.fromisoformat(raw))
    except ValueError:
        return None


def _aware(when: datetime) -> datetime:
    """Return a time with a zone; a time without one is taken as UTC."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
