"""What the rules save at every poll changes nothing they find.

The swing of a pack's voltage and a pack's failed polls are counted as
samples come and go instead of over the whole window at every poll. These
tests drive both rules with random polls (random gaps, packs answering or
not, windows overflowing their bound) and check every figure against the
same figure worked out from the whole window. And a rule does not work
out the values of a calm pack that no finding follows; the last test runs
banks through random faults with and without that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
import statistics

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.rack_battery.bank.analysis import Thresholds, comms, voltage
from custom_components.rack_battery.bank.analysis.context import RuleContext
from custom_components.rack_battery.bank.model import BankSnapshot, PackReading
from simulator import faults
from simulator.bank import step_load

from .sim import START, Scenario, quiet_bank

ADDRESSES = (1, 2, 3)

# One poll: the seconds since the last, and each pack's voltage (None: no answer).
polls = st.lists(
    st.tuples(
        st.sampled_from((1, 10, 30, 200, 700, 4000)),
        st.tuples(*(st.one_of(st.none(), st.floats(40.0, 58.0)) for _ in ADDRESSES)),
    ),
    min_size=1,
    max_size=120,
)


def _context(now: datetime, volts: tuple[float | None, ...], thresholds: Thresholds) -> RuleContext:
    answered = {a: v for a, v in zip(ADDRESSES, volts, strict=True) if v is not None}
    snapshot = BankSnapshot(
        taken_at=now,
        readings={a: PackReading(address=a, voltage=v) for a, v in answered.items()},
        failed={a: "timeout" for a in ADDRESSES if a not in answered},
    )
    return RuleContext(snapshot=snapshot, identities={}, now=now, thresholds=thresholds)


def _in_time(
    polls: list[tuple[int, tuple[float | None, ...]]], module: object, bound_name: str, bound: int
) -> Iterator[tuple[datetime, tuple[float | None, ...]]]:
    """Yield each poll's time and voltages, the rule's bound on what it keeps set to ``bound``."""
    now = START
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, bound_name, bound)
        for gap, volts in polls:
            now += timedelta(seconds=gap)
            yield now, volts


@settings(max_examples=300, deadline=None)
@given(polls=polls, bound=st.sampled_from((3, 7, 720)))
def test_a_swing_is_the_range_of_the_deviations_in_the_window(
    polls: list[tuple[int, tuple[float | None, ...]]], bound: int
) -> None:
    thresholds = Thresholds()
    window = timedelta(minutes=thresholds.voltage_swing_window_minutes)
    swings = voltage.VoltageSwings()
    kept: dict[int, list[tuple[datetime, float]]] = {}
    for now, volts in _in_time(polls, voltage, "_SWING_SAMPLES", bound):
        answered = {a: v for a, v in zip(ADDRESSES, volts, strict=True) if v is not None}
        if len(answered) >= 2:
            everyone = statistics.median(answered.values())
            for address, value in answered.items():
                others = [v for a, v in answered.items() if a != address]
                reference = others[0] if len(answered) == 2 else everyone
                kept.setdefault(address, []).append((now, value - reference))
                kept[address] = kept[address][-bound:]
        expected = {}
        for address, history in kept.items():
            history[:] = [(when, d) for when, d in history if now - when <= window]
            if address in answered and len(history) >= 2:
                deviations = [d for _, d in history]
                expected[address] = (
                    round(max(deviations) - min(deviations), 3),
                    len(history),
                )
        observed = {
            o.address: (o.values["swing"], o.values["samples"])
            for o in swings.observe(_context(now, volts, thresholds))
        }
        assert observed == expected


@settings(max_examples=300, deadline=None)
@given(polls=polls, bound=st.sampled_from((4, 9, 2880)))
def test_an_error_rate_counts_the_failed_polls_in_the_window(
    polls: list[tuple[int, tuple[float | None, ...]]], bound: int
) -> None:
    thresholds = Thresholds(error_rate_min_polls=1)
    window = timedelta(minutes=thresholds.error_rate_window_minutes)
    rule = comms.Communication()
    kept: dict[int, list[tuple[datetime, bool]]] = {}
    for now, volts in _in_time(polls, comms, "_MAX_POLLS", bound):
        expected = {}
        for address, value in zip(ADDRESSES, volts, strict=True):
            history = kept.setdefault(address, [])
            history.append((now, value is not None))
            history[:] = [(when, ok) for when, ok in history[-bound:] if now - when <= window]
            failed = sum(1 for _, ok in history if not ok)
            expected[address] = (failed, len(history))
        observed = {
            o.address: (o.values["failed"], o.values["polls"])
            for o in rule.observe(_context(now, volts, thresholds))
            if o.rule == comms.PACK_ERROR_RATE
        }
        assert observed == expected


FAULTS: dict[str, Callable[[int], faults.Fault]] = {
    "loose": lambda address: faults.LooseTerminal(address=address, seed=address),
    "cell": lambda address: faults.CellImbalance(address=address),
    "hot": lambda address: faults.HotPack(address=address),
    "aging": lambda address: faults.Aging(address=address),
    "flaky": lambda address: faults.FlakyLink(address=address, seed=address),
}
# When (in polls) a fault comes to a pack, and how long it stays.
schedules = st.lists(
    st.tuples(
        st.sampled_from(sorted(FAULTS)),
        st.integers(1, 4),
        st.integers(0, 150),
        st.integers(5, 120),
    ),
    max_size=4,
)


def _findings_over(schedule: list[tuple[str, int, int, int]]) -> list[object]:
    """Run a bank through its faults; return every poll's findings, raised, cleared and open."""
    scenario = Scenario(quiet_bank(4, seed=3))
    scenario.bank.load = step_load([(0, 0.0), (600, -40.0), (1800, 25.0), (3600, -60.0)])
    active = {index: FAULTS[kind](address) for index, (kind, address, _, _) in enumerate(schedule)}
    seen: list[object] = []
    for poll in range(240):
        for index, (_, _, start, length) in enumerate(schedule):
            if poll == start:
                active[index].apply(scenario.bank)
            elif poll == start + length:
                active[index].remove(scenario.bank)
        result = scenario.step()
        seen.append(
            (
                [(f.id, f.severity, dict(f.values), f.since) for f in result.open],
                [f.id for f in result.raised],
                [f.id for f in result.cleared],
                [(f.id, f.severity) for f in result.changed],
            )
        )
    return seen


@settings(max_examples=15, deadline=None)
@given(schedule=schedules)
def test_rules_that_skip_calm_packs_find_what_they_found_before(
    schedule: list[tuple[str, int, int, int]],
) -> None:
    """A rule skips a calm pack whose finding is neither open nor pending.

    Run with the skip and with every observation made, a bank through
    random faults opens, raises, clears and changes the same findings, with
    the same values, at every poll.
    """
    skipping = _findings_over(schedule)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RuleContext, "changes_nothing", lambda *_: False)
        everything = _findings_over(schedule)
    assert skipping == everything
