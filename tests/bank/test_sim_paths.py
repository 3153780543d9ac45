"""The simulator's charge and discharge paths, join inrush, BMS trip and held limits.

Two packs of 20 mOhm each (12 internal + 8 connection) make the numbers
easy to work by hand; the guard is then asked about the same joins and must
refuse exactly those the simulated BMS trips on.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from custom_components.rack_battery.bank.control import (
    Change,
    ControlSettings,
    Reason,
    bank_view,
    judge,
)
from simulator.bank import CELLS, HOLD_SECONDS, SimBank, SimPack, cell_ocv, constant_load
from simulator.readings import snapshot_of

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def pack(address: int, soc: float) -> SimPack:
    return SimPack(
        address=address,
        serial=f"P{address}",
        internal_resistance=0.012,
        connection_resistance=0.008,
        soc=soc,
    )


def bank_of(*socs: float, load: float = 0.0) -> SimBank:
    return SimBank(
        packs=[pack(i, soc) for i, soc in enumerate(socs, start=1)], load=constant_load(load)
    )


def test_an_open_charge_path_still_discharges() -> None:
    bank = bank_of(0.5, 0.5, load=40.0)
    # Alike packs share 40 A of discharge: 20 A each.
    assert bank.pack(1).current == pytest.approx(-20.0)
    bank.set_paths(1, charge=False)
    assert bank.pack(1).current == pytest.approx(-20.0)
    # Charging at 40 A, the open charge path blocks pack 1: pack 2 takes it all.
    bank.load = constant_load(-40.0)
    bank.step(1)
    assert bank.pack(1).current == 0.0
    assert bank.pack(2).current == pytest.approx(40.0)


def test_an_open_discharge_path_still_charges() -> None:
    bank = bank_of(0.5, 0.5, load=-40.0)
    bank.set_paths(2, discharge=False)
    assert bank.pack(2).current == pytest.approx(20.0)
    bank.load = constant_load(40.0)
    bank.step(1)
    assert bank.pack(2).current == 0.0
    assert bank.pack(1).current == pytest.approx(-40.0)


def test_a_join_carries_its_inrush() -> None:
    bank = bank_of(0.5, 0.3)
    bank.set_paths(2, charge=False, discharge=False)
    # 16 cells: 3.30 V and 3.28 V, 52.80 V against 52.48 V: 0.32 V across
    # 20 + 20 mOhm in series is 8 A into pack 2.
    delta = CELLS * (cell_ocv(0.5) - cell_ocv(0.3))
    assert delta == pytest.approx(0.32)
    bank.set_paths(2, charge=True, discharge=True)
    assert bank.pack(2).last_inrush == pytest.approx(8.0)
    assert not bank.pack(2).protections


def test_a_bms_trips_when_the_inrush_exceeds_its_limit() -> None:
    bank = bank_of(0.99, 0.2)
    bank.set_paths(2, charge=False, discharge=False)
    # 54.4 V against 52.0 V: 2.4 V / 40 mOhm = 60 A, over the 50 A charge limit.
    bank.set_paths(2, charge=True, discharge=True)
    joined = bank.pack(2)
    assert joined.last_inrush == pytest.approx(60.0)
    assert "charge_overcurrent" in joined.protections
    assert not joined.charge_path
    assert not joined.discharge_path
    assert joined.current == 0.0
    # Latched: asked again, it stays open until the trip is reset.
    bank.set_paths(2, discharge=True)
    assert not joined.discharge_path
    bank.reset_trip(2)
    bank.set_paths(2, discharge=True)
    assert bank.pack(2).discharge_path
    # Below the bus with its charge path open, nothing flows into it.
    assert bank.pack(2).current == 0.0


def test_a_held_limit_lapses_after_ten_seconds_without_a_repeat() -> None:
    bank = bank_of(0.5, 0.5, load=-40.0)
    bank.set_hold(1, 0.0, 100.0)
    assert not bank.pack(1).charge_on
    assert bank.pack(2).current == pytest.approx(40.0)
    bank.step(HOLD_SECONDS - 1)
    assert bank.pack(1).hold is not None
    bank.set_hold(1, 0.0, 100.0)  # sent again: ten more seconds
    bank.step(HOLD_SECONDS - 1)
    assert bank.pack(1).hold is not None
    bank.step(2)
    assert bank.pack(1).hold is None
    # Charging again: about half the 40 A (pack 2 has taken a little more charge).
    assert bank.pack(1).current == pytest.approx(20.0, abs=0.5)


@pytest.mark.parametrize(
    ("high", "low", "ohms", "expected"),
    [
        # 0.32 V over 20 + 10 mOhm: 10.7 A, under the 50 A charge limit.
        (0.5, 0.3, 0.020, Reason.ALLOWED),
        # 0.8 V over 8 + 4 mOhm: 66.7 A, over it; the simulated BMS trips.
        (0.9, 0.5, 0.008, Reason.INRUSH),
        # 0.32 V over 8 + 4 mOhm: 26.7 A.
        (0.5, 0.3, 0.008, Reason.ALLOWED),
        # 0.64 V over 8 + 4 mOhm: 53.3 A, just over.
        (0.7, 0.3, 0.008, Reason.INRUSH),
    ],
)
def test_the_guard_refuses_exactly_the_joins_that_trip(
    high: float, low: float, ohms: float, expected: Reason
) -> None:
    bank = bank_of(high, high, low)
    for each in bank.packs:
        each.internal_resistance = ohms * 0.6
        each.connection_resistance = ohms * 0.4
    bank.set_paths(3, charge=False, discharge=False)
    settings = ControlSettings(max_join_voltage=1.5)
    view = bank_view(
        snapshot_of(bank, NOW),
        NOW,
        settings,
        resistances={p.address: p.resistance for p in bank.packs},
    )
    decision = judge(Change.reconnect(3), view, NOW, settings)
    assert decision.reason is expected
    bank.set_paths(3, charge=True, discharge=True)
    tripped = "charge_overcurrent" in bank.pack(3).protections
    assert decision.allowed is not tripped
