"""Debounce, hysteresis and the life of a finding, with a clock moved by hand."""

from __future__ import annotations

from datetime import timedelta
import json

from custom_components.rack_battery.bank.analysis import (
    AnalysisResult,
    BankAnalyzer,
    Severity,
    Thresholds,
)
from custom_components.rack_battery.bank.model import PackIdentity

from .sim import START, ids, snap, volts

MIN = timedelta(minutes=1)


def identities(*addresses: int) -> dict[int, PackIdentity]:
    return {a: PackIdentity(address=a, family="pylontech_rs485") for a in addresses}


def feed(analyzer: BankAnalyzer, minutes: float, *voltages: float) -> AnalysisResult:
    now = START + timedelta(minutes=minutes)
    return analyzer.update(snap(now, volts(*voltages)), identities(1, 2, 3), now)


def test_condition_must_hold_before_it_is_raised() -> None:
    analyzer = BankAnalyzer()  # raise after 5 min, clear after 10
    assert not feed(analyzer, 0, 52.0, 52.3, 52.0).raised
    assert not feed(analyzer, 4, 52.0, 52.3, 52.0).open
    result = feed(analyzer, 5, 52.0, 52.3, 52.0)
    assert ids(result.raised) == {"voltage_spread"}
    finding = result.raised[0]
    assert finding.severity is Severity.WARNING
    assert finding.since == START  # when the condition began, not when it passed the debounce
    assert finding.values["spread"] == 0.3
    assert finding.values["highest"] == 2
    assert finding.values["lowest"] == 1  # a tie goes to the lowest address
    # Raised once: the next update keeps it open without raising it again.
    result = feed(analyzer, 6, 52.0, 52.3, 52.0)
    assert not result.raised
    assert ids(result.open) == {"voltage_spread"}


def test_a_blip_shorter_than_the_debounce_is_never_raised() -> None:
    analyzer = BankAnalyzer()
    feed(analyzer, 0, 52.0, 52.3, 52.0)
    feed(analyzer, 3, 52.0, 52.3, 52.0)
    feed(analyzer, 4, 52.0, 52.05, 52.0)  # gone: the pending condition starts over
    assert not feed(analyzer, 6, 52.0, 52.3, 52.0).raised
    assert not feed(analyzer, 10, 52.0, 52.3, 52.0).raised
    assert ids(feed(analyzer, 11, 52.0, 52.3, 52.0).raised) == {"voltage_spread"}


def test_pending_needs_the_raise_level_not_just_the_clear_level() -> None:
    analyzer = BankAnalyzer()
    feed(analyzer, 0, 52.0, 52.3, 52.0)
    for minute in range(1, 10):
        # 0.18 V is above the clear level (0.15) but below the raise level.
        assert not feed(analyzer, minute, 52.0, 52.18, 52.0).raised


def test_hysteresis_holds_an_open_finding_near_its_level() -> None:
    analyzer = BankAnalyzer()
    feed(analyzer, 0, 52.0, 52.3, 52.0)
    feed(analyzer, 5, 52.0, 52.3, 52.0)
    for minute in range(6, 40):
        result = feed(analyzer, minute, 52.0, 52.16, 52.0)  # below 0.2, above 0.15
        assert ids(result.open) == {"voltage_spread"}
        assert not result.cleared
    assert result.open[0].values["spread"] == 0.16  # the numbers follow the bank


def test_condition_must_be_gone_for_the_clear_delay() -> None:
    analyzer = BankAnalyzer()
    feed(analyzer, 0, 52.0, 52.3, 52.0)
    feed(analyzer, 5, 52.0, 52.3, 52.0)
    assert not feed(analyzer, 6, 52.0, 52.1, 52.0).cleared  # gone since minute 6
    assert not feed(analyzer, 15, 52.0, 52.1, 52.0).cleared
    assert not feed(analyzer, 15.5, 52.0, 52.25, 52.0).cleared  # back: the clock restarts
    assert not feed(analyzer, 16, 52.0, 52.1, 52.0).cleared
    assert not feed(analyzer, 25, 52.0, 52.1, 52.0).cleared
    result = feed(analyzer, 26, 52.0, 52.1, 52.0)
    assert ids(result.cleared) == {"voltage_spread"}
    assert not result.open


def test_severity_escalates_and_falls_back_as_changed() -> None:
    analyzer = BankAnalyzer()
    feed(analyzer, 0, 52.0, 52.3, 52.0)
    feed(analyzer, 5, 52.0, 52.3, 52.0)
    result = feed(analyzer, 6, 52.0, 52.6, 52.0)
    assert [f.severity for f in result.changed] == [Severity.CRITICAL]
    assert not result.raised
    assert result.open[0].since == START
    assert not feed(analyzer, 7, 52.0, 52.47, 52.0).changed  # held at critical
    result = feed(analyzer, 8, 52.0, 52.3, 52.0)
    assert [f.severity for f in result.changed] == [Severity.WARNING]


def test_debounce_is_settable() -> None:
    analyzer = BankAnalyzer(Thresholds(raise_after_minutes=0, clear_after_minutes=0))
    assert ids(feed(analyzer, 0, 52.0, 52.3, 52.0).raised) == {"voltage_spread"}
    assert ids(feed(analyzer, 1, 52.0, 52.0, 52.0).cleared) == {"voltage_spread"}


