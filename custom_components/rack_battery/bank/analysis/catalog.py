"""Every rule key: a finding's ``rule``, a translation key, a heading in docs/rules.md."""

from __future__ import annotations

from .balance import CELL_IMBALANCE, PARASITIC_CURRENT, SOC_SPREAD
from .comms import PACK_DROPOUTS, PACK_ERROR_RATE
from .composition import MIXED_CELL_COUNT, MIXED_FIRMWARE, MIXED_MODELS, TOO_MANY_PACKS
from .health import CAPACITY_MISMATCH, CYCLE_LIFE, LOW_STATE_OF_HEALTH
from .maintenance import MaintenanceTask
from .resistance import HIGH_RESISTANCE
from .sharing import LOW_CURRENT_SHARE
from .temperature import HIGH_TEMPERATURE, TEMPERATURE_OUTLIER
from .voltage import VOLTAGE_SPREAD, VOLTAGE_SWING

# Every rule key, in the order docs/rules.md explains them. A key is a
# finding's ``rule``, a translation key, and the heading of its section.
RULES: tuple[str, ...] = (
    VOLTAGE_SPREAD,
    VOLTAGE_SWING,
    SOC_SPREAD,
    PARASITIC_CURRENT,
    CELL_IMBALANCE,
    LOW_CURRENT_SHARE,
    HIGH_RESISTANCE,
    HIGH_TEMPERATURE,
    TEMPERATURE_OUTLIER,
    LOW_STATE_OF_HEALTH,
    CYCLE_LIFE,
    CAPACITY_MISMATCH,
    MIXED_MODELS,
    MIXED_FIRMWARE,
    MIXED_CELL_COUNT,
    TOO_MANY_PACKS,
    PACK_DROPOUTS,
    PACK_ERROR_RATE,
    *(task.rule for task in MaintenanceTask),
)

# Rules whose findings are about one pack (``address`` set); the others are
# about the bank (``address`` None).
PACK_RULES: frozenset[str] = frozenset(
    {
        VOLTAGE_SWING,
        CELL_IMBALANCE,
        LOW_CURRENT_SHARE,
        HIGH_RESISTANCE,
        HIGH_TEMPERATURE,
        TEMPERATURE_OUTLIER,
        LOW_STATE_OF_HEALTH,
        CYCLE_LIFE,
        CAPACITY_MISMATCH,
        PACK_DROPOUTS,
        PACK_ERROR_RATE,
    }
)
