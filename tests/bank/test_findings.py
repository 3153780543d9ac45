"""Findings, grading with hysteresis, and the settings' round trip."""

from __future__ import annotations

from datetime import UTC, datetime
import json
from pathlib import Path
import re

import pytest

from custom_components.rack_battery.bank.analysis import (
    RULES,
    Finding,
    Severity,
    Thresholds,
    finding_id,
    settings_info,
)
from custom_components.rack_battery.bank.analysis.findings import grade, median

W, C = Severity.WARNING, Severity.CRITICAL
LEVELS = [(W, 0.2), (C, 0.5)]


def test_finding_id_names_rule_and_pack() -> None:
    assert finding_id("voltage_spread", None) == "voltage_spread"
    assert finding_id("high_resistance", 3) == "high_resistance_pack_3"


@pytest.mark.parametrize(
    ("value", "current", "expected"),
    [
        (0.1, None, None),
        (0.2, None, W),  # at the level raises
        (0.19, None, None),
        (0.17, W, W),  # held within the hysteresis
        (0.15, W, W),
        (0.149, W, None),  # back past it: gone
        (0.5, None, C),
        (0.5, W, C),  # escalates at once
        (0.46, C, C),  # held at critical
        (0.44, C, W),  # falls back one level
        (0.14, C, None),
        (0.46, W, W),  # not critical until it reaches 0.5
    ],
)
def test_grade_applies_hysteresis_per_level(
    value: float, current: Severity | None, expected: Severity | None
) -> None:
    assert grade(value, LEVELS, hysteresis=0.05, current=current) is expected


def test_grade_below_for_values_where_lower_is_worse() -> None:
    levels = [(W, 80.0)]
    assert grade(80.0, levels, hysteresis=2, current=None, below=True) is W
    assert grade(81.0, levels, hysteresis=2, current=None, below=True) is None
    assert grade(81.5, levels, hysteresis=2, current=W, below=True) is W
    assert grade(82.5, levels, hysteresis=2, current=W, below=True) is None


def test_severity_rank_orders_by_impact() -> None:
    assert Severity.INFO.rank < Severity.WARNING.rank < Severity.CRITICAL.rank


def test_median() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5
    with pytest.raises(ValueError, match="nothing"):
        median([])


def test_finding_is_immutable_and_serialises() -> None:
    values = {"spread": 0.31, "highest": 2}
    finding = Finding(
        id="voltage_spread",
        rule="voltage_spread",
        severity=W,
        address=None,
        values=values,
        since=datetime(2025, 1, 1, tzinfo=UTC),
    )
    values["spread"] = 9.0
    assert finding.values["spread"] == 0.31
    with pytest.raises(TypeError):
        finding.values["spread"] = 1.0  # type: ignore[index]
    data = finding.as_dict()
    assert json.loads(json.dumps(data)) == {
        "id": "voltage_spread",
        "rule": "voltage_spread",
        "severity": "warning",
        "address": None,
        "values": {"spread": 0.31, "highest": 2},
        "since": "2025-01-01T00:00:00+00:00",
    }
    assert finding.placeholders() == {"spread": "0.31", "highest": "2"}
    assert hash(finding) == hash(finding)


def test_placeholders_name_the_pack() -> None:
    finding = Finding(
        id="high_resistance_pack_3",
        rule="high_resistance",
        severity=W,
        address=3,
        values={"ratio": 1.82},
        since=datetime(2025, 1, 1, tzinfo=UTC),
    )
    assert finding.placeholders() == {"ratio": "1.82", "address": "3"}


def test_rule_keys_are_unique_and_translation_safe() -> None:
    assert len(RULES) == len(set(RULES))
    for rule in RULES:
        assert rule.replace("_", "").isalnum()
        assert rule == rule.lower()


def test_thresholds_defaults_from_the_issue() -> None:
    t = Thresholds()
    assert t.voltage_spread_warning == 0.2
    assert t.voltage_spread_critical == 0.5
    assert t.voltage_swing == 1.0
    assert t.soh_replace == 80.0
    assert t.rated_cycles == 3000
    assert t.cycles_near_fraction == 0.9
    assert t.capacity_mismatch_percent == 5.0
    assert t.temperature_warning == 45.0
    assert t.temperature_outlier == 10.0
    assert t.parasitic_bank_current == 2.0
    assert t.parasitic_current == 1.0
    assert t.resistance_ratio == 1.5
    assert t.dropout_count == 3
    assert t.dropout_window_hours == 24
    assert t.problems() == []


def test_thresholds_round_trip_through_json() -> None:
    t = Thresholds(voltage_spread_warning=0.25, raise_after_minutes=2.0, rated_cycles=6000)
    data = json.loads(json.dumps(t.to_dict()))
    assert Thresholds.from_dict(data) == t


def test_thresholds_from_a_bad_dict_fall_back_to_defaults() -> None:
    data = {
        "voltage_spread_warning": "0.3",  # a string is not a number
        "voltage_spread_critical": float("nan"),
        "temperature_warning": 1e9,  # out of range
        "raise_after_minutes": True,  # a bool is not a number
        "soh_replace": 75,  # fine
        "dropout_count": 4.4,  # rounded, it counts packs
        "from_a_newer_version": 1,
    }
    t = Thresholds.from_dict(data)
    assert t.voltage_spread_warning == 0.2
    assert t.voltage_spread_critical == 0.5
    assert t.temperature_warning == 45.0
    assert t.raise_after_minutes == 5.0
    assert t.soh_replace == 75.0
    assert t.dropout_count == 4
    assert Thresholds.from_dict(None) == Thresholds()
    assert Thresholds.from_dict([1, 2]) == Thresholds()  # type: ignore[arg-type]


def test_thresholds_problems_name_inconsistent_settings() -> None:
    t = Thresholds(voltage_spread_warning=0.6, soc_spread_hysteresis=20.0)
    problems = t.problems()
    assert "voltage_spread_critical must be above voltage_spread_warning" in problems
    assert "soc_spread_hysteresis must be below soc_spread_warning" in problems


def test_settings_info_describes_every_field_for_the_options_flow() -> None:
    infos = settings_info()
    defaults = Thresholds().to_dict()
    assert [info.key for info in infos] == list(defaults)
    for info in infos:
        assert info.minimum <= info.default <= info.maximum, info.key
        assert info.description
    by_key = {info.key: info for info in infos}
    assert by_key["voltage_spread_warning"].unit == "V"
    assert by_key["dropout_count"].integer
    assert not by_key["voltage_spread_warning"].integer


def test_docs_explain_every_rule_under_its_key() -> None:
    root = Path(__file__).resolve().parents[2]
    text = (root / "docs/rules.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (\w+)$", text, flags=re.M)
    documented = [heading for heading in headings if heading in RULES]
    assert documented == list(RULES)
    # Every link within the page points at a heading that exists.
    for anchor in re.findall(r"\]\(#(\w+)\)", text):
        assert anchor in headings, anchor
