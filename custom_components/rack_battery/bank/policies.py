"""Automatic protection: which packs a policy takes out of the bank, and when back.

Three policies, each off until the user turns it on:

- ``bms_protection``: a pack whose BMS reports a protection (it has acted on
  an over-current, an over-temperature, a cell out of range ...).
- ``hot_pack``: a pack with an open critical ``high_temperature`` finding
  (the rules' critical temperature, with their hysteresis and debounce).
- ``loose_connection``: a pack with an open ``voltage_swing`` finding, the
  sign of a connection that makes and breaks.

A policy *proposes*; the guard (``control.py``) still judges every proposal,
and the caller writes only what the guard allows. A pack is taken out by
opening every path the family can switch back (both paths; only the charge
path where the BMS offers no other; on a Pylontech pack a 0 A limit held
every poll). It is proposed back once its condition (and that of any other
policy that is on) has been gone for ``settle`` (default 10 minutes), so a
condition that comes and goes does not make the pack flap; the guard then
refuses a join far from the bus voltage, and the proposal is made again
next poll.

A policy reconnects only a pack it took out itself (a ``PolicyHold``), never
one the user isolated, and never touches a pack the user isolated. Turning a
policy off stops it taking packs out; a pack it already took out still comes
back once clear.

Pure: no Home Assistant, no clock of its own; ``now`` comes from the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
import math
from types import MappingProxyType

from .analysis.findings import Finding, Severity
from .analysis.temperature import HIGH_TEMPERATURE
from .analysis.voltage import VOLTAGE_SWING
from .control import Change
from .model import BankSnapshot

type Value = int | float | str

# How long a condition must have been gone before its pack is proposed back.
DEFAULT_SETTLE = timedelta(minutes=10)
SETTLE_RANGE = (timedelta(minutes=1), timedelta(days=1))


class Policy(StrEnum):
    """An automatic protection; the value is the "who" of its changes."""

    BMS_PROTECTION = "bms_protection"
    HOT_PACK = "hot_pack"
    LOOSE_CONNECTION = "loose_connection"


# The order in which a pack's conditions are named: the BMS's own word first.
POLICIES: tuple[Policy, ...] = tuple(Policy)

# Words for the logbook ("isolated by the hot pack policy").
POLICY_WORDS: Mapping[str, str] = MappingProxyType(
    {
        Policy.BMS_PROTECTION: "BMS protection",
        Policy.HOT_PACK: "hot pack",
        Policy.LOOSE_CONNECTION: "loose connection",
    }
)


class Why(StrEnum):
    """Why a policy proposed a change."""

    PROTECTION = "protection"
    CRITICALLY_HOT = "critically_hot"
    VOLTAGE_SWING = "voltage_swing"
    CLEARED = "cleared"


@dataclass(frozen=True, kw_only=True)
class Means:
    """The paths a policy opens to take a pack out: those the family can switch back."""

    charge: bool
    discharge: bool

    @property
    def any(self) -> bool:
        """Return whether the family lets a policy open anything at all."""
        return self.charge or self.discharge

    def take_out(self, address: int) -> Change:
        """Return the change that opens these paths."""
        return Change(
            address=address,
            charge=False if self.charge else None,
            discharge=False if self.discharge else None,
        )

    def put_back(self, address: int) -> Change:
        """Return the change that closes these paths again."""
        return Change(
            address=address,
            charge=True if self.charge else None,
            discharge=True if self.discharge else None,
        )


@dataclass(frozen=True, kw_only=True)
class PolicySettings:
    """Which policies are on, and how long a condition must be gone."""

    enabled: frozenset[Policy] = frozenset()
    settle: timedelta = DEFAULT_SETTLE

    def __post_init__(self) -> None:
        """Clamp the settle time into its limits."""
        low, high = SETTLE_RANGE
        object.__setattr__(self, "settle", min(max(self.settle, low), high))


@dataclass(frozen=True, kw_only=True)
class PolicyHold:
    """A pack a policy took out: which, when, which paths, and since when it is clear."""

    address: int
    policy: Policy
    since: datetime
    means: Means
    clear_since: datetime | None = None

    def as_dict(self) -> dict[str, object]:
        """Return a JSON-ready form, for the bank's store."""
        return {
            "address": self.address,
            "policy": self.policy.value,
            "since": self.since.isoformat(),
            "charge": self.means.charge,
            "discharge": self.means.discharge,
        }

    @classmethod
    def from_dict(cls, data: object) -> PolicyHold | None:
        """Read a hold back from :meth:`as_dict`; None if it cannot be read.

        The time since the condition cleared is not kept: after a restart a
        pack settles again in full before it is proposed back.
        """
        if not isinstance(data, Mapping):
            return None
        try:
            address = data["address"]
            policy = Policy(data["policy"])
            since = datetime.fromisoformat(data["since"])
            charge = data["charge"]
            discharge = data["discharge"]
        except (KeyError, TypeError, ValueError):
            return None
        if (
            isinstance(address, bool)
            or not isinstance(address, int)
            or since.tzinfo is None
            or not isinstance(charge, bool)
            or not isinstance(discharge, bool)
            or not (charge or discharge)
        ):
            return None
        return cls(
            address=address,
            policy=policy,
            since=since,
            means=Means(charge=charge, discharge=discharge),
        )


