"""The guard of control, judged on banks whose numbers are worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
import statistics

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
import pytest

from custom_components.rack_battery.bank.control import (
    BankView,
    Change,
    ControlSettings,
    Direction,
    PackState,
    Reason,
    bank_view,
    current_shares,
    judge,
    pack_limits,
    safe_limits,
)
from custom_components.rack_battery.bank.model import BankSnapshot, PackReading

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEFAULTS = ControlSettings()


def reading(
    address: int,
    *,
    voltage: float = 52.0,
    current: float = 0.0,
    charge_limit: float | None = 50.0,
    discharge_limit: float | None = 50.0,
    charge: bool | None = True,
    discharge: bool | None = True,
    design: float | None = None,
) -> PackReading:
    return PackReading(
        address=address,
        voltage=voltage,
        current=current,
        charge_current_limit=charge_limit,
        discharge_current_limit=discharge_limit,
        charge_enabled=charge,
        discharge_enabled=discharge,
        design_capacity=design,
    )


def view_of(
    *readings: PackReading,
    taken_at: datetime = NOW,
    resistances: dict[int, float] | None = None,
    settings: ControlSettings = DEFAULTS,
    now: datetime = NOW,
    read_at: dict[int, datetime] | None = None,
    held_open: dict[int, tuple[bool, bool]] | None = None,
    own_limits: dict[int, tuple[float | None, float | None]] | None = None,
) -> BankView:
    snapshot = BankSnapshot(taken_at=taken_at, readings={r.address: r for r in readings}, failed={})
    return bank_view(
        snapshot,
        now,
        settings,
        resistances=resistances,
        read_at=read_at,
        held_open=held_open,
        own_limits=own_limits,
    )


def three_packs_drawing(amps: float) -> BankView:
    """Three packs of 50 A each way, alike, sharing ``amps`` of discharge."""
    share = -amps / 3
    return view_of(*(reading(a, current=share) for a in (1, 2, 3)))


def test_isolation_refused_with_the_numbers_when_the_rest_cannot_carry_the_load() -> None:
    # Two packs of 50 A carry 100 A; the bank draws 140 A (154 A with 10 %).
    decision = judge(Change.isolate(3), three_packs_drawing(140.0), NOW, DEFAULTS)
    assert not decision.allowed
    assert decision.reason is Reason.OVERLOAD
    assert decision.values["others"] == 2
    assert decision.values["capacity"] == 100.0
    assert decision.values["current"] == 140.0
    assert decision.values["direction"] == "discharge"


def test_isolation_allowed_when_the_rest_carry_the_load_with_the_margin() -> None:
    # 90 A * 1.1 = 99 A <= 100 A.
    assert judge(Change.isolate(3), three_packs_drawing(90.0), NOW, DEFAULTS).allowed
    # 91 A * 1.1 = 100.1 A > 100 A.
    decision = judge(Change.isolate(3), three_packs_drawing(91.0), NOW, DEFAULTS)
    assert decision.reason is Reason.OVERLOAD


def test_a_bank_whose_packs_report_no_limits_refuses_a_load_by_saying_so() -> None:
    # SunSpec strings: no current limit, no capacity. Under 30 A the guard
    # has no numbers to carry it by, and says so instead of "0 A together,
    # pack -1 first"; at rest nothing is to be carried; and the safe
    # currents are unknown, not 0 A.
    def unknown(amps: float) -> BankView:
        return view_of(
            *(
                reading(a, current=-amps / 3, charge_limit=None, discharge_limit=None)
                for a in (1, 2, 3)
            )
        )

    decision = judge(Change.isolate(2), unknown(30.0), NOW, DEFAULTS)
    assert decision.reason is Reason.LIMITS_UNKNOWN
    assert decision.values == {"direction": "discharge", "current": 30.0}
    assert judge(Change.isolate(2), unknown(0.0), NOW, DEFAULTS).allowed
    limits = safe_limits(unknown(0.0).packs.values())
    assert limits.charge is None
    assert limits.discharge is None
    # One other pack that reports its limit is enough for numbers: the
    # overload, by that pack alone (the others count for nothing).
    known = view_of(
        reading(1, current=-20.0),
        *(reading(a, current=-20.0, charge_limit=None, discharge_limit=None) for a in (2, 3)),
    )
    decision = judge(Change.isolate(2), known, NOW, DEFAULTS)
    assert decision.reason is Reason.OVERLOAD
    assert decision.values["capacity"] == 50.0
    assert decision.values["binding"] == 1
    assert safe_limits(known.packs.values()).discharge == 50.0
    # Taking that one out leaves only packs with no numbers.
    decision = judge(Change.isolate(1), known, NOW, DEFAULTS)
    assert decision.reason is Reason.LIMITS_UNKNOWN


def test_the_last_pack_and_the_minimum_stay_connected() -> None:
    alone = view_of(reading(1))
    assert judge(Change.isolate(1), alone, NOW, DEFAULTS).reason is Reason.LAST_PACK
    three = three_packs_drawing(0.0)
    keep_three = ControlSettings(min_connected=3)
    decision = judge(Change.isolate(2), three, NOW, keep_three)
    assert decision.reason is Reason.BELOW_MINIMUM
    assert decision.values == {"direction": "charge", "remaining": 2, "minimum": 3}
    assert judge(Change.isolate(2), three, NOW, ControlSettings(min_connected=2)).allowed


def test_a_pack_that_is_the_last_with_a_path_closed_keeps_it() -> None:
    # Pack 2's discharge path is open: pack 1 is the last that can discharge,
    # so its discharge path stays, while its charge path may open.
    bank = view_of(reading(1), reading(2, discharge=False))
    no_discharge = Change(address=1, discharge=False)
    assert judge(no_discharge, bank, NOW, DEFAULTS).reason is Reason.LAST_PACK
    assert judge(Change(address=1, charge=False), bank, NOW, DEFAULTS).allowed


def test_safe_limits_share_by_resistance_and_count_open_paths_out() -> None:
    # 10 and 30 mOhm: conductances 100 and 33.3 S, shares 3/4 and 1/4.
    # Pack 1 reaches 50 A at 66.7 A of bank current; pack 2 would at 200 A.
    bank = view_of(reading(1), reading(2), resistances={1: 0.010, 2: 0.030})
    limits = safe_limits(bank.packs.values())
    assert round(limits.discharge or 0.0, 1) == 66.7
    assert limits.discharge_pack == 1
    # Pack 1 with its charge path open charges nothing: pack 2 alone, 50 A;
    # it still discharges, so the discharge limit is unchanged.
    bank = view_of(reading(1, charge=False), reading(2), resistances={1: 0.010, 2: 0.030})
    limits = safe_limits(bank.packs.values())
    assert limits.charge == 50.0
    assert limits.charge_pack == 2
    assert round(limits.discharge or 0.0, 1) == 66.7


def test_safe_limits_with_no_estimate_share_equally() -> None:
    # Limits 50, 40 and 60 A, a third of the current each: pack 2 reaches
    # its 40 A at 120 A of bank current, whatever the default resistance.
    bank = view_of(reading(1), reading(2, discharge_limit=40.0), reading(3, discharge_limit=60.0))
    limits = safe_limits(bank.packs.values())
    assert limits.discharge == 120.0
    assert limits.discharge_pack == 2
    assert limits.charge == 150.0


def test_safe_limits_weigh_the_estimates_against_equal_shares() -> None:
    # Pack 1: 10 mOhm, 100 A; pack 2: 20 mOhm, 30 A. Conductances 100 and
    # 50 S, shares 2/3 and 1/3: pack 1 reaches 100 A at 150 A, pack 2 its
    # 30 A at 90 A. Shared equally, pack 2 would bind at 60 A.
    packs = (reading(1, discharge_limit=100.0), reading(2, discharge_limit=30.0))
    weighed = safe_limits(view_of(*packs, resistances={1: 0.010, 2: 0.020}).packs.values())
    assert round(weighed.discharge or 0.0, 6) == 90.0
    assert weighed.discharge_pack == 2
    equal = safe_limits(view_of(*packs).packs.values())
    assert equal.discharge == 60.0


def test_a_pack_not_estimated_counts_as_the_median_pack() -> None:
    # Packs 1 and 2 estimated at 10 and 30 mOhm; pack 3 not yet: taken at
    # their median, 20 mOhm. Conductances 100, 33.3 and 50 S (183.3 S):
    # pack 1 takes 100/183.3 = 54.5 % and reaches its 50 A at 91.7 A.
    bank = view_of(reading(1), reading(2), reading(3), resistances={1: 0.010, 2: 0.030})
    shares = current_shares(bank.packs.values(), Direction.DISCHARGE)
    assert round(shares[1], 4) == 0.5455
    assert round(shares[2], 4) == 0.1818
    assert round(shares[3], 4) == 0.2727
    limits = safe_limits(bank.packs.values())
    assert round(limits.discharge or 0.0, 1) == 91.7
    assert limits.discharge_pack == 1
    # Pack 3's charge path open: 1 and 2 share the charge 3/4 and 1/4, and
    # pack 1 reaches 50 A at 66.7 A.
    bank = view_of(
        reading(1), reading(2), reading(3, charge=False), resistances={1: 0.010, 2: 0.030}
    )
    limits = safe_limits(bank.packs.values())
    assert round(limits.charge or 0.0, 1) == 66.7
    assert limits.charge_pack == 1
    # The inrush of a pack not estimated is still judged at the low default.
    assert bank.packs[3].resistance == DEFAULTS.default_resistance


def test_a_throttle_may_be_raised_again_up_to_the_packs_own_limit() -> None:
    # Pack 1 held at 20 A charging; its own limit is 50 A.
    bank = view_of(
        reading(1, charge_limit=20.0), reading(2), own_limits={1: (50.0, 50.0), 2: (50.0, 50.0)}
    )
    raised = judge(Change(address=1, charge_limit=40.0), bank, NOW, DEFAULTS)
    assert raised.allowed
    assert raised.reason is Reason.ALLOWED
    # Asked above its own limit: the pack's own 50 A is the most it gets,
    # and that is still a change.
    assert judge(Change(address=1, charge_limit=80.0), bank, NOW, DEFAULTS).reason is (
        Reason.ALLOWED
    )
    # Without a known own limit, nothing can be raised: no change.
    bank = view_of(reading(1, charge_limit=20.0), reading(2))
    assert judge(Change(address=1, charge_limit=40.0), bank, NOW, DEFAULTS).reason is (
        Reason.NO_CHANGE
    )


def test_raising_a_throttle_of_zero_is_a_join() -> None:
    # Pack 3 held at 0 A both ways (isolated by a limit), 0.8 V below the
    # bus: raising its charge limit joins it, and the voltage limit holds.
    settings = ControlSettings(max_join_voltage=0.5)
    bank = view_of(
        reading(1, voltage=51.8),
        reading(2, voltage=51.8),
        reading(3, voltage=51.0, charge_limit=0.0, discharge_limit=0.0),
        own_limits={3: (50.0, 50.0)},
    )
    decision = judge(Change(address=3, charge_limit=20.0), bank, NOW, settings)
    assert decision.reason is Reason.VOLTAGE_APART
    # Closing the path returns it to its own limit: the inrush of 0.3 V
    # through 10 + 5 mOhm (20 A) is judged against 50 A, not 0 A.
    bank = view_of(
        reading(1, voltage=51.3),
        reading(2, voltage=51.3),
        reading(3, voltage=51.0, charge_limit=0.0, discharge_limit=0.0),
        own_limits={3: (50.0, 50.0)},
    )
    assert judge(Change.reconnect(3), bank, NOW, settings).allowed


def test_limits_fall_back_to_the_capacity() -> None:
    # 100 Ah: 0.5 C = 50 A charging, 1 C = 100 A discharging.
    pack = reading(1, charge_limit=None, discharge_limit=None, design=100.0)
    assert pack_limits(pack) == (50.0, 100.0)
    assert pack_limits(reading(1, charge_limit=None, discharge_limit=None)) == (None, None)


def test_a_throttle_to_zero_counts_as_an_open_path() -> None:
    alone = view_of(reading(1), reading(2, charge=False))
    decision = judge(Change(address=1, charge_limit=0.0), alone, NOW, DEFAULTS)
    assert decision.reason is Reason.LAST_PACK


def test_a_throttle_that_leaves_too_little_is_refused() -> None:
    # Three packs charging 120 A (132 A with margin); pack 3 throttled to 20 A
    # leaves 50 + 50 + 20 = 120 A for equal resistances... the binding pack
    # is 3: share 1/3, 20 A / (1/3) = 60 A.
    bank = view_of(*(reading(a, current=40.0) for a in (1, 2, 3)))
    decision = judge(Change(address=3, charge_limit=20.0), bank, NOW, DEFAULTS)
    assert decision.reason is Reason.OVERLOAD
    assert decision.values["capacity"] == 60.0
    assert decision.values["binding"] == 3


def test_a_reconnect_waits_for_the_voltages_to_match() -> None:
    settings = ControlSettings(max_join_voltage=0.5)
    bank = view_of(
        reading(1, voltage=51.8),
        reading(2, voltage=51.8),
        reading(3, voltage=51.0, charge=False, discharge=False),
    )
    decision = judge(Change.reconnect(3), bank, NOW, settings)
    assert decision.reason is Reason.VOLTAGE_APART
    assert decision.values == {
        "pack_voltage": 51.0,
        "bus_voltage": 51.8,
        "delta": 0.8,
        "limit": 0.5,
    }


def test_a_reconnect_whose_inrush_exceeds_the_charge_limit_is_refused() -> None:
    settings = ControlSettings(max_join_voltage=1.5)
    resistances = {1: 0.010, 2: 0.010, 3: 0.010}
    # 1.0 V across 10 mOhm + (10 || 10 = 5 mOhm): 66.7 A into a 50 A charge limit.
    bank = view_of(
        reading(1, voltage=53.0),
        reading(2, voltage=53.0),
        reading(3, voltage=52.0, charge=False, discharge=False),
        resistances=resistances,
    )
    decision = judge(Change.reconnect(3), bank, NOW, settings)
    assert decision.reason is Reason.INRUSH
    assert decision.values["inrush"] == 66.67
    assert decision.values["limit"] == 50.0
    assert decision.values["direction"] == "charge"
    # 0.6 V: 40 A, under the limit.
    bank = view_of(
        reading(1, voltage=53.0),
        reading(2, voltage=53.0),
        reading(3, voltage=52.4, charge=False, discharge=False),
        resistances=resistances,
    )
    assert judge(Change.reconnect(3), bank, NOW, settings).allowed


def test_a_pack_above_the_bus_is_judged_by_its_discharge_limit() -> None:
    settings = ControlSettings(max_join_voltage=1.5)
    # 66.7 A out of the pack, within its 100 A discharge limit.
    bank = view_of(
        reading(1, voltage=52.0),
        reading(2, voltage=52.0),
        reading(3, voltage=53.0, discharge_limit=100.0, charge=False, discharge=False),
    )
    assert judge(Change.reconnect(3), bank, NOW, settings).allowed
    bank = view_of(
        reading(1, voltage=52.0),
        reading(2, voltage=52.0),
        reading(3, voltage=53.0, discharge_limit=60.0, charge=False, discharge=False),
    )
    assert judge(Change.reconnect(3), bank, NOW, settings).reason is Reason.INRUSH


def test_no_change_from_stale_data_and_none_too_soon() -> None:
    # Polls every 30 s: a reading 61 s old is two polls gone.
    late = NOW + timedelta(seconds=61)
    bank = view_of(*(reading(a) for a in (1, 2, 3)), now=late)
    assert judge(Change.isolate(3), bank, late, DEFAULTS).reason is Reason.STALE
    old = {3: NOW - timedelta(seconds=90)}
    bank = view_of(*(reading(a) for a in (1, 2, 3)), read_at=old)
    assert judge(Change.isolate(3), bank, NOW, DEFAULTS).reason is Reason.STALE
    bank = three_packs_drawing(0.0)
    decision = judge(Change.isolate(3), bank, NOW, DEFAULTS, last_change=NOW - timedelta(minutes=4))
    assert decision.reason is Reason.TOO_SOON
    assert decision.values["wait_seconds"] == 60
    assert judge(
        Change.isolate(3), bank, NOW, DEFAULTS, last_change=NOW - timedelta(minutes=5)
    ).allowed


def test_a_stale_pack_carries_nothing_for_the_others() -> None:
    # Pack 2 is stale: isolating 3 would leave pack 1 alone with 60 A * 1.1.
    bank = view_of(
        *(reading(a, current=-20.0) for a in (1, 2, 3)),
        read_at={2: NOW - timedelta(minutes=5)},
    )
    decision = judge(Change.isolate(3), bank, NOW, DEFAULTS)
    assert decision.reason is Reason.OVERLOAD
    assert decision.values["capacity"] == 50.0


def test_settings_cannot_get_past_the_hard_limits() -> None:
    loose = ControlSettings(
        min_connected=0,
        current_margin=-1.0,
        max_join_voltage=3.0,
        min_interval=timedelta(0),
        default_resistance=float("nan"),
    )
    assert loose.min_connected == 1
    assert loose.current_margin == 0.05
    assert loose.max_join_voltage == 1.5
    assert loose.min_interval == timedelta(minutes=1)
    assert loose.default_resistance == 0.010


def test_an_unknown_current_refuses_an_isolation() -> None:
    bank = view_of(reading(1), reading(2), PackReading(address=3, voltage=52.0))
    assert judge(Change.isolate(3), bank, NOW, DEFAULTS).reason is Reason.CURRENT_UNKNOWN


# Random banks: whatever the guard allows keeps every pack within its limits.

_pack = st.tuples(
    st.none() | st.floats(0.005, 0.1),  # resistance: estimated, or not yet
    st.floats(0.0, 200.0),  # charge limit
    st.floats(0.0, 200.0),  # discharge limit
    st.floats(48.0, 56.0),  # voltage
    st.booleans(),  # charge path
    st.booleans(),  # discharge path
)


def _bank(
    packs: list[tuple[float | None, float, float, float, bool, bool]], amps: float
) -> BankView:
    readings = [
        reading(
            address,
            voltage=voltage,
            current=amps / len(packs),
            charge_limit=charge,
            discharge_limit=discharge,
            charge=charge_closed,
            discharge=discharge_closed,
        )
        for address, (_, charge, discharge, voltage, charge_closed, discharge_closed) in enumerate(
            packs, start=1
        )
    ]
    resistances = {
        address: pack[0] for address, pack in enumerate(packs, start=1) if pack[0] is not None
    }
    return view_of(
        *readings, resistances=resistances, settings=ControlSettings(max_join_voltage=1.5)
    )


@hsettings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(_pack, min_size=1, max_size=8), st.floats(-400.0, 400.0), st.data())
def test_no_allowed_isolation_overloads_a_pack(
    packs: list[tuple[float | None, float, float, float, bool, bool]],
    amps: float,
    data: st.DataObject,
) -> None:
    bank = _bank(packs, amps)
    target = data.draw(st.integers(1, len(packs)))
    decision = judge(Change.isolate(target), bank, NOW, DEFAULTS)
    if not decision.allowed or decision.reason is Reason.NO_CHANGE:
        return
    direction = Direction.CHARGE if amps >= 0 else Direction.DISCHARGE
    carrying = [p for a, p in bank.packs.items() if a != target and p.closed(direction)]
    if not carrying:
        # Nothing left carries that way: only a bank at rest may be left so
        # (what the guard asks for, with its margin, rounds to nothing).
        assert abs(amps) * (1 + DEFAULTS.current_margin) == 0
        return
    for pack in carrying:
        share = abs(amps) * _shares(packs, carrying)[pack.address]
        assert share <= pack.limit(direction) + 1e-9


def _shares(
    packs: list[tuple[float | None, float, float, float, bool, bool]], carrying: list[PackState]
) -> dict[int, float]:
    """Each carrying pack's share by resistance, worked out here from the drawn bank.

    A pack not estimated counts as the median of the estimates; with none,
    the shares are equal.
    """
    estimates = [r for r, *_ in packs if r is not None]
    typical = statistics.median(estimates) if estimates else 1.0
    conductance = {p.address: 1 / (packs[p.address - 1][0] or typical) for p in carrying}
    total = sum(conductance.values())
    return {address: g / total for address, g in conductance.items()}


@hsettings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(_pack, min_size=1, max_size=8))
def test_the_safe_limits_are_the_most_no_pack_is_overloaded_at(
    packs: list[tuple[float | None, float, float, float, bool, bool]],
) -> None:
    bank = _bank(packs, 0.0)
    limits = safe_limits(bank.packs.values())
    for direction, most, binding in (
        (Direction.CHARGE, limits.charge, limits.charge_pack),
        (Direction.DISCHARGE, limits.discharge, limits.discharge_pack),
    ):
        carrying = [p for p in bank.packs.values() if p.closed(direction)]
        if not carrying:
            assert most == 0.0
            assert binding is None
            continue
        assert most is not None  # a carrying path reports its limit
        shares = _shares(packs, carrying)
        # At the safe limit every pack is within its own, and the binding
        # one is at it: a little more would overload it.
        for pack in carrying:
            assert most * shares[pack.address] <= pack.limit(direction) * (1 + 1e-9)
        assert binding is not None
        assert most * shares[binding] == pytest.approx(bank.packs[binding].limit(direction))


@hsettings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(_pack, min_size=2, max_size=8), st.data())
def test_no_allowed_reconnect_exceeds_the_inrush_limit(
    packs: list[tuple[float | None, float, float, float, bool, bool]], data: st.DataObject
) -> None:
    target = data.draw(st.integers(1, len(packs)))
    packs = list(packs)
    r, charge, discharge, voltage, _, _ = packs[target - 1]
    packs[target - 1] = (r, charge, discharge, voltage, False, False)
    bank = _bank(packs, 0.0)
    decision = judge(
        Change.reconnect(target), bank, NOW, bank_settings := ControlSettings(max_join_voltage=1.5)
    )
    if not decision.allowed:
        return
    pack = bank.packs[target]
    others: list[PackState] = [
        p for a, p in bank.packs.items() if a != target and (p.charge_closed or p.discharge_closed)
    ]
    if not others:
        return
    assert pack.voltage is not None
    bus = sum(p.voltage for p in others if p.voltage is not None) / len(others)
    assert abs(pack.voltage - bus) <= bank_settings.max_join_voltage
    # The rest push current into a pack below the bus through their
    # discharge paths, and take it from one above through their charge paths.
    into, rest_way = (
        (Direction.CHARGE, Direction.DISCHARGE)
        if pack.voltage < bus
        else (Direction.DISCHARGE, Direction.CHARGE)
    )
    rest = [p for p in others if p.closed(rest_way)]
    if not rest:
        return
    r_rest = 1 / sum(1 / p.resistance for p in rest)
    inrush = abs(pack.voltage - bus) / (pack.resistance + r_rest)
    assert inrush <= pack.limit(into) + 1e-9


def test_a_pack_held_open_at_0_a_joins_with_its_own_limit() -> None:
    """A Pylontech pack isolated by a 0 A hold reports limits of 0 A: closing
    it again is judged against what it takes once the hold is gone (0.5 C
    of its 100 Ah), not against the 0 A of the hold."""
    held = PackReading(
        address=3,
        voltage=52.0,
        current=0.0,
        charge_current_limit=0.0,
        discharge_current_limit=0.0,
        charge_enabled=False,
        discharge_enabled=False,
        design_capacity=100.0,
    )
    # 0.1 V apart through 10 + 5 mohm: about 6.7 A into the pack.
    view = view_of(
        reading(2, voltage=52.1), reading(4, voltage=52.1), held, held_open={3: (True, True)}
    )
    decision = judge(Change.reconnect(3), view, NOW, DEFAULTS)
    assert decision.allowed, decision
    assert view.packs[3].charge_limit == 50.0
    assert not view.packs[3].path(Direction.CHARGE)
