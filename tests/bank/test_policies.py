"""Automatic protection: what each policy proposes, and what it never does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, strategies as st

from custom_components.rack_battery.bank.analysis.findings import Finding, Severity, finding_id
from custom_components.rack_battery.bank.control import Change
from custom_components.rack_battery.bank.model import BankSnapshot, PackReading
from custom_components.rack_battery.bank.policies import (
    DEFAULT_SETTLE,
    Means,
    Plan,
    Policy,
    PolicyHold,
    PolicySettings,
    Why,
    describe,
    plan,
    returned,
    taken,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BOTH = Means(charge=True, discharge=True)
ALL = PolicySettings(enabled=frozenset(Policy))


def snapshot(
    *addresses: int, protections: dict[int, set[str]] | None = None, voltage: float = 52.0
) -> BankSnapshot:
    protections = protections or {}
    return BankSnapshot(
        taken_at=NOW,
        readings={
            a: PackReading(
                address=a,
                voltage=voltage,
                current=0.0,
                protections=frozenset(protections.get(a, set())),
                charge_enabled=True,
                discharge_enabled=True,
            )
            for a in addresses
        },
        failed={},
    )


def hot(address: int, severity: Severity = Severity.CRITICAL) -> Finding:
    return Finding(
        id=finding_id("high_temperature", address),
        rule="high_temperature",
        severity=severity,
        address=address,
        values={"temperature": 61.0, "limit": 55.0},
        since=NOW,
    )


def swing(address: int) -> Finding:
    return Finding(
        id=finding_id("voltage_swing", address),
        rule="voltage_swing",
        severity=Severity.CRITICAL,
        address=address,
        values={"swing": 0.8, "window_minutes": 10.0, "samples": 12},
        since=NOW,
    )


def run(
    snap: BankSnapshot,
    findings: list[Finding] | None = None,
    *,
    holds: dict[int, PolicyHold] | None = None,
    user: set[int] | None = None,
    settings: PolicySettings = ALL,
    means: Means = BOTH,
    now: datetime = NOW,
) -> Plan:
    return plan(
        now,
        snap,
        findings=findings or [],
        holds=holds or {},
        user_isolated=user or set(),
        settings=settings,
        means=means,
    )


def test_every_policy_is_off_by_default() -> None:
    """With no policy turned on, a hot, protected, swinging pack is left alone."""
    result = run(
        snapshot(2, 3, protections={2: {"cell_overvoltage"}}),
        [hot(3), swing(2)],
        settings=PolicySettings(),
    )
    assert result.proposals == ()


def test_a_critically_hot_pack_is_taken_out_a_warm_one_is_not() -> None:
    result = run(snapshot(2, 3, 4), [hot(3), hot(4, Severity.WARNING)])
    assert [(p.policy, p.change, p.why) for p in result.proposals] == [
        (Policy.HOT_PACK, Change.isolate(3), Why.CRITICALLY_HOT)
    ]
    assert result.proposals[0].values == {"temperature": 61.0, "limit": 55.0}


def test_each_policy_answers_only_for_its_own_condition() -> None:
    snap = snapshot(2, 3, 4, protections={2: {"discharge_overcurrent"}})
    findings = [hot(3), swing(4)]
    only = {
        policy: run(snap, findings, settings=PolicySettings(enabled=frozenset({policy})))
        for policy in Policy
    }
    assert [p.address for p in only[Policy.BMS_PROTECTION].proposals] == [2]
    assert only[Policy.BMS_PROTECTION].proposals[0].values == {
        "protections": "discharge_overcurrent"
    }
    assert [p.address for p in only[Policy.HOT_PACK].proposals] == [3]
    assert [p.address for p in only[Policy.LOOSE_CONNECTION].proposals] == [4]


def test_a_family_that_switches_only_the_charge_path_opens_only_that() -> None:
    """A Seplos V3 cannot turn its discharge FETs back on: only charging stops."""
    result = run(snapshot(2, 3), [hot(3)], means=Means(charge=True, discharge=False))
    assert [p.change for p in result.proposals] == [Change(address=3, charge=False)]
    hold = PolicyHold(
        address=3,
        policy=Policy.HOT_PACK,
        since=NOW,
        means=Means(charge=True, discharge=False),
        clear_since=NOW - DEFAULT_SETTLE,
    )
    back = run(snapshot(2, 3), holds={3: hold}, means=Means(charge=True, discharge=False))
    assert [p.change for p in back.proposals] == [Change(address=3, charge=True)]


def test_a_family_without_a_path_to_switch_gets_no_proposal() -> None:
    result = run(snapshot(2, 3), [hot(3)], means=Means(charge=False, discharge=False))
    assert result.proposals == ()


def test_a_pack_the_user_isolated_is_never_touched() -> None:
    result = run(snapshot(2, 3), [hot(3)], user={3})
    assert result.proposals == ()


def test_reconnect_only_after_the_condition_has_settled() -> None:
    """Gone for less than the settle time: nothing; back meanwhile: the time
    starts again; gone for the whole settle time: proposed back, with the
    numbers the logbook names."""
    hold = PolicyHold(address=3, policy=Policy.HOT_PACK, since=NOW, means=BOTH)
    holds = {3: hold}
    # Still hot: held, not yet clear.
    step = run(snapshot(2, 3), [hot(3)], holds=holds)
    assert step.proposals == ()
    assert step.holds[3].clear_since is None
    # Cooled: the settle time starts.
    t = NOW + timedelta(minutes=1)
    step = run(snapshot(2, 3), holds=dict(step.holds), now=t)
    assert step.proposals == ()
    assert step.holds[3].clear_since == t
    # Hot again for one poll: it starts over.
    step = run(snapshot(2, 3), [hot(3)], holds=dict(step.holds), now=t + timedelta(minutes=5))
    assert step.holds[3].clear_since is None
    t2 = t + timedelta(minutes=6)
    step = run(snapshot(2, 3), holds=dict(step.holds), now=t2)
    step = run(snapshot(2, 3), holds=dict(step.holds), now=t2 + DEFAULT_SETTLE / 2)
    assert step.proposals == ()
    # A poll the pack did not answer: unknown, it starts over too.
    step = run(snapshot(2), holds=dict(step.holds), now=t2 + DEFAULT_SETTLE - timedelta(seconds=1))
    assert step.holds[3].clear_since is None
    t3 = t2 + DEFAULT_SETTLE
    step = run(snapshot(2, 3), holds=dict(step.holds), now=t3)
    step = run(snapshot(2, 3), holds=dict(step.holds), now=t3 + DEFAULT_SETTLE)
    assert [(p.policy, p.change, p.reconnect, p.why) for p in step.proposals] == [
        (Policy.HOT_PACK, Change.reconnect(3), True, Why.CLEARED)
    ]
    values = step.proposals[0].values
    assert values["cleared_minutes"] == 10.0
    assert values["delta"] == 0.0


def test_a_held_pack_waits_for_the_conditions_of_the_policies_that_are_on() -> None:
    """Taken out as hot; cooled, but its BMS now reports a protection: with
    that policy on it stays out (no second policy claims it); with it off,
    it comes back. A voltage swing of a pack taken out as hot does not keep
    it out: an isolated pack's voltage moves against the bus by design."""
    hold = PolicyHold(
        address=3, policy=Policy.HOT_PACK, since=NOW, means=BOTH, clear_since=NOW - DEFAULT_SETTLE
    )
    snap = snapshot(2, 3, protections={3: {"cell_undervoltage"}})
    result = run(snap, holds={3: hold})
    assert result.proposals == ()
    assert set(result.holds) == {3}
    only_hot = PolicySettings(enabled=frozenset({Policy.HOT_PACK}))
    result = run(snap, holds={3: hold}, settings=only_hot)
    assert [p.change for p in result.proposals] == [Change.reconnect(3)]
    result = run(snapshot(2, 3), [swing(3)], holds={3: hold})
    assert [p.change for p in result.proposals] == [Change.reconnect(3)]
    swung = PolicyHold(
        address=3,
        policy=Policy.LOOSE_CONNECTION,
        since=NOW,
        means=BOTH,
        clear_since=NOW - DEFAULT_SETTLE,
    )
    result = run(snapshot(2, 3), [swing(3)], holds={3: swung}, settings=PolicySettings())
    assert result.proposals == ()


