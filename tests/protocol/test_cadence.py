"""The slow cadence: when a pack's slowly changing values are due, and what stays in between."""

from __future__ import annotations

from custom_components.rack_battery.protocol.cadence import SLOW_READ_INTERVAL, SlowReads


def test_due_on_first_poll_then_once_an_interval() -> None:
    now = [0.0]
    reads: SlowReads[str] = SlowReads(clock=lambda: now[0])
    assert reads.due(2)
    assert reads.get(2) is None
    reads.store(2, "limits")
    assert not reads.due(2)
    now[0] += SLOW_READ_INTERVAL - 0.5
    assert not reads.due(2)
    assert reads.get(2) == "limits"
    now[0] += 0.5
    assert reads.due(2)
    # Another pack keeps its own time.
    assert reads.due(3)


def test_a_pack_that_returns_is_read_afresh_keeping_its_values_until_then() -> None:
    now = [0.0]
    reads: SlowReads[str] = SlowReads(clock=lambda: now[0])
    reads.store(2, "before")
    reads.expire(2)  # silent, or written to
    assert reads.due(2)
    assert reads.get(2) == "before"
    reads.store(2, "after")
    assert not reads.due(2)
    reads.forget(2)
    assert reads.due(2)
    assert reads.get(2) is None
