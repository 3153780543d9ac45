"""Hours of samples: each hour handed over once, with its mean, lowest and highest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
import json

import pytest

from custom_components.rack_battery.bank.hourly import HourlyAggregator

NINE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_an_hour_is_handed_over_when_the_next_begins() -> None:
    """Samples of 09:xx come out as one hour at the first poll after 10:00."""
    hours = HourlyAggregator()
    assert hours.add(NINE + timedelta(minutes=5), {"cell_1": 3.30, "probe_1": 25.0}) == []
    assert hours.add(NINE + timedelta(minutes=35), {"cell_1": 3.32, "probe_1": None}) == []
    assert hours.add(NINE + timedelta(minutes=59), {"cell_1": 3.34}) == []
    [closed] = hours.add(NINE + timedelta(minutes=61), {"cell_1": 3.40})
    assert closed.start == NINE
    cell = closed.series["cell_1"]
    assert cell.mean == pytest.approx(3.32)
    assert (cell.min, cell.max, cell.samples) == (3.30, 3.34, 3)
    # An unknown value is left out, not counted as a number.
    assert closed.series["probe_1"].samples == 1
    assert hours.last_closed == NINE


def test_a_restart_keeps_the_open_hour_and_never_repeats_one() -> None:
    """The hour a restart cuts in two comes out once, with both halves; an
    hour already handed over is not handed over again."""
    hours = HourlyAggregator()
    hours.add(NINE + timedelta(minutes=50), {"cell_1": 3.30})
    hours.add(NINE + timedelta(minutes=70), {"cell_1": 3.20})  # closes 09:00
    saved = json.loads(json.dumps(hours.to_dict()))

    again, lost = HourlyAggregator.from_dict(saved)
    assert lost == []
    again.add(NINE + timedelta(minutes=80), {"cell_1": 3.40})
    # A clock set back into an hour already written adds nothing.
    again.add(NINE + timedelta(minutes=55), {"cell_1": 9.99})
    [closed] = again.add(NINE + timedelta(minutes=125), {"cell_1": 3.0})
    assert closed.start == NINE + timedelta(hours=1)
    assert closed.series["cell_1"].mean == pytest.approx(3.30)
    assert closed.series["cell_1"].samples == 2

    # The state saved before the 10:00 hour closed: it closes 10:00 once.
    older, _ = HourlyAggregator.from_dict(saved)
    assert [hour.start for hour in older.close()] == [NINE + timedelta(hours=1)]
    assert older.close() == []


@pytest.mark.parametrize(
    "stored",
    [
        "nonsense",
        {"version": 99},
        {"version": 1, "last_closed": "yesterday", "open_hour": None, "open": {}},
        {
            "version": 1,
            "last_closed": None,
            "open_hour": "2026-03-02T09:00:00+00:00",
            "open": {"cell_1": [0, 0, 0, 0], "cell_2": [2, 6.6, 3.4, 3.2]},
        },
    ],
)
def test_a_damaged_state_is_dropped_with_a_word(stored: object) -> None:
    """What cannot be read is named, and the rest starts afresh."""
    hours, lost = HourlyAggregator.from_dict(stored)
    assert lost
    assert hours.close() == []
