"""A short soak: two thousand polls on every wire with random faults leave nothing behind.

``scripts/soak`` runs the same with a hundred thousand polls and prints the
figures; this asserts them by count, never by time.
"""

from __future__ import annotations

import logging

import pytest

from simulator.soak import MEMORY_SLACK, run_soak

POLLS = 2000


async def test_polls_with_faults_leave_nothing_behind(caplog: pytest.LogCaptureFixture) -> None:
    """Tasks, descriptors, sockets and the bus queue end where they began; memory stays flat."""
    # The client libraries log every fault; the counts below are what matter.
    caplog.set_level(logging.CRITICAL)
    report = await run_soak(POLLS, seed=7)
    assert report.polls >= POLLS
    assert report.faults_played > 0, "the soak played no fault"
    # Every wire was polled, not just the fastest.
    assert all(count > 0 for count in report.per_wire.values()), report.per_wire
    assert report.end.tasks <= report.start.tasks, report.lines()
    assert report.end.fds <= report.start.fds, report.lines()
    assert report.end.sockets <= report.start.sockets, report.lines()
    assert report.end.queue <= report.start.queue, report.lines()
    assert report.end.memory - report.start.memory <= MEMORY_SLACK, report.lines()
