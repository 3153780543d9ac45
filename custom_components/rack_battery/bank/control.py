"""The guard of control: whether a pack may leave the bank, or join it again.

Taking a pack out of a parallel bank moves its share of the load onto the
others; putting one back joins two voltages, and the difference drives an
inrush through the pack's and the rest's resistance. Both are judged here,
as pure functions of the latest snapshot and ``now``, before anything is
written to a BMS. The answer is a ``Decision``: allowed or refused, a reason
code, and the numbers behind it, so the refusal a user reads can name them
("pack 3 stays connected: the other two packs may discharge 100 A together
and the bank draws 140 A").

The model:

- A pack has a charge path and a discharge path, each open or closed on its
  own (a BMS's charge FET and discharge FET). A pack whose charge path is
  open can still discharge, and the other way round. *Isolate* opens both,
  *reconnect* closes both. A throttle lowers the current a path may carry;
  a limit of 0 A is an open path.
- A pack's limits are what its BMS reports (``charge_current_limit``,
  ``discharge_current_limit``), else from its capacity: 1 C discharging,
  0.5 C charging. A pack with neither carries nothing, as far as the guard
  is concerned.
- Packs in parallel share a current in inverse proportion to their
  resistance (share_i = (1/R_i) / sum of 1/R_j). The resistance comes from
  the bank's estimate (``bank/analysis/resistance.py``), else a low default,
  which overstates an inrush rather than understating it. For the shares, a
  pack not estimated yet is taken as the bank's typical pack (the median of
  the estimates), so a bank with no estimate at all shares equally.
- A throttle may be raised again up to the pack's own limit (what its BMS
  allows itself, where a hold keeps the reported one lower), and a path
  closed again returns to that own limit.
- A pack that was not read in the last two polls, or a bus not read in the
  last two polls, is stale: no change is judged from it, and a stale pack
  is counted out of what the rest can carry.

The settings have hard limits that no value gets past: they are clamped
when the settings are made, so no option or caller can ask for a looser
guard than the limits allow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
import math

from .model import BankSnapshot, PackReading

# The hard limits of the settings.
MIN_CONNECTED_RANGE = (1, 64)
MARGIN_RANGE = (0.05, 1.0)  # a fraction of the present current
JOIN_VOLTAGE_RANGE = (0.05, 1.5)  # V; the safest peers refuse to join above 1.5 V
MIN_INTERVAL_RANGE = (timedelta(minutes=1), timedelta(days=1))
POLL_INTERVAL_RANGE = (timedelta(seconds=1), timedelta(minutes=30))
RESISTANCE_RANGE = (0.001, 0.5)  # ohm
REJOIN_TIMEOUT_RANGE = (timedelta(minutes=1), timedelta(days=1))

# The C-rates a pack is taken to bear when its BMS reports no limits.
DISCHARGE_C_RATE = 1.0
CHARGE_C_RATE = 0.5
# Polls a reading may be old before the guard calls it stale.
STALE_POLLS = 2


def _clamp[T: (int, float, timedelta)](value: T, bounds: tuple[T, T]) -> T:
    low, high = bounds
    return min(max(value, low), high)


@dataclass(frozen=True, kw_only=True)
class ControlSettings:
    """What the user may set of the guard, clamped to its hard limits on construction."""

    # Packs that must stay connected in each direction; never below 1.
    min_connected: int = 1
    # The rest must carry the present current times (1 + margin).
    current_margin: float = 0.10
    # A pack joins only within this many volts of the bus; never above 1.5 V.
    max_join_voltage: float = 0.5
    # The least time between two changes of one pack, so nothing flaps.
    min_interval: timedelta = timedelta(minutes=5)
    # How often the bank is read; a reading older than two of these is stale.
    poll_interval: timedelta = timedelta(seconds=30)
    # The resistance of a pack whose own is not estimated yet (ohm): low,
    # so an inrush is overstated rather than understated.
    default_resistance: float = 0.010
    # How long a reconnect asked "when matched" waits for the voltages to
    # meet before it gives up.
    rejoin_timeout: timedelta = timedelta(minutes=60)

    def __post_init__(self) -> None:
        """Clamp every value into its hard limits."""
        values: dict[str, object] = {
            "min_connected": _clamp(int(self.min_connected), MIN_CONNECTED_RANGE),
            "current_margin": _clamp(_finite(self.current_margin, 0.10), MARGIN_RANGE),
            "max_join_voltage": _clamp(_finite(self.max_join_voltage, 0.5), JOIN_VOLTAGE_RANGE),
            "min_interval": _clamp(self.min_interval, MIN_INTERVAL_RANGE),
            "poll_interval": _clamp(self.poll_interval, POLL_INTERVAL_RANGE),
            "default_resistance": _clamp(_finite(self.default_resistance, 0.010), RESISTANCE_RANGE),
            "rejoin_timeout": _clamp(self.rejoin_timeout, REJOIN_TIMEOUT_RANGE),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)


def _finite(value: float, default: float) -> float:
    value = float(value)
    return value if math.isfinite(value) else default


class Direction(StrEnum):
    """Which way current flows through a pack's path."""

    CHARGE = "charge"
    DISCHARGE = "discharge"