@dataclass(frozen=True, kw_only=True)
class Condition:
    """A policy's condition found on a pack, with the numbers behind it."""

    policy: Policy
    address: int
    why: Why
    values: Mapping[str, Value] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Proposal:
    """A change a policy asks for; the guard judges it before anything is written."""

    policy: Policy
    change: Change
    reconnect: bool
    why: Why
    values: Mapping[str, Value] = field(default_factory=dict)

    @property
    def address(self) -> int:
        """Return the pack the proposal is about."""
        return self.change.address


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What one look at the bank gives: proposals, and the holds' new clear times."""

    proposals: tuple[Proposal, ...]
    holds: Mapping[int, PolicyHold]


def conditions(snapshot: BankSnapshot, findings: Iterable[Finding]) -> dict[int, list[Condition]]:
    """Return every policy's condition on each pack, in the order of ``POLICIES``.

    Found whether a policy is on or not: a pack a policy took out waits
    for every condition to be gone, its own included.
    """
    found: dict[int, list[Condition]] = {}
    for address, reading in sorted(snapshot.readings.items()):
        if reading.protections:
            found.setdefault(address, []).append(
                Condition(
                    policy=Policy.BMS_PROTECTION,
                    address=address,
                    why=Why.PROTECTION,
                    values={"protections": ", ".join(sorted(reading.protections))},
                )
            )
    by_rule = (
        (HIGH_TEMPERATURE, Policy.HOT_PACK, Why.CRITICALLY_HOT),
        (VOLTAGE_SWING, Policy.LOOSE_CONNECTION, Why.VOLTAGE_SWING),
    )
    for finding in sorted(
        (f for f in findings if f.address is not None), key=lambda f: (f.address or 0, f.rule)
    ):
        for rule, policy, why in by_rule:
            if finding.rule != rule or finding.address is None:
                continue
            if policy is Policy.HOT_PACK and finding.severity is not Severity.CRITICAL:
                continue
            found.setdefault(finding.address, []).append(
                Condition(
                    policy=policy, address=finding.address, why=why, values=dict(finding.values)
                )
            )
    for listed in found.values():
        listed.sort(key=lambda c: POLICIES.index(c.policy))
    return found


def _bus_voltage(snapshot: BankSnapshot, address: int) -> float | None:
    others = [
        r.voltage
        for a, r in snapshot.readings.items()
        if a != address
        and r.voltage is not None
        and math.isfinite(r.voltage)
        and r.charge_enabled is not False
        and r.discharge_enabled is not False
    ]
    return sum(others) / len(others) if others else None


def _holds_back(condition: Condition, hold: PolicyHold, settings: PolicySettings) -> bool:
    """Return whether a condition keeps a held pack out of the bank.

    Its own policy's condition, and that of every policy that is on (which
    would take it out again at once). A voltage swing counts only for the
    policy that took the pack out for it: an isolated pack's voltage moves
    against the bus's by design.
    """
    if condition.policy is hold.policy:
        return True
    return condition.policy in settings.enabled and condition.policy is not Policy.LOOSE_CONNECTION


