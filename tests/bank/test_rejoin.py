"""Rejoin when matched, as pure rules: what may wait, for how long, and what then.

The banks are worked out by hand: packs of 50 A each way at 10 mOhm (the
guard's default resistance), so the rest of a three-pack bank is 5 mOhm and
an inrush is the difference over 15 mOhm.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, strategies as st

from custom_components.rack_battery.bank.control import (
    REJOIN_TIMEOUT_RANGE,
    BankView,
    Change,
    ControlSettings,
    Decision,
    HeldRejoin,
    Reason,
    RejoinStep,
    bank_view,
    hold_rejoin,
    judge,
    rejoin_step,
)
from custom_components.rack_battery.bank.model import BankSnapshot, PackReading

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEFAULTS = ControlSettings()
RECONNECT = Change.reconnect(3)


def _view(
    pack_voltage: float, *, charge_limit: float | None = 50.0, now: datetime = NOW
) -> BankView:
    """Two packs at 52.0 V carrying the bank, pack 3 out at ``pack_voltage``."""
    readings = [
        PackReading(
            address=address,
            voltage=52.0,
            current=0.0,
            charge_current_limit=50.0,
            discharge_current_limit=50.0,
            charge_enabled=True,
            discharge_enabled=True,
        )
        for address in (1, 2)
    ]
    readings.append(
        PackReading(
            address=3,
            voltage=pack_voltage,
            current=0.0,
            charge_current_limit=charge_limit,
            discharge_current_limit=50.0,
            charge_enabled=False,
            discharge_enabled=False,
        )
    )
    snapshot = BankSnapshot(taken_at=NOW, readings={r.address: r for r in readings}, failed={})
    return bank_view(snapshot, now, DEFAULTS)


def _held(pack_voltage: float = 51.2) -> HeldRejoin:
    decision = judge(RECONNECT, _view(pack_voltage), NOW, DEFAULTS)
    held = hold_rejoin(RECONNECT, decision, NOW, DEFAULTS)
    assert held is not None
    return held


def test_a_reconnect_volts_apart_is_held_with_the_numbers() -> None:
    # 0.8 V below the bus, the limit 0.5 V.
    held = _held(51.2)
    assert held.reason is Reason.VOLTAGE_APART
    assert held.values["delta"] == 0.8
    assert held.values["limit"] == 0.5
    assert held.since == NOW
    assert held.give_up_at == NOW + timedelta(minutes=60)


def test_a_reconnect_whose_inrush_is_too_high_is_held() -> None:
    # 0.4 V over 15 mOhm is about 26.7 A, above a charge limit of 20 A.
    decision = judge(RECONNECT, _view(51.6, charge_limit=20.0), NOW, DEFAULTS)
    assert decision.reason is Reason.INRUSH
    assert decision.values["inrush"] == 26.67
    held = hold_rejoin(RECONNECT, decision, NOW, DEFAULTS)
    assert held is not None
    assert held.reason is Reason.INRUSH


def test_an_inrush_against_no_limit_at_all_is_not_held() -> None:
    # A BMS that says 0 A charge: no voltage but the bus's own would do.
    decision = judge(RECONNECT, _view(51.9, charge_limit=0.0), NOW, DEFAULTS)
    assert decision.reason is Reason.INRUSH
    assert hold_rejoin(RECONNECT, decision, NOW, DEFAULTS) is None


def test_other_refusals_are_not_held() -> None:
    too_soon = judge(RECONNECT, _view(51.2), NOW, DEFAULTS, last_change=NOW - timedelta(minutes=1))
    assert too_soon.reason is Reason.TOO_SOON
    late = NOW + timedelta(minutes=5)
    stale = judge(RECONNECT, _view(51.2, now=late), late, DEFAULTS)
    assert stale.reason is Reason.STALE
    for decision in (too_soon, stale):
        assert hold_rejoin(RECONNECT, decision, NOW, DEFAULTS) is None
    for reason in (Reason.LAST_PACK, Reason.OVERLOAD, Reason.BELOW_MINIMUM):
        refusal = Decision(allowed=False, reason=reason, address=3)
        assert hold_rejoin(RECONNECT, refusal, NOW, DEFAULTS) is None


def test_only_a_change_that_closes_and_opens_nothing_waits() -> None:
    apart = judge(RECONNECT, _view(51.2), NOW, DEFAULTS)
    for change in (
        Change.isolate(3),
        Change(address=3, charge=True, discharge=False),
        Change(address=3, charge=True, charge_limit=10.0),
    ):
        assert hold_rejoin(change, apart, NOW, DEFAULTS) is None
    assert hold_rejoin(Change(address=3, charge=True), apart, NOW, DEFAULTS) is not None


def test_the_wait_follows_the_guard_until_it_allows_the_join() -> None:
    held = _held(51.2)
    later = NOW + timedelta(minutes=10)
    # Still 0.8 V apart: it waits, and the request is the same object.
    step, same = rejoin_step(held, judge(RECONNECT, _view(51.2), NOW, DEFAULTS), later)
    assert step is RejoinStep.WAIT
    assert same is held
    # 0.6 V apart: it waits with the new numbers.
    step, nearer = rejoin_step(held, judge(RECONNECT, _view(51.4), NOW, DEFAULTS), later)
    assert step is RejoinStep.WAIT
    assert nearer.values["delta"] == 0.6
    assert nearer.since == held.since
    # A stale poll is waited out and leaves the numbers.
    stale = judge(RECONNECT, _view(51.9, now=later), later, DEFAULTS)
    assert stale.reason is Reason.STALE
    assert rejoin_step(nearer, stale, later) == (RejoinStep.WAIT, nearer)
    # 0.3 V apart, 20 A inrush under 50 A: join.
    allowed = judge(RECONNECT, _view(51.7), NOW, DEFAULTS)
    assert allowed.allowed
    assert rejoin_step(nearer, allowed, later)[0] is RejoinStep.JOIN


def test_a_pack_connected_meanwhile_needs_nothing_more() -> None:
    held = _held()
    no_change = Decision(allowed=True, reason=Reason.NO_CHANGE, address=3)
    assert rejoin_step(held, no_change, NOW)[0] is RejoinStep.DONE


def test_it_gives_up_when_its_time_is_over_even_if_the_guard_would_allow_it() -> None:
    held = _held()
    allowed = judge(RECONNECT, _view(51.8), NOW, DEFAULTS)
    assert allowed.allowed
    just_before = held.give_up_at - timedelta(seconds=1)
    assert rejoin_step(held, allowed, just_before)[0] is RejoinStep.JOIN
    assert rejoin_step(held, allowed, held.give_up_at)[0] is RejoinStep.GIVE_UP


def test_the_time_to_give_up_is_the_users_within_its_hard_limits() -> None:
    short = ControlSettings(rejoin_timeout=timedelta(minutes=15))
    decision = judge(RECONNECT, _view(51.2), NOW, short)
    held = hold_rejoin(RECONNECT, decision, NOW, short)
    assert held is not None
    assert held.give_up_at == NOW + timedelta(minutes=15)
    assert ControlSettings(rejoin_timeout=timedelta(0)).rejoin_timeout == REJOIN_TIMEOUT_RANGE[0]
    assert (
        ControlSettings(rejoin_timeout=timedelta(days=9)).rejoin_timeout
        == (REJOIN_TIMEOUT_RANGE[1])
    )


def test_a_held_reconnect_is_stored_and_read_back() -> None:
    held = _held()
    assert HeldRejoin.from_dict(held.to_dict()) == held


@given(
    st.one_of(
        st.none(),
        st.integers(),
        st.text(),
        st.dictionaries(
            st.sampled_from(
                ["address", "charge", "discharge", "since", "give_up_at", "reason", "values", "who"]
            ),
            st.one_of(st.none(), st.booleans(), st.integers(), st.text(), st.floats()),
        ),
    )
)
def test_a_stored_request_that_cannot_be_one_is_dropped(data: object) -> None:
    held = HeldRejoin.from_dict(data)
    if held is not None:
        assert held.change.charge is True or held.change.discharge is True
        assert held.reason in (Reason.VOLTAGE_APART, Reason.INRUSH)


def test_a_stored_request_that_would_open_a_path_is_dropped() -> None:
    stored = _held().to_dict()
    assert HeldRejoin.from_dict({**stored, "charge": False}) is None
    assert HeldRejoin.from_dict({**stored, "reason": "too_soon"}) is None
    assert HeldRejoin.from_dict({**stored, "since": "2026-03-01T12:00:00"}) is None
    assert HeldRejoin.from_dict({**stored, "address": True}) is None


def test_a_limit_held_at_0_a_is_judged_as_the_packs_own() -> None:
    # A BMS that lets a 0 A hold lapse reports the 0 A while held: closing
    # the path gives the pack 0.5 C of its 100 Ah back, 50 A, so 0.3 V
    # apart over 20 mOhm (15 A) may join; with the 0 A taken at its word
    # it may not.
    readings = {
        1: PackReading(
            address=1,
            voltage=52.0,
            current=0.0,
            charge_current_limit=50.0,
            discharge_current_limit=50.0,
            charge_enabled=True,
            discharge_enabled=True,
        ),
        3: PackReading(
            address=3,
            voltage=51.7,
            current=0.0,
            charge_current_limit=0.0,
            discharge_current_limit=0.0,
            charge_enabled=False,
            discharge_enabled=False,
            design_capacity=100.0,
        ),
    }
    snapshot = BankSnapshot(taken_at=NOW, readings=readings, failed={})
    as_read = bank_view(snapshot, NOW, DEFAULTS)
    assert judge(RECONNECT, as_read, NOW, DEFAULTS).reason is Reason.INRUSH
    held = bank_view(snapshot, NOW, DEFAULTS, held_open={3: (True, True)})
    assert held.packs[3].charge_limit == 50.0
    assert not held.packs[3].charge_closed
    assert judge(RECONNECT, held, NOW, DEFAULTS).allowed