class Reason(StrEnum):
    """Why a change was allowed or refused; a translation key of the message."""

    ALLOWED = "allowed"
    NO_CHANGE = "no_change"
    UNKNOWN_PACK = "unknown_pack"
    STALE = "stale"
    TOO_SOON = "too_soon"
    LAST_PACK = "last_pack"
    BELOW_MINIMUM = "below_minimum"
    CURRENT_UNKNOWN = "current_unknown"
    OVERLOAD = "overload"
    # The paths that would carry the current report no limit and no capacity.
    LIMITS_UNKNOWN = "limits_unknown"
    VOLTAGE_UNKNOWN = "voltage_unknown"
    VOLTAGE_APART = "voltage_apart"
    INRUSH = "inrush"


@dataclass(frozen=True, kw_only=True)
class Change:
    """What is asked of one pack's paths.

    ``charge``/``discharge``: True closes the path, False opens it, None
    leaves it. ``charge_limit``/``discharge_limit`` (A) throttle a path; a
    limit of 0 A opens it.
    """

    address: int
    charge: bool | None = None
    discharge: bool | None = None
    charge_limit: float | None = None
    discharge_limit: float | None = None

    @classmethod
    def isolate(cls, address: int) -> Change:
        """Open both paths."""
        return cls(address=address, charge=False, discharge=False)

    @classmethod
    def reconnect(cls, address: int) -> Change:
        """Close both paths."""
        return cls(address=address, charge=True, discharge=True)