def test_a_policy_turned_off_still_returns_what_it_took() -> None:
    hold = PolicyHold(
        address=3, policy=Policy.HOT_PACK, since=NOW, means=BOTH, clear_since=NOW - DEFAULT_SETTLE
    )
    result = run(snapshot(2, 3), holds={3: hold}, settings=PolicySettings())
    assert [p.change for p in result.proposals] == [Change.reconnect(3)]


def test_holds_are_kept_and_read_back() -> None:
    result = run(snapshot(2, 3), [hot(3)])
    holds = taken({}, result.proposals[0], NOW, BOTH)
    assert holds[3].policy is Policy.HOT_PACK
    again = {a: PolicyHold.from_dict(h.as_dict()) for a, h in holds.items()}
    assert again == holds
    assert returned(holds, 3) == {}
    broken: object
    for broken in (None, [], {"address": "3"}, {**holds[3].as_dict(), "policy": "nobody"}):
        assert PolicyHold.from_dict(broken) is None
    naive = {**holds[3].as_dict(), "since": "2026-03-01T12:00:00"}
    assert PolicyHold.from_dict(naive) is None


def test_the_logbook_words() -> None:
    assert describe(Why.CRITICALLY_HOT, {"temperature": 61.0, "limit": 55.0}) == (
        "critically hot: 61.0 °C, limit 55.0 °C"
    )
    assert describe(Why.CLEARED, {"cleared_minutes": 10.0, "delta": 0.12}) == (
        "clear for 10 min, 0.12 V from the bus"
    )
    assert describe(Why.PROTECTION, {"protections": "discharge_overcurrent"}) == (
        "the BMS reports discharge_overcurrent"
    )


