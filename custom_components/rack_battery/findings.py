"""Tell the user about the bank's findings: repairs, bus events, notifications.

The rules live in ``bank/analysis``; this module only maps what they found.
After every poll the set of open findings is mirrored into the issue
registry (a repair for each one the user can act on), each finding raised,
changed or cleared fires a ``rack_battery_finding`` event on the bus (the
event entity, the logbook and automations take it from there), and a
critical finding also raises a persistent notification until it clears.

A BMS alarm is not a finding: it is the pack's own state, shown by its alarm
binary sensor, and the BMS clears it by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.components import persistent_notification
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr, issue_registry as ir
from homeassistant.helpers.translation import async_get_translations

from .bank.analysis import AnalysisResult, Finding, Severity
from .const import DOMAIN, EVENT_FINDING, RULES_URL
from .coordinator import RackBatteryConfigEntry
from .entity import pack_device_key

MAINTENANCE_PREFIX = "maintenance_"

# The keys of the bus event's data, as the README documents them.
ATTR_ACTION = "action"
ATTR_FINDING_ID = "finding_id"
ATTR_RULE = "rule"
ATTR_SEVERITY = "severity"
ATTR_ADDRESS = "address"
ATTR_VALUES = "values"
ATTR_SINCE = "since"
ATTR_CONFIG_ENTRY_ID = "config_entry_id"
ATTR_DEVICE_ID = "device_id"

ACTION_RAISED = "raised"
ACTION_CHANGED = "changed"
ACTION_CLEARED = "cleared"

_ISSUE_SEVERITY = {
    Severity.CRITICAL: ir.IssueSeverity.CRITICAL,
    Severity.WARNING: ir.IssueSeverity.WARNING,
    # Only maintenance is repaired at info: a task that fell due is work to do.
    Severity.INFO: ir.IssueSeverity.WARNING,
}


def is_maintenance(rule: str) -> bool:
    """Return whether a rule is a maintenance task (a repair with a fix flow)."""
    return rule.startswith(MAINTENANCE_PREFIX)


def wants_repair(finding: Finding) -> bool:
    """Return whether a finding is something the user can act on now.

    Warnings and worse are; so is a maintenance task as soon as it falls due.
    Info findings (a firmware mix, a pack nearing its rated cycles) go to the
    logbook and the event entity only: a repair that asks nothing of the
    user is nagging.
    """
    return finding.severity.rank >= Severity.WARNING.rank or is_maintenance(finding.rule)


def issue_id(entry_id: str, finding: Finding | str) -> str:
    """Return the repair's id: a finding's id is unique only within its bank."""
    key = finding if isinstance(finding, str) else finding.id
    return f"{entry_id}_{key}"


def notification_id(entry_id: str, finding: Finding) -> str:
    """Return the id of a critical finding's persistent notification."""
    return f"{DOMAIN}_{entry_id}_{finding.id}"


