"""The maintenance schedule: due dates, the automatic voltage check, storage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
import json
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.rack_battery.bank.analysis import (
    AnalysisResult,
    BankAnalyzer,
    MaintenanceSchedule,
    MaintenanceTask,
    Severity,
    Thresholds,
)
from custom_components.rack_battery.bank.analysis.maintenance import STORAGE_VERSION
from simulator.bank import constant_load
from simulator.readings import snapshot_of

from .sim import START, identities_of, quiet_bank, snap

DAY = timedelta(days=1)
Task = MaintenanceTask


def due_ids(schedule: MaintenanceSchedule, now: datetime) -> set[str]:
    return {finding.id for finding in schedule.due(now)}


def test_nothing_is_due_on_day_one() -> None:
    schedule = MaintenanceSchedule(created=START)
    assert schedule.due(START) == []
    assert schedule.next_due(Task.VOLTAGE_CHECK) == START + 30 * DAY
    assert schedule.next_due(Task.CAPACITY_TEST) == START + 182 * DAY
    assert schedule.next_due(Task.TERMINAL_CHECK) == START + 182 * DAY
    assert schedule.next_due(Task.FULL_CAPACITY_TEST) == START + 365 * DAY


def test_tasks_fall_due_on_their_intervals() -> None:
    schedule = MaintenanceSchedule(created=START)
    # The voltage check is automatic: it is reported only after its grace period.
    assert due_ids(schedule, START + 31 * DAY) == set()
    assert due_ids(schedule, START + 33 * DAY) == {"maintenance_voltage_check"}
    assert due_ids(schedule, START + 183 * DAY) == {
        "maintenance_voltage_check",
        "maintenance_capacity_test",
        "maintenance_terminal_check",
    }
    (finding,) = [
        f for f in schedule.due(START + 183 * DAY) if f.rule == "maintenance_capacity_test"
    ]
    assert finding.since == START + 182 * DAY
    assert finding.address is None
    assert finding.severity is Severity.INFO
    assert finding.values == {
        "task": "capacity_test",
        "due": (START + 182 * DAY).date().isoformat(),
        "last_done": "",
        "interval_days": 182,
        "overdue_days": 1,
    }
    # Overdue by more than half its interval: a warning.
    (late,) = [f for f in schedule.due(START + 300 * DAY) if f.rule == "maintenance_capacity_test"]
    assert late.severity is Severity.WARNING


def test_recording_a_task_moves_its_due_date() -> None:
    schedule = MaintenanceSchedule(created=START)
    done = START + 190 * DAY
    entry = schedule.record("terminal_check", done, {"note": "two lugs re-torqued"})
    assert entry.task is Task.TERMINAL_CHECK
    assert schedule.revision == 1
    assert schedule.last(Task.TERMINAL_CHECK) == entry
    assert schedule.next_due(Task.TERMINAL_CHECK) == done + 182 * DAY
    assert "maintenance_terminal_check" not in due_ids(schedule, done + DAY)
    finding = next(
        f for f in schedule.due(done + 183 * DAY) if f.rule == "maintenance_terminal_check"
    )
    assert finding.values["last_done"] == done.date().isoformat()
    with pytest.raises(ValueError, match="polishing"):
        schedule.record("polishing", done)


def test_due_dates_count_calendar_days_across_a_change_of_clocks() -> None:
    """Work done just after midnight in May, in California, is due on the
    same date 182 days later, although the clocks went back in between and
    182 days of 24 hours would end at 23:10 the evening before. The finding
    names the owner's dates, not Greenwich's."""
    pacific = ZoneInfo("America/Los_Angeles")
    done = datetime(2027, 5, 28, 0, 10, tzinfo=pacific)
    schedule = MaintenanceSchedule(created=done - 10 * DAY, tz=pacific)
    schedule.record(Task.CAPACITY_TEST, done.astimezone(UTC))
    due = schedule.next_due(Task.CAPACITY_TEST)
    assert due == datetime(2027, 11, 26, 0, 10, tzinfo=pacific)
    assert due.astimezone(UTC) - done.astimezone(UTC) == 182 * DAY + timedelta(hours=1)
    assert schedule.local_date(due).isoformat() == "2027-11-26"
    (finding,) = [
        f
        for f in schedule.due(datetime(2027, 11, 26, 9, 0, tzinfo=pacific))
        if f.rule == "maintenance_capacity_test"
    ]
    assert finding.values["due"] == "2027-11-26"
    # 00:10 in California is 08:10 in Greenwich, the day before or not:
    # the last-done date is the Californian one.
    assert finding.values["last_done"] == "2027-05-28"
    # A day earlier it is not due yet.
    assert "maintenance_capacity_test" not in due_ids(
        schedule, datetime(2027, 11, 25, 23, 50, tzinfo=pacific)
    )
    # Read back from storage, it counts in the same zone again.
    restored, dropped = MaintenanceSchedule.from_dict(
        json.loads(json.dumps(schedule.to_dict())), now=due, tz=pacific
    )
    assert dropped == []
    assert restored.next_due(Task.CAPACITY_TEST) == due


def test_intervals_come_from_the_thresholds() -> None:
    schedule = MaintenanceSchedule(created=START, thresholds=Thresholds(capacity_test_days=90))
    assert schedule.next_due(Task.CAPACITY_TEST) == START + 90 * DAY
    schedule.thresholds = Thresholds(capacity_test_days=30)
    assert schedule.next_due(Task.CAPACITY_TEST) == START + 30 * DAY


def test_history_is_ordered_and_bounded() -> None:
    schedule = MaintenanceSchedule(created=START)
    for day in range(60, 0, -1):
        schedule.record(Task.CAPACITY_TEST, START + day * DAY)
    schedule.record(Task.TERMINAL_CHECK, START + 5.5 * DAY)
    history = schedule.history(Task.CAPACITY_TEST)
    assert len(history) == 50
    assert history[0].when == START + 11 * DAY  # the oldest ten went
    assert history[-1].when == START + 60 * DAY
    everything = schedule.history()
    assert [e.when for e in everything] == sorted(e.when for e in everything)
    assert len(everything) == 51


def test_the_voltage_check_is_taken_from_a_quiet_bank() -> None:
    bank = quiet_bank(4)
    schedule = MaintenanceSchedule(created=START)
    not_yet = START + 10 * DAY
    assert schedule.observe(snapshot_of(bank, not_yet), not_yet) is None

    due = START + 31 * DAY
    bank.load = constant_load(60.0)  # 0.15 C: under load the spread holds the cable drops
    bank.step(60)
    assert schedule.observe(snapshot_of(bank, due), due) is None
    bank.load = constant_load(5.0)
    bank.step(60)
    bank.take_off_bus(2)  # a pack that did not answer would be missing from it
    assert schedule.observe(snapshot_of(bank, due), due) is None
    bank.put_on_bus(2)
    entry = schedule.observe(snapshot_of(bank, due), due)
    assert entry is not None
    assert entry.automatic
    voltages = [p.voltage for p in bank.packs]
    assert entry.result["spread"] == pytest.approx(max(voltages) - min(voltages), abs=0.001)
    assert entry.result["passed"] == "yes"
    assert entry.result["packs"] == 4
    assert schedule.next_due(Task.VOLTAGE_CHECK) == due + 30 * DAY
    # Taken once: not again until it is due again.
    assert schedule.observe(snapshot_of(bank, due + DAY), due + DAY) is None


def test_a_failed_voltage_check_says_so() -> None:
    schedule = MaintenanceSchedule(created=START)
    now = START + 31 * DAY
    packs = {
        1: {"voltage": 52.0, "current": 0.5, "full_capacity": 100.0},
        2: {"voltage": 52.35, "current": -0.5, "full_capacity": 100.0},
    }
    entry = schedule.observe(snap(now, packs), now)
    assert entry is not None
    assert dict(entry.result) == {
        "spread": 0.35,
        "highest": 2,
        "lowest": 1,
        "bank_current": 0.0,
        "packs": 2,
        "passed": "no",
    }


def test_the_analyzer_raises_due_tasks_and_clears_them_when_done() -> None:
    bank = quiet_bank(4)
    bank.load = constant_load(60.0)  # never quiet: the voltage check cannot be taken
    bank.step(10)
    schedule = MaintenanceSchedule(created=START)
    analyzer = BankAnalyzer(maintenance=schedule)
    identities = identities_of(bank)

    def at(now: datetime) -> AnalysisResult:
        return analyzer.update(snapshot_of(bank, now), identities, now)

    assert at(START).open == ()
    result = at(START + 34 * DAY)
    assert {f.id for f in result.raised} == {"maintenance_voltage_check"}
    assert result.raised[0].since == START + 30 * DAY
    assert result.maintenance_recorded is None

    bank.load = constant_load(0.0)
    bank.step(10)
    now = START + 34 * DAY + timedelta(minutes=1)
    result = at(now)
    assert result.maintenance_recorded is not None
    assert result.maintenance_recorded.task is Task.VOLTAGE_CHECK
    assert {f.id for f in result.cleared} == {"maintenance_voltage_check"}

    now = START + 200 * DAY
    result = at(now)
    assert {"maintenance_capacity_test", "maintenance_terminal_check"} <= {
        f.id for f in result.raised
    }
    # The user confirms the work in the repair's fix flow.
    schedule.record(Task.TERMINAL_CHECK, now, {"torque_nm": 10})
    result = at(now + timedelta(minutes=1))
    assert {f.id for f in result.cleared} == {"maintenance_terminal_check"}


def test_the_analyzer_pushes_its_thresholds_to_the_schedule() -> None:
    schedule = MaintenanceSchedule(created=START)
    analyzer = BankAnalyzer(Thresholds(full_capacity_test_days=100), maintenance=schedule)
    assert schedule.next_due(Task.FULL_CAPACITY_TEST) == START + 100 * DAY
    analyzer.thresholds = Thresholds(full_capacity_test_days=200)
    assert schedule.next_due(Task.FULL_CAPACITY_TEST) == START + 200 * DAY


def test_round_trip_through_json() -> None:
    schedule = MaintenanceSchedule(created=START)
    schedule.record(Task.VOLTAGE_CHECK, START + 31 * DAY, {"spread": 0.04}, automatic=True)
    schedule.record(Task.CAPACITY_TEST, START + 180 * DAY, {"capacity_ah": 395.5, "by": "me"})
    stored = json.loads(json.dumps(schedule.to_dict()))
    assert stored["version"] == STORAGE_VERSION
    restored, dropped = MaintenanceSchedule.from_dict(stored, now=START + 400 * DAY)
    assert dropped == []
    assert restored.created == START
    assert restored.history() == schedule.history()
    assert restored.to_dict() == schedule.to_dict()
    assert restored.revision == 0
    later = START + 400 * DAY
    assert restored.due(later) == schedule.due(later)


def test_a_partial_store_keeps_what_it_can_read() -> None:
    good = {"task": "terminal_check", "when": (START + 10 * DAY).isoformat(), "result": {}}
    data: dict[str, Any] = {
        "version": STORAGE_VERSION,
        "created": START.isoformat(),
        "history": [
            good,
            {"task": "unknown_task", "when": START.isoformat()},
            {"task": "capacity_test", "when": "yesterday"},
            "not a record",
            {
                "task": "capacity_test",
                "when": "2025-06-01T00:00:00",  # no zone: taken as UTC
                "result": {"capacity_ah": 390.0, "bad": [1, 2], "nan": float("nan")},
            },
        ],
    }
    restored, dropped = MaintenanceSchedule.from_dict(data, now=START)
    assert len(dropped) == 4
    assert dropped[0].startswith("history[1]: unknown task")
    assert dropped[1].startswith("history[2]: unreadable time")
    assert dropped[2].startswith("history[3]: not a mapping")
    assert dropped[3].startswith("history[4]: kept, without")
    assert [e.task for e in restored.history()] == [Task.TERMINAL_CHECK, Task.CAPACITY_TEST]
    capacity = restored.last(Task.CAPACITY_TEST)
    assert capacity is not None
    assert capacity.when == datetime(2025, 6, 1, tzinfo=UTC)
    assert dict(capacity.result) == {"capacity_ah": 390.0}


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (None, None),
        ("garbage", "store: not a mapping"),
        ([1, 2, 3], "store: not a mapping"),
        ({}, "version"),
        ({"version": 1, "created": "never"}, "created"),
        ({"version": 1, "created": START.isoformat(), "history": {"a": 1}}, "history: not"),
    ],
)
def test_a_corrupt_store_starts_anew_and_says_why(data: object, problem: str | None) -> None:
    now = START + 5 * DAY
    restored, dropped = MaintenanceSchedule.from_dict(data, now=now)
    assert restored.history() == []
    if problem is None:
        assert dropped == []
    else:
        assert any(line.startswith(problem) for line in dropped), dropped
    if not isinstance(data, dict) or "created" not in data or data["created"] == "never":
        assert restored.created == now  # starts over rather than nagging at once
        assert restored.due(now + DAY) == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
record = st.fixed_dictionaries(
    {},
    optional={
        "task": st.sampled_from([t.value for t in Task]) | json_values,
        "when": st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat) | json_values,
        "result": st.dictionaries(st.text(max_size=8), json_values, max_size=3) | json_values,
        "automatic": json_values,
    },
)
store = st.fixed_dictionaries(
    {},
    optional={
        "version": json_values,
        "created": st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat) | json_values,
        "history": st.lists(record | json_values, max_size=6) | json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(data=store | json_values)
def test_from_dict_never_raises(data: object) -> None:
    restored, dropped = MaintenanceSchedule.from_dict(data, now=START)
    assert isinstance(dropped, list)
    # Whatever was kept can be stored again and reads back the same.
    again, dropped_again = MaintenanceSchedule.from_dict(
        json.loads(json.dumps(restored.to_dict())), now=START
    )
    assert dropped_again == []
    assert again.history() == restored.history()
    restored.due(START + 1000 * DAY)