ADDRESSES = st.lists(st.integers(1, 8), min_size=1, max_size=8, unique=True)


@given(
    addresses=ADDRESSES,
    data=st.data(),
    minutes=st.integers(0, 60 * 24),
    enabled=st.frozensets(st.sampled_from(list(Policy))),
    means=st.sampled_from([BOTH, Means(charge=True, discharge=False)]),
)
def test_never_reconnects_what_a_user_isolated_nor_what_no_policy_took(
    addresses: list[int],
    data: st.DataObject,
    minutes: int,
    enabled: frozenset[Policy],
    means: Means,
) -> None:
    """Over random banks, conditions and holds, a reconnect is only ever
    proposed for a pack a policy holds, that the user did not isolate, by the
    policy that holds it; and nothing at all is proposed for a user's pack."""
    user = set(data.draw(st.lists(st.sampled_from(addresses), unique=True)))
    held = data.draw(st.lists(st.sampled_from(addresses), unique=True))
    holds = {
        a: PolicyHold(
            address=a,
            policy=data.draw(st.sampled_from(list(Policy))),
            since=NOW - timedelta(hours=1),
            means=means,
            clear_since=data.draw(
                st.none() | st.just(NOW - timedelta(minutes=data.draw(st.integers(0, 120))))
            ),
        )
        for a in held
    }
    answering = data.draw(st.lists(st.sampled_from(addresses), unique=True))
    protected = data.draw(st.lists(st.sampled_from(addresses), unique=True))
    hot_packs = data.draw(st.lists(st.sampled_from(addresses), unique=True))
    swinging = data.draw(st.lists(st.sampled_from(addresses), unique=True))
    snap = snapshot(*answering, protections={a: {"cell_overvoltage"} for a in protected})
    findings = [hot(a) for a in hot_packs] + [swing(a) for a in swinging]
    result = run(
        snap,
        findings,
        holds=holds,
        user=user,
        settings=PolicySettings(enabled=enabled),
        means=means,
        now=NOW + timedelta(minutes=minutes),
    )
    for proposal in result.proposals:
        assert proposal.address not in user
        if proposal.reconnect:
            assert proposal.address in holds
            policy = holds[proposal.address].policy
            assert proposal.policy is policy
            own = {
                Policy.BMS_PROTECTION: protected,
                Policy.HOT_PACK: hot_packs,
                Policy.LOOSE_CONNECTION: swinging,
            }
            assert proposal.address not in own[policy]
        else:
            assert proposal.address not in holds
            assert proposal.policy in enabled
    assert not set(result.holds) & user
    addresses_proposed = [p.address for p in result.proposals]
    assert len(addresses_proposed) == len(set(addresses_proposed))
