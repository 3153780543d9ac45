"""The rules of a parallel bank, as pure functions of snapshots, history and time.

Use :class:`BankAnalyzer`: feed it every snapshot with ``now`` and mirror
the :class:`AnalysisResult`'s open findings into Home Assistant. Nothing in
here imports Home Assistant or reads the clock. ``docs/rules.md`` explains
each rule under a heading named by its key.
"""

from __future__ import annotations

from .analyzer import AnalysisResult, BankAnalyzer
from .catalog import PACK_RULES, RULES
from .composition import FAMILY_MAX_PACKS
from .findings import Finding, Observation, Severity, Value, finding_id
from .maintenance import (
    MaintenanceRecord,
    MaintenanceSchedule,
    MaintenanceTask,
    RestoredSchedule,
)
from .resistance import ResistanceEstimate
from .thresholds import SettingInfo, Thresholds, settings_info

__all__ = [
    "FAMILY_MAX_PACKS",
    "PACK_RULES",
    "RULES",
    "AnalysisResult",
    "BankAnalyzer",
    "Finding",
    "MaintenanceRecord",
    "MaintenanceSchedule",
    "MaintenanceTask",
    "Observation",
    "ResistanceEstimate",
    "RestoredSchedule",
    "SettingInfo",
    "Severity",
    "Thresholds",
    "Value",
    "finding_id",
    "settings_info",
]
