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
from dataclasses import dataclass, field
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

    def __post_init__(self) -> None:
        """Clamp every value into its hard limits."""
        values: dict[str, object] = {
            "min_connected": _clamp(int(self.min_connected), MIN_CONNECTED_RANGE),
            "current_margin": _clamp(_finite(self.current_margin, 0.10), MARGIN_RANGE),
            "max_join_voltage": _clamp(_finite(self.max_join_voltage, 0.5), JOIN_VOLTAGE_RANGE),
            "min_interval": _clamp(self.min_interval, MIN_INTERVAL_RANGE),
            "poll_interval": _clamp(self.poll_interval, POLL_INTERVAL_RANGE),
            "default_resistance": _clamp(_finite(self.default_resistance, 0.010), RESISTANCE_RANGE),
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
    no binding pack.
    """

    charge: float
    discharge: float
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
    own_limits: Mapping[int, tuple[float | None, float | None]] | None = None,
) -> BankView:
    """Return what the guard needs from a snapshot.

    ``resistances``: each pack's estimated resistance (ohm). ``capacities``:
    design capacities from the packs' identities (Ah). ``paths``: the
    (charge, discharge) state a caller knows it set, where the BMS does not
    report it; otherwise the BMS's FET state, and a BMS that reports none is
    taken at its default, closed. ``read_at``: when each pack was last read,
    where a caller keeps that; by default the snapshot's time for the packs
    it holds. ``own_limits``: each pack's own (charge, discharge) limits
    where a throttle may hold the reported ones lower (the driver keeps them).
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
        charge=charge,
        discharge=discharge,
        charge_pack=charge_pack,
        discharge_pack=discharge_pack,
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