def test_thresholds_can_change_while_running() -> None:
    analyzer = BankAnalyzer(Thresholds(raise_after_minutes=0, voltage_spread_warning=0.4))
    assert not feed(analyzer, 0, 52.0, 52.3, 52.0).open
    analyzer.thresholds = Thresholds(raise_after_minutes=0, voltage_spread_warning=0.25)
    assert feed(analyzer, 1, 52.0, 52.3, 52.0).open


def test_an_unknown_neither_raises_nor_clears() -> None:
    analyzer = BankAnalyzer(Thresholds(raise_after_minutes=0, clear_after_minutes=0))
    feed(analyzer, 0, 52.0, 52.3, 52.0)
    # Only one pack answers: the spread cannot be measured, so it stays open.
    now = START + timedelta(minutes=30)
    result = analyzer.update(
        snap(now, {1: {"voltage": 52.0}}, failed=[2, 3]), identities(1, 2, 3), now
    )
    assert ids(result.open) == {"voltage_spread"}
    assert not result.cleared


def test_findings_of_a_pack_that_left_the_bank_clear_at_once() -> None:
    analyzer = BankAnalyzer(Thresholds(raise_after_minutes=0))
    hot = {1: {"temperatures": (25.0,)}, 2: {"temperatures": (50.0,)}}
    result = analyzer.update(snap(START, hot), identities(1, 2), START)
    assert "high_temperature_pack_2" in ids(result.open)
    later = START + MIN
    result = analyzer.update(snap(later, {1: {"temperatures": (25.0,)}}), identities(1), later)
    assert {"high_temperature_pack_2", "temperature_outlier_pack_2"} <= ids(result.cleared)
    assert not result.open


def test_result_helpers_split_bank_and_pack_findings() -> None:
    analyzer = BankAnalyzer(Thresholds(raise_after_minutes=0))
    packs = {
        1: {"voltage": 52.0, "temperatures": (25.0,)},
        2: {"voltage": 52.6, "temperatures": (47.0,)},
    }
    result = analyzer.update(snap(START, packs), identities(1, 2), START)
    assert ids(result.for_bank()) == {"voltage_spread"}
    assert ids(result.for_pack(2)) == {"high_temperature_pack_2", "temperature_outlier_pack_2"}
    assert result.for_pack(1) == ()
    assert result.worst() is Severity.CRITICAL
    assert result.worst(2) is Severity.WARNING
    assert result.worst(1) is None
    assert analyzer.open_findings == result.open


def test_same_input_same_findings() -> None:
    def run() -> list[str]:
        analyzer = BankAnalyzer()
        out = []
        for minute in range(30):
            spread = 0.3 if minute % 7 else 0.1
            out += [f.id for f in feed(analyzer, minute, 52.0, 52.0 + spread, 52.0).raised]
        return out

    assert run() == run()


def test_open_findings_survive_a_restart_without_events() -> None:
    analyzer = BankAnalyzer()
    feed(analyzer, 0, 52.0, 52.3, 52.0)
    feed(analyzer, 5, 52.0, 52.3, 52.0)
    stored = json.loads(json.dumps(analyzer.export_state()))

    restarted = BankAnalyzer()
    assert restarted.restore_state(stored) == []
    assert restarted.open_findings == analyzer.open_findings
    result = feed(restarted, 6, 52.0, 52.3, 52.0)
    assert not result.raised
    assert not result.cleared
    assert result.open[0].since == START
    # Gone: it clears through the usual debounce.
    feed(restarted, 7, 52.0, 52.0, 52.0)
    assert ids(feed(restarted, 17, 52.0, 52.0, 52.0).cleared) == {"voltage_spread"}


def test_a_corrupt_state_is_dropped_piece_by_piece() -> None:
    good = {
        "id": "x",
        "rule": "high_temperature",
        "severity": "warning",
        "address": 2,
        "values": {"temperature": 47.0, "bad": [1]},
        "since": START.isoformat(),
    }
    restarted = BankAnalyzer()
    dropped = restarted.restore_state(
        {
            "open": [
                good,
                {**good, "severity": "apocalyptic"},
                {**good, "since": "2025-01-01T00:00:00"},  # no zone
                {**good, "address": "2"},
                {**good, "rule": "retired_rule"},
                "junk",
            ],
            "resistance_trend": {"1": "junk"},
        }
    )
    assert len(dropped) == 6
    (finding,) = restarted.open_findings
    assert finding.id == "high_temperature_pack_2"  # the id follows rule and pack
    assert dict(finding.values) == {"temperature": 47.0}
    assert BankAnalyzer().restore_state(None) == []
    assert BankAnalyzer().restore_state([1]) == ["state: not a mapping (list)"]
    assert BankAnalyzer().restore_state({"open": 3}) == ["open: not a list"]


def test_restored_findings_of_a_pack_no_longer_in_the_bank_clear() -> None:
    analyzer = BankAnalyzer(Thresholds(raise_after_minutes=0))
    packs = {1: {"temperatures": (25.0,)}, 2: {"temperatures": (50.0,)}}
    analyzer.update(snap(START, packs), identities(1, 2), START)
    restarted = BankAnalyzer()
    restarted.restore_state(analyzer.export_state())
    later = START + MIN
    result = restarted.update(snap(later, {1: {"temperatures": (25.0,)}}), identities(1), later)
    assert "high_temperature_pack_2" in ids(result.cleared)
