"""A pack's entity is skipped while nothing it shows moved: what it reads must be all it shows.

The coordinator says which fields of each pack's reading moved in a poll
(``moved_fields``) and an entity whose ``value_fn`` reads none of them is
not worked out again (entity.py). That is only right if the fields an
entity is said to read are all its value and attributes depend on: for
random pairs of readings, wherever none of them moved, the entity must
show exactly the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.rack_battery.bank.model import PackReading, fields_read, moved_fields
from custom_components.rack_battery.binary_sensor import BALANCING, PACK_BINARY_SENSORS
from custom_components.rack_battery.sensor import (
    PACK_DIAGNOSTIC_SENSORS,
    PACK_REPORTED_SENSORS,
    PACK_SENSORS,
    numbered_sensor,
)

CELLS = 16
PROBES = 4

# Every pack entity skipped on what it reads: a name and the functions it shows.
SKIPPED: list[tuple[str, frozenset[str], tuple[Callable[[PackReading], Any], ...]]] = []
for _description in (
    *PACK_SENSORS,
    *PACK_REPORTED_SENSORS,
    *PACK_DIAGNOSTIC_SENSORS,
    *(numbered_sensor("cell_voltage", n, CELLS) for n in range(1, CELLS + 2)),
    *(numbered_sensor("temperature", n, PROBES) for n in range(1, PROBES + 2)),
):
    _reads = _description.reads or fields_read(_description.value_fn)
    assert _reads is not None, _description.key
    SKIPPED.append((f"sensor {_description.key}", _reads, (_description.value_fn,)))
for _binary in (*PACK_BINARY_SENSORS, BALANCING):
    if _binary.about_findings or _binary.low_fn is not None:
        continue  # shown from more than the reading: never skipped
    _fns = (_binary.value_fn,) + (
        (_binary.attributes_fn,) if _binary.attributes_fn is not None else ()
    )
    _reads = fields_read(*_fns)
    assert _reads is not None, _binary.key
    SKIPPED.append((f"binary_sensor {_binary.key}", _reads, _fns))

maybe = st.one_of(st.none(), st.floats(-100, 100, allow_nan=False))
readings = st.builds(
    PackReading,
    address=st.just(1),
    voltage=maybe,
    current=maybe,
    soc=maybe,
    soh=maybe,
    remaining_capacity=maybe,
    full_capacity=maybe,
    design_capacity=maybe,
    cycles=st.one_of(st.none(), st.integers(0, 9000)),
    cell_voltages=st.lists(maybe, min_size=0, max_size=CELLS).map(tuple),
    temperatures=st.lists(maybe, min_size=0, max_size=PROBES).map(tuple),
    mosfet_temperature=maybe,
    charge_enabled=st.one_of(st.none(), st.booleans()),
    discharge_enabled=st.one_of(st.none(), st.booleans()),
    balancing=st.one_of(st.none(), st.booleans()),
    warnings=st.frozensets(st.sampled_from(["cell_overvoltage", "high_temperature"])),
    protections=st.frozensets(st.sampled_from(["discharge_overcurrent"])),
    charge_voltage_limit=maybe,
    charge_current_limit=maybe,
    discharge_current_limit=maybe,
    discharge_voltage_limit=maybe,
)


@st.composite
def pairs(draw: st.DrawFn) -> tuple[PackReading, PackReading]:
    """Return a reading and the next, with some of its fields (or single cells) moved."""
    old = draw(readings)
    other = draw(readings)
    names = [each.name for each in fields(PackReading) if each.name != "address"]
    moved = draw(st.lists(st.sampled_from(names), unique=True))
    new = replace(old, **{name: getattr(other, name) for name in moved})
    # One cell of the same pack moving, the others staying put.
    one_cell: bool = draw(st.booleans())
    if old.cell_voltages and one_cell:
        index = draw(st.integers(0, len(old.cell_voltages) - 1))
        cells = list(new.cell_voltages)
        if index < len(cells):
            cells[index] = draw(maybe)
            new = replace(new, cell_voltages=tuple(cells))
    return old, new


@settings(max_examples=400, deadline=None)
@given(pair=pairs())
def test_an_entity_shows_the_same_while_nothing_it_reads_moved(
    pair: tuple[PackReading, PackReading],
) -> None:
    """Wherever none of an entity's fields moved, its value and attributes are unchanged."""
    old, new = pair
    moved = moved_fields(old, new)
    for name, reads, fns in SKIPPED:
        if reads.isdisjoint(moved):
            assert [fn(old) for fn in fns] == [fn(new) for fn in fns], (name, reads, moved)


def test_moved_fields_names_the_cells_that_moved() -> None:
    """A reading worked out by hand: the voltage and cell 2 of 3 moved, nothing else."""
    old = PackReading(address=1, voltage=52.00, current=3.0, cell_voltages=(3.30, 3.31, 3.32))
    new = PackReading(address=1, voltage=52.01, current=3.0, cell_voltages=(3.30, 3.29, 3.32))
    assert moved_fields(old, new) == {"voltage", "cell_voltages", "cell_voltages[1]"}
    assert moved_fields(old, old) == frozenset()
    assert moved_fields(old, replace(old)) == frozenset()
    # A cell more or fewer: every cell counts as moved.
    fewer = replace(old, cell_voltages=(3.30, 3.31))
    assert moved_fields(old, fewer) == {
        "cell_voltages",
        "cell_voltages[0]",
        "cell_voltages[1]",
        "cell_voltages[2]",
    }


def test_fields_read_follows_properties_to_the_fields_behind_them() -> None:
    """A pack's power is read from its voltage and current; its highest temperature from all."""
    assert fields_read(lambda pack: pack.power) == frozenset({"voltage", "current"})
    assert fields_read(lambda pack: pack.temperature_max) == frozenset(
        {"temperatures", "mosfet_temperature"}
    )
    # Both branches count: the limit is read only where the voltage is known.
    assert fields_read(
        lambda pack: None if pack.voltage is None else pack.charge_voltage_limit
    ) == frozenset({"voltage", "charge_voltage_limit"})


def test_a_function_that_cannot_be_tried_is_asked_every_time() -> None:
    """One that fails on a made-up reading gets no fields: it is never skipped."""

    def fussy(pack: PackReading) -> float:
        if pack.voltage is not None and pack.voltage < 0:
            raise ValueError("no such pack")
        return pack.voltage or 0.0

    assert fields_read(fussy) is None


@pytest.mark.parametrize(("name", "reads", "fns"), SKIPPED, ids=[item[0] for item in SKIPPED])
def test_every_skipped_entity_reads_something(
    name: str, reads: frozenset[str], fns: tuple[Callable[[PackReading], Any], ...]
) -> None:
    """An entity said to read nothing would never be worked out again."""
    assert reads, name