def plan(
    now: datetime,
    snapshot: BankSnapshot,
    *,
    findings: Iterable[Finding],
    holds: Mapping[int, PolicyHold],
    user_isolated: AbstractSet[int],
    settings: PolicySettings,
    means: Means,
) -> Plan:
    """Return what the policies propose after a poll, and the holds as they now stand.

    ``holds``: the packs the policies took out, by address. ``user_isolated``:
    the packs the user took out, which no policy touches. ``means``: the
    paths the family can switch back (from the catalog).

    A pack is proposed out when an enabled policy's condition is on it, it
    answered this poll, no policy holds it and the user did not isolate it.
    A held pack is proposed back (by the policy that holds it) once it has
    answered every poll for ``settle`` with neither its own policy's
    condition on it nor that of another policy that is on.
    """
    found = conditions(snapshot, findings)
    proposals: list[Proposal] = []
    new_holds: dict[int, PolicyHold] = {}
    for address, hold in sorted(holds.items()):
        if address in user_isolated:
            # The user's word now; the policy lets go of it.
            continue
        on_it = [c for c in found.get(address, []) if _holds_back(c, hold, settings)]
        if address not in snapshot.readings or on_it:
            # Unknown or still there: the settle time starts again.
            new_holds[address] = replace(hold, clear_since=None)
            continue
        clear_since = hold.clear_since or now
        new_holds[address] = replace(hold, clear_since=clear_since)
        if now - clear_since < settings.settle:
            continue
        values: dict[str, Value] = {
            "cleared_minutes": round((now - clear_since).total_seconds() / 60, 1)
        }
        voltage = snapshot.readings[address].voltage
        bus = _bus_voltage(snapshot, address)
        if voltage is not None and bus is not None:
            values.update(
                pack_voltage=round(voltage, 2),
                bus_voltage=round(bus, 2),
                delta=round(abs(voltage - bus), 2),
            )
        proposals.append(
            Proposal(
                policy=hold.policy,
                change=hold.means.put_back(address),
                reconnect=True,
                why=Why.CLEARED,
                values=values,
            )
        )
    if means.any:
        for address, listed in sorted(found.items()):
            if address in new_holds or address in holds or address in user_isolated:
                continue
            if address not in snapshot.readings:
                continue
            enabled = [c for c in listed if c.policy in settings.enabled]
            if not enabled:
                continue
            first = enabled[0]
            proposals.append(
                Proposal(
                    policy=first.policy,
                    change=means.take_out(address),
                    reconnect=False,
                    why=first.why,
                    values=first.values,
                )
            )
    return Plan(proposals=tuple(proposals), holds=MappingProxyType(new_holds))


def taken(
    holds: Mapping[int, PolicyHold], proposal: Proposal, now: datetime, means: Means
) -> dict[int, PolicyHold]:
    """Return the holds once a proposal to take a pack out has been carried out."""
    out = dict(holds)
    out[proposal.address] = PolicyHold(
        address=proposal.address, policy=proposal.policy, since=now, means=means
    )
    return out


def returned(holds: Mapping[int, PolicyHold], address: int) -> dict[int, PolicyHold]:
    """Return the holds once a pack is back in the bank (by the policy or the user)."""
    return {a: h for a, h in holds.items() if a != address}


def describe(why: str, values: Mapping[str, object]) -> str:
    """Return a short English account of why, for the logbook."""

    def num(key: str, unit: str, digits: int = 1) -> str | None:
        value = values.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return f"{value:.{digits}f} {unit}".rstrip()

    match why:
        case Why.PROTECTION:
            return f"the BMS reports {values.get('protections', 'a protection')}"
        case Why.CRITICALLY_HOT:
            text = "critically hot"
            if (temperature := num("temperature", "°C")) is not None:
                text += f": {temperature}"
                if (limit := num("limit", "°C")) is not None:
                    text += f", limit {limit}"
            return text
        case Why.VOLTAGE_SWING:
            text = "a connection that makes and breaks"
            if (swing := num("swing", "V", 2)) is not None:
                text += f": its voltage swings {swing}"
            return text
        case Why.CLEARED:
            text = "clear"
            if (minutes := num("cleared_minutes", "min", 0)) is not None:
                text += f" for {minutes}"
            if (delta := num("delta", "V", 2)) is not None:
                text += f", {delta} from the bus"
            return text
    return str(why)
