"""What a rule says about a bank: findings, their severity, and how to grade them.

A rule never talks to Home Assistant. It turns numbers into an
:class:`Observation` ("this condition is there now, at this severity, because
of these numbers", or "it is gone"), and the analyzer turns a run of
observations into a :class:`Finding` once the condition has held long enough.
The Home Assistant layer maps the open findings to repairs, events, binary
sensors and notifications and deletes what is no longer open, so a finding's
``id`` must name the same condition on the same pack from one poll to the
next, and across restarts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any

type Value = int | float | str
"""What a finding may carry in ``values``: a number that raised it, or a name."""


class Severity(StrEnum):
    """How much a finding matters, by its impact on the bank.

    ``info``: worth knowing, nothing breaks (firmware differs, a pack nears
    its rated cycles). ``warning``: the bank loses capacity or life if it is
    left alone (an imbalance, a pack to replace). ``critical``: damage or a
    safety risk is close (a failing connection that can arc, a hot pack,
    packs of different cell counts on one bus).
    """

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Return 0, 1 or 2, so severities can be compared."""
        return _RANK[self]


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


def finding_id(rule: str, address: int | None) -> str:
    """Return the stable id of a rule's finding on a pack, or on the bank.

    ``voltage_spread`` for the bank, ``high_resistance_pack_3`` for pack 3:
    readable in a repair's id and in an automation's trigger.
    """
    return rule if address is None else f"{rule}_pack_{address}"


def _frozen(values: Mapping[str, Value]) -> Mapping[str, Value]:
    return MappingProxyType(dict(values))


@dataclass(frozen=True, kw_only=True)
class Finding:
    """An open condition of the bank or of one pack, with the numbers behind it.

    ``since`` is when the condition began (the first observation of it, or
    the date a maintenance task fell due), not when the debounce let it
    through: a repair that says "since 10:02" should mean the bank has been
    like this since 10:02.
    """

    id: str
    rule: str
    severity: Severity
    address: int | None
    values: Mapping[str, Value] = field(default_factory=dict)
    since: datetime

    def __post_init__(self) -> None:
        """Keep a finding immutable all the way down."""
        object.__setattr__(self, "values", _frozen(self.values))

    def __hash__(self) -> int:
        """Hash by identity of the condition and its state, not its numbers."""
        return hash((self.id, self.severity, self.since))

    def placeholders(self) -> dict[str, str]:
        """Return the values as strings, for a translated repair text.

        ``address`` is added for findings on a pack, so every pack's text can
        say "pack {address}".
        """
        out = {key: _text(value) for key, value in self.values.items()}
        if self.address is not None:
            out.setdefault("address", str(self.address))
        return out

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready form, for an event's data or diagnostics."""
        return {
            "id": self.id,
            "rule": self.rule,
            "severity": self.severity.value,
            "address": self.address,
            "values": dict(self.values),
            "since": self.since.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: object) -> Finding | None:
        """Read a finding back from :meth:`as_dict`; None if it cannot be read."""
        if not isinstance(data, Mapping):
            return None
        try:
            since = datetime.fromisoformat(data["since"])
            severity = Severity(data["severity"])
            rule = data["rule"]
            address = data.get("address")
            raw_values = data.get("values", {})
        except (KeyError, TypeError, ValueError):
            return None
        if since.tzinfo is None or not isinstance(rule, str) or not rule:
            return None
        if address is not None and (isinstance(address, bool) or not isinstance(address, int)):
            return None
        if not isinstance(raw_values, Mapping):
            return None
        values = {
            key: value
            for key, value in raw_values.items()
            if isinstance(key, str)
            and isinstance(value, int | float | str)
            and not isinstance(value, bool)
        }
        return cls(
            id=finding_id(rule, address),
            rule=rule,
            severity=severity,
            address=address,
            values=values,
            since=since,
        )


def _text(value: Value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True, kw_only=True)
class Observation:
    """What one rule saw in one snapshot about one condition.

    ``severity`` is ``None`` when the condition is gone. A rule that cannot
    tell (the pack did not answer, the bank is not at rest for a rule that
    needs rest) says nothing at all, and the analyzer keeps its state: an
    unknown neither raises nor clears a finding.

    ``instant`` findings skip the debounce: facts that do not flicker, such
    as a bank's composition or a maintenance date. ``raise_after`` overrides
    the default debounce for a rule that must see a condition persist
    longer. ``since`` overrides when the condition began.
    """

    rule: str
    address: int | None
    severity: Severity | None
    values: Mapping[str, Value] = field(default_factory=dict)
    instant: bool = False
    raise_after: timedelta | None = None
    since: datetime | None = None

    @property
    def id(self) -> str:
        """Return the id of the finding this observation is about."""
        return finding_id(self.rule, self.address)


# Levels are decimal settings (0.2 V, 0.05 V); their float arithmetic must not
# move a value that sits exactly on a level to the wrong side of it.
_EPSILON = 1e-9


def grade(
    value: float,
    levels: Sequence[tuple[Severity, float]],
    *,
    hysteresis: float,
    current: Severity | None,
    below: bool = False,
) -> Severity | None:
    """Return the severity a value earns, with hysteresis around each level.

    ``levels`` lists (severity, raise level) from the mildest up. A value at
    or past a level's raise level earns it. A finding that is already open
    at some severity keeps each level up to that one until the value falls
    back by ``hysteresis`` past the level, so a spread that hovers at
    0.2 V neither flaps nor nags. ``below`` is for values where lower is
    worse (state of health, a pack's share of the current).
    """
    sign = -1.0 if below else 1.0
    signed = sign * value
    result: Severity | None = None
    for severity, level in levels:
        raise_at = sign * level
        held = current is not None and severity.rank <= current.rank
        if signed >= raise_at - _EPSILON or (held and signed >= raise_at - hysteresis - _EPSILON):
            result = severity
    return result


def median(values: Sequence[float]) -> float:
    """Return the median; the mean of the middle two for an even count."""
    ordered = sorted(values)
    count = len(ordered)
    if count == 0:
        raise ValueError("median of nothing")
    middle = count // 2
    if count % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2.0
