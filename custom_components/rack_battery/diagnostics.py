"""Diagnostics: what a bug report needs to see of a bank."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_HOST
from homeassistant.core import HomeAssistant

from .coordinator import BankCoordinator, RackBatteryConfigEntry

# The gateway's address says where someone lives on their network; nothing
# in a bug report needs it.
TO_REDACT = {CONF_HOST}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: RackBatteryConfigEntry
) -> dict[str, Any]:
    """Return the entry, the packs it knows and the last poll's report."""
    coordinator = entry.runtime_data.coordinator
    snapshot = coordinator.data.snapshot
    return {
        "entry": async_redact_data(dict(entry.data), TO_REDACT),
        "last_update_success": coordinator.last_update_success,
        "snapshot": {
            "taken_at": snapshot.taken_at.isoformat(),
            "readings": {
                str(address): _plain(asdict(reading))
                for address, reading in snapshot.readings.items()
            },
            "failed": {str(address): reason for address, reason in snapshot.failed.items()},
        },
        "open_findings": [finding.as_dict() for finding in coordinator.data.analysis.open],
        "maintenance": coordinator.maintenance.to_dict(),
        "link": _link(coordinator),
    }


def _link(coordinator: BankCoordinator) -> dict[str, Any]:
    """Return what the bank's link has seen: its packs' counts, and the line's noise.

    A bus shared with other banks counts every address on it; only this
    bank's packs are shown.
    """
    stats = coordinator.driver.link_stats
    return {
        "noise_bytes": stats.noise_bytes,
        "stray_frames": stats.stray_frames,
        "packs": {
            str(address): counts.as_dict()
            for address, counts in sorted(stats.packs.items())
            if address in coordinator.packs
        },
    }


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Return a reading as JSON can carry it: sets of alarm names become sorted lists."""
    return {
        key: sorted(value) if isinstance(value, frozenset) else value
        for key, value in values.items()
    }