class _Placeholders(dict[str, str]):
    """Leave a placeholder a text names but a finding lacks as it is."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class FindingAnnouncer:
    """Mirrors one bank's findings into Home Assistant after every poll."""

    def __init__(self, hass: HomeAssistant, entry: RackBatteryConfigEntry) -> None:
        """Announce the findings of one bank."""
        self.hass = hass
        self.entry = entry
        self.coordinator = entry.runtime_data.coordinator
        self._texts: Mapping[str, str] = {}
        self._last: AnalysisResult | None = None

    async def async_start(self) -> None:
        """Catch up with what the first polls found, then follow every poll."""
        self._texts = await async_get_translations(
            self.hass, self.hass.config.language, "issues", [DOMAIN]
        )
        self.entry.async_on_unload(self.coordinator.async_add_listener(self.handle_update))
        self.entry.async_on_unload(self._dismiss_notifications)
        # Notifications do not survive a restart; a critical finding that
        # did (restored from the store) is told again.
        for finding in self.coordinator.data.analysis.open:
            if finding.severity is Severity.CRITICAL:
                self._notify(finding)
        self.handle_update()

    @callback
    def handle_update(self) -> None:
        """Mirror the latest analysis, once per poll.

        A failed poll calls the listeners again with the previous data; its
        findings were announced already.
        """
        analysis = self.coordinator.data.analysis
        if analysis is self._last:
            return
        self._last = analysis
        for finding in analysis.raised:
            self._fire(ACTION_RAISED, finding)
            if finding.severity is Severity.CRITICAL:
                self._notify(finding)
        for finding in analysis.changed:
            self._fire(ACTION_CHANGED, finding)
            if finding.severity is Severity.CRITICAL:
                self._notify(finding)
            else:
                persistent_notification.async_dismiss(
                    self.hass, notification_id(self.entry.entry_id, finding)
                )
        for finding in analysis.cleared:
            self._fire(ACTION_CLEARED, finding)
            persistent_notification.async_dismiss(
                self.hass, notification_id(self.entry.entry_id, finding)
            )
        self._mirror_repairs(analysis)

    @callback
    def _dismiss_notifications(self) -> None:
        """Take a bank's notifications with it when it unloads.

        They would not survive a restart anyway, and a reload raises those
        still critical again; a removed bank leaves none behind.
        """
        for finding in self.coordinator.data.analysis.open:
            persistent_notification.async_dismiss(
                self.hass, notification_id(self.entry.entry_id, finding)
            )

    def _mirror_repairs(self, analysis: AnalysisResult) -> None:
        """Make the repairs of this bank exactly its open, actionable findings.

        A repair whose severity changed is deleted and created anew, so a
        warning the user ignored comes back when it turns critical.
        """
        registry = ir.async_get(self.hass)
        prefix = issue_id(self.entry.entry_id, "")
        existing = {
            key: issue
            for (domain, key), issue in registry.issues.items()
            if domain == DOMAIN and key.startswith(prefix)
        }
        changed = {finding.id for finding in analysis.changed}
        wanted = {
            issue_id(self.entry.entry_id, finding): finding
            for finding in analysis.open
            if wants_repair(finding)
        }
        for key in existing.keys() - wanted.keys():
            ir.async_delete_issue(self.hass, DOMAIN, key)
        for key, finding in wanted.items():
            severity = _ISSUE_SEVERITY[finding.severity]
            issue = existing.get(key)
            if issue is not None and issue.severity == severity and finding.id not in changed:
                continue
            if issue is not None:
                ir.async_delete_issue(self.hass, DOMAIN, key)
            self._create_issue(key, finding, severity)

    def _create_issue(self, key: str, finding: Finding, severity: ir.IssueSeverity) -> None:
        maintenance = is_maintenance(finding.rule)
        data: dict[str, str | int | float | None] = {
            "entry_id": self.entry.entry_id,
            "finding_id": finding.id,
        }
        if maintenance:
            data["task"] = str(finding.values.get("task", ""))
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            key,
            data=data,
            is_fixable=maintenance,
            is_persistent=False,
            learn_more_url=f"{RULES_URL}#{finding.rule}",
            severity=severity,
            translation_key=finding.rule,
            translation_placeholders=self.placeholders(finding),
        )

    def placeholders(self, finding: Finding) -> dict[str, str]:
        """Return a finding's numbers for its texts, and the bank's name.

        An empty value (a task never done before) shows as a dash.
        """
        values = {key: value or "—" for key, value in finding.placeholders().items()}
        return {"bank": self.entry.title, **values}

    def _fire(self, action: str, finding: Finding) -> None:
        self.hass.bus.async_fire(EVENT_FINDING, self.event_data(action, finding))

    def event_data(self, action: str, finding: Finding) -> dict[str, Any]:
        """Return the data of a finding's bus event (documented in the README)."""
        return {
            ATTR_ACTION: action,
            ATTR_FINDING_ID: finding.id,
            ATTR_RULE: finding.rule,
            ATTR_SEVERITY: finding.severity.value,
            ATTR_ADDRESS: finding.address,
            ATTR_VALUES: dict(finding.values),
            ATTR_SINCE: finding.since.isoformat(),
            ATTR_CONFIG_ENTRY_ID: self.entry.entry_id,
            ATTR_DEVICE_ID: self._device_id(finding.address),
        }

    def _device_id(self, address: int | None) -> str | None:
        """Return the device a finding is about: its pack's, or the bank's.

        Looked up among the entry's own devices: a lookup by identifier
        alone is either missing (2025.4) or deprecated (later releases) in
        one of the Home Assistant versions this integration supports.
        """
        key = self.entry.entry_id
        if address is not None and (identity := self.coordinator.packs.get(address)):
            key = pack_device_key(self.entry, identity)
        registry = dr.async_get(self.hass)
        for device in dr.async_entries_for_config_entry(registry, self.entry.entry_id):
            if (DOMAIN, key) in device.identifiers:
                return device.id
        return None

    def _notify(self, finding: Finding) -> None:
        """Raise a persistent notification in the words of the finding's repair."""
        values = _Placeholders(self.placeholders(finding))
        base = f"component.{DOMAIN}.issues.{finding.rule}"
        title = self._texts.get(f"{base}.title", finding.rule).format_map(values)
        message = self._texts.get(f"{base}.description", "").format_map(values)
        persistent_notification.async_create(
            self.hass,
            f"{message}\n\n[{finding.rule}]({RULES_URL}#{finding.rule})",
            title=title,
            notification_id=notification_id(self.entry.entry_id, finding),
        )


async def async_start_announcing(hass: HomeAssistant, entry: RackBatteryConfigEntry) -> None:
    """Start mirroring a bank's findings; it stops when the entry unloads."""
    await FindingAnnouncer(hass, entry).async_start()


def async_forget_bank(hass: HomeAssistant, entry_id: str) -> None:
    """Remove the repairs of a bank that was removed.

    Its notifications went when it was unloaded, just before.
    """
    prefix = issue_id(entry_id, "")
    registry = ir.async_get(hass)
    for domain, key in list(registry.issues):
        if domain == DOMAIN and key.startswith(prefix):
            ir.async_delete_issue(hass, DOMAIN, key)