@dataclass(frozen=True, kw_only=True)
class Decision:
    """The guard's answer: allowed or not, why, and the numbers behind it."""

    allowed: bool
    reason: Reason
    address: int
    values: Mapping[str, float | int | str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class PackState:
    """One pack as the guard sees it: paths, limits, resistance, freshness."""

    address: int
    voltage: float | None
    current: float | None
    charge_closed: bool
    discharge_closed: bool
    charge_limit: float | None  # A, None where unknown
    discharge_limit: float | None  # A, None where unknown
    resistance: float  # ohm
    fresh: bool
    # Whether ``resistance`` is the bank's estimate rather than the default.
    estimated: bool = True
    # The pack's own limits (A) where a throttle holds the reported ones
    # lower: how far a throttle may be raised again. None: the reported.
    charge_ceiling: float | None = None
    discharge_ceiling: float | None = None

    def closed(self, direction: Direction) -> bool:
        """Return whether the path is closed and may carry current."""
        if direction is Direction.CHARGE:
            return self.charge_closed and (self.charge_limit or 0.0) > 0
        return self.discharge_closed and (self.discharge_limit or 0.0) > 0

    def switched_on(self, direction: Direction) -> bool:
        """Return whether the path's switch (the FET) is closed, whatever its limit."""
        return self.charge_closed if direction is Direction.CHARGE else self.discharge_closed

    def path(self, direction: Direction) -> bool:
        """Return whether the path is closed: not open, not throttled to 0 A.

        A closed path whose limit is unknown is still closed; it only
        carries nothing in the guard's sums.
        """
        if direction is Direction.CHARGE:
            return self.charge_closed and self.charge_limit != 0
        return self.discharge_closed and self.discharge_limit != 0

    def limit(self, direction: Direction) -> float:
        """Return the current the path may carry, A; 0 where unknown."""
        limit = self.charge_limit if direction is Direction.CHARGE else self.discharge_limit
        return limit or 0.0

    def ceiling(self, direction: Direction) -> float | None:
        """Return the most a throttle may set the path to: the pack's own limit, A."""
        if direction is Direction.CHARGE:
            return self.charge_limit if self.charge_ceiling is None else self.charge_ceiling
        return self.discharge_limit if self.discharge_ceiling is None else self.discharge_ceiling


@dataclass(frozen=True, kw_only=True)
class SafeLimits:
    """The largest current the bank can take each way, and the pack that binds it.

    A bank that cannot take current a way (every path open) has 0 A there and
    no binding pack; one whose closed paths report no limit and no capacity
    (a SunSpec string) has None: nothing says what it can take.
    """

    charge: float | None
    discharge: float | None
    charge_pack: int | None
    discharge_pack: int | None


@dataclass(frozen=True, kw_only=True)
class BankView:
    """The bank as the guard judges it: every pack's state, the bank current, when."""

    packs: Mapping[int, PackState]
    current: float | None  # A, positive while charging; None when a pack's is unknown
    taken_at: datetime


def pack_limits(
    reading: PackReading, capacity: float | None = None
) -> tuple[float | None, float | None]:
    """Return a pack's (charge, discharge) limits in A: the BMS's, else from capacity.

    The capacity is the design capacity where known (the caller may pass the
    identity's), else the full capacity the BMS reports.
    """
    capacity = capacity or reading.design_capacity or reading.full_capacity
    charge = reading.charge_current_limit
    discharge = reading.discharge_current_limit
    if charge is None and capacity:
        charge = CHARGE_C_RATE * capacity
    if discharge is None and capacity:
        discharge = DISCHARGE_C_RATE * capacity
    return charge, discharge


def bank_view(
    snapshot: BankSnapshot,
    now: datetime,
    settings: ControlSettings,
    *,
    resistances: Mapping[int, float] | None = None,
    capacities: Mapping[int, float | None] | None = None,
    paths: Mapping[int, tuple[bool, bool]] | None = None,
    read_at: Mapping[int, datetime] | None = None,
    held_open: Mapping[int, tuple[bool, bool]] | None = None,
    own_limits: Mapping[int, tuple[float | None, float | None]] | None = None,
) -> BankView:
    """Return what the guard needs from a snapshot.

    ``resistances``: each pack's estimated resistance (ohm). ``capacities``:
    design capacities from the packs' identities (Ah). ``paths``: the
    (charge, discharge) state a caller knows it set, where the BMS does not
    report it; otherwise the BMS's FET state, and a BMS that reports none is
    taken at its default, closed. ``read_at``: when each pack was last read,
    where a caller keeps that; by default the snapshot's time for the packs
    it holds. ``held_open``: the (charge, discharge) paths a caller holds
    open with a 0 A limit (a BMS that lets such a hold lapse): the limit the
    pack reports there is the caller's, not its own, so the guard takes the
    pack's own from its capacity, as it would carry once the hold is let go.
    ``own_limits``: each pack's own (charge, discharge) limits where a
    throttle may hold the reported ones lower (the driver keeps them).
    """
    resistances = resistances or {}
    own_limits = own_limits or {}
    capacities = capacities or {}
    paths = paths or {}
    stale_after = settings.poll_interval * STALE_POLLS
    bus_fresh = now - snapshot.taken_at <= stale_after
    packs: dict[int, PackState] = {}
    for address, reading in snapshot.readings.items():
        charge, discharge = pack_limits(reading, capacities.get(address))
        held_charge, held_discharge = (held_open or {}).get(address, (False, False))
        if held_charge or held_discharge:
            capacity = capacities.get(address) or reading.design_capacity or reading.full_capacity
            if held_charge:
                charge = CHARGE_C_RATE * capacity if capacity else None
            if held_discharge:
                discharge = DISCHARGE_C_RATE * capacity if capacity else None
        known = paths.get(address)
        charge_closed = (
            known[0]
            if known is not None
            else (reading.charge_enabled if reading.charge_enabled is not None else True)
        )
        discharge_closed = (
            known[1]
            if known is not None
            else (reading.discharge_enabled if reading.discharge_enabled is not None else True)
        )
        ohms = resistances.get(address)
        estimated = ohms is not None and math.isfinite(ohms) and ohms > 0
        if ohms is None or not estimated:
            ohms = settings.default_resistance
        when = (read_at or {}).get(address, snapshot.taken_at)
        own_charge, own_discharge = own_limits.get(address, (None, None))
        packs[address] = PackState(
            address=address,
            voltage=reading.voltage,
            current=reading.current,
            charge_closed=charge_closed,
            discharge_closed=discharge_closed,
            charge_limit=None if charge is None else max(charge, 0.0),
            discharge_limit=None if discharge is None else max(discharge, 0.0),
            resistance=ohms,
            fresh=bus_fresh and now - when <= stale_after,
            estimated=estimated,
            charge_ceiling=_ceiling(own_charge, charge),
            discharge_ceiling=_ceiling(own_discharge, discharge),
        )
    currents = [reading.current for reading in snapshot.readings.values()]
    current = (
        None if not currents or None in currents else sum(c for c in currents if c is not None)
    )
    return BankView(packs=packs, current=current, taken_at=snapshot.taken_at)


def _ceiling(own: float | None, reported: float | None) -> float | None:
    """Return a pack's own limit where it lies above the reported one, else None."""
    if own is None or not math.isfinite(own) or own < 0:
        return None
    return own if reported is None or own > reported else None


def current_shares(packs: Iterable[PackState], direction: Direction) -> dict[int, float]:
    """Return each carrying pack's fraction of a bank current one way, by address.

    Packs share by conductance (1/R). A pack whose resistance is not
    estimated is taken at the median of the estimates among ``packs``; with
    no estimate at all, every pack is alike and the shares equal.
    """
    packs = list(packs)
    carrying = [pack for pack in packs if pack.closed(direction)]
    if not carrying:
        return {}
    estimates = sorted(pack.resistance for pack in packs if pack.estimated)
    typical = _median(estimates) if estimates else 1.0
    conductances = {
        pack.address: 1.0 / (pack.resistance if pack.estimated else typical) for pack in carrying
    }
    total = sum(conductances.values())
    return {address: conductance / total for address, conductance in conductances.items()}


def _median(values: list[float]) -> float:
    middle = len(values) // 2
    if len(values) % 2:
        return values[middle]
    return (values[middle - 1] + values[middle]) / 2


def _direction_limit(packs: Iterable[PackState], direction: Direction) -> tuple[float, int | None]:
    """Return the most the packs can take one way before one reaches its limit."""
    packs = list(packs)
    shares = current_shares(packs, direction)
    if not shares:
        return 0.0, None
    best = math.inf
    binding: int | None = None
    for pack in packs:
        if pack.address not in shares:
            continue
        bank = pack.limit(direction) / shares[pack.address]
        if bank < best:
            best, binding = bank, pack.address
    return best, binding


def safe_limits(packs: Iterable[PackState]) -> SafeLimits:
    """Return the largest charge and discharge current the bank can take.

    Each closed path takes a share of the bank current in inverse proportion
    to its pack's resistance (``current_shares``: the bank's estimates where
    it has them, else equal shares); the bank may take as much as keeps the
    most loaded pack at its limit. A pack whose path is open (or throttled
    to 0 A) is counted out of that direction.
    """
    packs = list(packs)
    charge, charge_pack = _direction_limit(packs, Direction.CHARGE)
    discharge, discharge_pack = _direction_limit(packs, Direction.DISCHARGE)
    return SafeLimits(
        charge=None if _limits_unknown(packs, Direction.CHARGE) else charge,
        discharge=None if _limits_unknown(packs, Direction.DISCHARGE) else discharge,
        charge_pack=charge_pack,
        discharge_pack=discharge_pack,
    )


def _limits_unknown(packs: Iterable[PackState], direction: Direction) -> bool:
    """Return whether paths are closed one way and not one of them reports its limit."""
    closed = [pack for pack in packs if pack.path(direction)]
    return bool(closed) and all(
        (pack.charge_limit if direction is Direction.CHARGE else pack.discharge_limit) is None
        for pack in closed
    )


def _after(pack: PackState, change: Change) -> PackState:
    """Return the pack as it would be once the change is made."""
    charge_closed = pack.charge_closed if change.charge is None else change.charge
    discharge_closed = pack.discharge_closed if change.discharge is None else change.discharge
    charge_limit = pack.charge_limit
    discharge_limit = pack.discharge_limit
    if change.charge_limit is not None:
        charge_limit = _throttle(pack.ceiling(Direction.CHARGE), change.charge_limit)
    elif change.charge is True and pack.charge_ceiling is not None:
        # A path closed again returns to the pack's own limit.
        charge_limit = pack.charge_ceiling
    if change.discharge_limit is not None:
        discharge_limit = _throttle(pack.ceiling(Direction.DISCHARGE), change.discharge_limit)
    elif change.discharge is True and pack.discharge_ceiling is not None:
        discharge_limit = pack.discharge_ceiling
    return PackState(
        address=pack.address,
        voltage=pack.voltage,
        current=pack.current,
        charge_closed=charge_closed,
        discharge_closed=discharge_closed,
        charge_limit=charge_limit,
        discharge_limit=discharge_limit,
        resistance=pack.resistance,
        fresh=pack.fresh,
        estimated=pack.estimated,
        charge_ceiling=pack.charge_ceiling,
        discharge_ceiling=pack.discharge_ceiling,
    )


def _throttle(limit: float | None, asked: float) -> float:
    """Return the limit a throttle leaves: never above what the BMS allows itself.

    ``limit`` is the pack's own (its ceiling); unknown, the throttle is taken as asked.
    """
    asked = max(asked, 0.0) if math.isfinite(asked) else 0.0
    return asked if limit is None else min(limit, asked)


def _refuse(address: int, reason: Reason, **values: float | int | str) -> Decision:
    return Decision(allowed=False, reason=reason, address=address, values=values)


def _r(value: float) -> float:
    return round(value, 2)


def judge(  # noqa: PLR0911 - one return per rule, in the order they are judged
    change: Change,
    view: BankView,
    now: datetime,
    settings: ControlSettings,
    *,
    last_change: datetime | None = None,
) -> Decision:
    """Judge one change to one pack from the latest view of the bank.

    ``last_change``: when this pack was last changed, if ever.
    """
    address = change.address
    pack = view.packs.get(address)
    if pack is None:
        return _refuse(address, Reason.UNKNOWN_PACK)
    if not pack.fresh:
        return _refuse(
            address,
            Reason.STALE,
            polls=STALE_POLLS,
            seconds=round((now - view.taken_at).total_seconds()),
        )
    after = _after(pack, change)
    opening = [d for d in Direction if pack.path(d) and not after.path(d)]
    narrowing = [d for d in Direction if after.limit(d) < pack.limit(d)]
    widening = [d for d in Direction if after.limit(d) > pack.limit(d)]
    # A path joins the bus again when its switch closes, or when a throttle
    # of 0 A is raised: both are judged as a join.
    closing = [
        d
        for d in Direction
        if (not pack.switched_on(d) and after.switched_on(d))
        or (after.switched_on(d) and not pack.path(d) and after.path(d))
    ]
    if not opening and not narrowing and not closing and not widening:
        return Decision(allowed=True, reason=Reason.NO_CHANGE, address=address)
    if last_change is not None and now - last_change < settings.min_interval:
        wait = settings.min_interval - (now - last_change)
        return _refuse(
            address,
            Reason.TOO_SOON,
            minutes=_r(settings.min_interval.total_seconds() / 60),
            wait_seconds=math.ceil(wait.total_seconds()),
        )
    others = [p for a, p in view.packs.items() if a != address]
    fresh_others = [p for p in others if p.fresh]
    for direction in opening:
        remaining = sum(1 for p in fresh_others if p.path(direction))
        if remaining == 0:
            return _refuse(address, Reason.LAST_PACK, direction=direction.value)
        if remaining < settings.min_connected:
            return _refuse(
                address,
                Reason.BELOW_MINIMUM,
                direction=direction.value,
                remaining=remaining,
                minimum=settings.min_connected,
            )
    if opening or narrowing:
        decision = _check_load(address, after, fresh_others, view, settings)
        if decision is not None:
            return decision
    if closing:
        decision = _check_join(pack, after, closing, fresh_others, settings)
        if decision is not None:
            return decision
    return Decision(allowed=True, reason=Reason.ALLOWED, address=address)


def _check_load(
    address: int,
    after: PackState,
    fresh_others: list[PackState],
    view: BankView,
    settings: ControlSettings,
) -> Decision | None:
    """Refuse when the bank after the change cannot carry the present current."""
    current = view.current
    if current is None:
        return _refuse(address, Reason.CURRENT_UNKNOWN)
    direction = Direction.CHARGE if current >= 0 else Direction.DISCHARGE
    limit, binding = _direction_limit([after, *fresh_others], direction)
    needed = abs(current) * (1.0 + settings.current_margin)
    if needed <= limit:
        return None
    if binding is None and _limits_unknown([after, *fresh_others], direction):
        # Closed paths, none with a limit: the overload's numbers would be
        # 0 A and no binding pack, which is not what the packs can take.
        return _refuse(
            address, Reason.LIMITS_UNKNOWN, direction=direction.value, current=_r(abs(current))
        )
    carrying = [p for p in [after, *fresh_others] if p.closed(direction)]
    return _refuse(
        address,
        Reason.OVERLOAD,
        direction=direction.value,
        others=len(carrying),
        capacity=_r(limit),
        current=_r(abs(current)),
        margin_percent=round(settings.current_margin * 100),
        binding=binding if binding is not None else -1,
    )


def _check_join(  # noqa: PLR0911 - one return per rule
    pack: PackState,
    after: PackState,
    closing: list[Direction],
    fresh_others: list[PackState],
    settings: ControlSettings,
) -> Decision | None:
    """Refuse a path closing into a bus too far away, or into too large an inrush."""
    connected = [p for p in fresh_others if p.charge_closed or p.discharge_closed]
    if not connected:
        return None  # nothing to join into: no inrush
    voltages = [p.voltage for p in connected if p.voltage is not None]
    if pack.voltage is None or not voltages:
        return _refuse(pack.address, Reason.VOLTAGE_UNKNOWN)
    bus = sum(voltages) / len(voltages)
    delta = pack.voltage - bus
    if abs(delta) > settings.max_join_voltage:
        return _refuse(
            pack.address,
            Reason.VOLTAGE_APART,
            pack_voltage=_r(pack.voltage),
            bus_voltage=_r(bus),
            delta=_r(abs(delta)),
            limit=settings.max_join_voltage,
        )
    # Below the bus the pack charges from the rest (the rest discharge);
    # above it, it discharges into them.
    into = Direction.CHARGE if delta < 0 else Direction.DISCHARGE
    if into not in closing:
        return None
    rest_direction = Direction.DISCHARGE if into is Direction.CHARGE else Direction.CHARGE
    rest = [p for p in connected if p.closed(rest_direction)]
    if not rest:
        return None
    r_rest = 1.0 / sum(1.0 / p.resistance for p in rest)
    inrush = abs(delta) / (pack.resistance + r_rest)
    limit = after.limit(into)
    if inrush <= limit:
        return None
    return _refuse(
        pack.address,
        Reason.INRUSH,
        direction=into.value,
        inrush=_r(inrush),
        limit=_r(limit),
        delta=_r(abs(delta)),
        resistance_mohm=_r(1000.0 * (pack.resistance + r_rest)),
    )


def inrush_current(pack: PackState, rest: Iterable[PackState]) -> float:
    """Return the estimated inrush of joining ``pack`` to ``rest``: dV / (R_pack + R_rest), A.

    Positive when the pack would charge. The rest's voltage is their mean;
    0 when there is no rest or a voltage is unknown.
    """
    rest = [p for p in rest if p.voltage is not None]
    if not rest or pack.voltage is None:
        return 0.0
    bus = sum(p.voltage for p in rest if p.voltage is not None) / len(rest)
    r_rest = 1.0 / sum(1.0 / p.resistance for p in rest)
    return (bus - pack.voltage) / (pack.resistance + r_rest)


# --- rejoin when matched -----------------------------------------------------
#
# A reconnect asked "when matched" that the guard refuses only because the
# pack sits too far from the bus (or would draw too large an inrush) is held
# instead of refused: it is judged again, by the same guard, after every
# poll, carried out at the first one the guard allows, and given up after
# the user's time. Any other refusal is final at once: it says something is
# wrong with the request (too soon, stale data), not that the bank must
# settle first.

# The refusals a reconnect may wait out: the voltages meet as the bank
# charges or discharges around the pack.
HOLDABLE = frozenset({Reason.VOLTAGE_APART, Reason.INRUSH})


def holdable(decision: Decision) -> bool:
    """Return whether a refusal is one a reconnect "when matched" waits out."""
    return not decision.allowed and decision.reason in HOLDABLE


@dataclass(frozen=True, kw_only=True)
class HeldRejoin:
    """A reconnect waiting for the guard: what it closes, since when, until when, and why.

    ``reason`` and ``values`` are the guard's last refusal that the request
    waits out (the numbers a user reads: how far apart, the limit).
    """

    change: Change
    since: datetime
    give_up_at: datetime
    reason: Reason
    values: Mapping[str, float | int | str]
    who: str = "user"

    @property
    def address(self) -> int:
        """Return the pack's address."""
        return self.change.address

    def to_dict(self) -> dict[str, object]:
        """Return the request as the store keeps it."""
        return {
            "address": self.change.address,
            "charge": self.change.charge,
            "discharge": self.change.discharge,
            "since": self.since.isoformat(),
            "give_up_at": self.give_up_at.isoformat(),
            "reason": self.reason.value,
            "values": dict(self.values),
            "who": self.who,
        }

    @classmethod
    def from_dict(cls, data: object) -> HeldRejoin | None:
        """Return a stored request, or None where it cannot be read back as one."""
        if not isinstance(data, Mapping):
            return None
        address, charge, discharge = data.get("address"), data.get("charge"), data.get("discharge")
        values = data.get("values")
        try:
            since = datetime.fromisoformat(str(data.get("since")))
            give_up_at = datetime.fromisoformat(str(data.get("give_up_at")))
            reason = Reason(str(data.get("reason")))
        except ValueError:
            return None
        if (
            not isinstance(address, int)
            or isinstance(address, bool)
            or charge not in (True, None)
            or discharge not in (True, None)
            or charge is discharge is None
            or reason not in HOLDABLE
            or since.tzinfo is None
            or give_up_at.tzinfo is None
            or not isinstance(values, Mapping)
        ):
            return None
        return cls(
            change=Change(address=address, charge=charge, discharge=discharge),
            since=since,
            give_up_at=give_up_at,
            reason=reason,
            values={
                str(k): v
                for k, v in values.items()
                if isinstance(v, int | float | str) and not isinstance(v, bool)
            },
            who=str(data.get("who", "user")),
        )


def hold_rejoin(
    change: Change,
    decision: Decision,
    now: datetime,
    settings: ControlSettings,
    *,
    who: str = "user",
) -> HeldRejoin | None:
    """Return the held request for a refused reconnect, or None where it is refused at once.

    Only a change that closes paths and opens none can wait; only the
    refusals in ``HOLDABLE`` are waited out, and an inrush against a limit
    of 0 A (a pack whose BMS reports no limit, nor a capacity to take one
    from) is not: no voltage but the bus's own would ever be allowed.
    """
    closes = change.charge is True or change.discharge is True
    opens = change.charge is False or change.discharge is False
    throttles = change.charge_limit is not None or change.discharge_limit is not None
    if not closes or opens or throttles or not holdable(decision):
        return None
    if decision.reason is Reason.INRUSH and not decision.values.get("limit"):
        return None
    return HeldRejoin(
        change=change,
        since=now,
        give_up_at=now + settings.rejoin_timeout,
        reason=decision.reason,
        values=dict(decision.values),
        who=who,
    )


class RejoinStep(StrEnum):
    """What becomes of a held reconnect after a poll."""

    JOIN = "join"  # the guard allows it: carry it out
    WAIT = "wait"  # still refused: wait for the next poll
    GIVE_UP = "give_up"  # its time is over
    DONE = "done"  # the pack is connected already: nothing left to do


def rejoin_step(
    held: HeldRejoin, decision: Decision, now: datetime
) -> tuple[RejoinStep, HeldRejoin]:
    """Return what to do with a held reconnect, given the guard's decision of this poll.

    The time runs out first: a request the guard would allow only after its
    time is given up, not carried out late. While it waits, the held
    request takes the numbers of the latest refusal it waits out; any other
    refusal (a stale poll, the pack changed a moment ago) is waited out too,
    and leaves the numbers as they were. The request returned is the one
    given where nothing changed, so a caller can tell by identity.
    """
    if now >= held.give_up_at:
        return RejoinStep.GIVE_UP, held
    if decision.allowed:
        return (RejoinStep.DONE if decision.reason is Reason.NO_CHANGE else RejoinStep.JOIN), held
    if holdable(decision) and (
        decision.reason is not held.reason or dict(decision.values) != dict(held.values)
    ):
        held = replace(held, reason=decision.reason, values=dict(decision.values))
    return RejoinStep.WAIT, held
