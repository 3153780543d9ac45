"""The simulator's faults: each does what it says, seeded, and undoes cleanly."""

from __future__ import annotations

import pytest

from simulator import faults
from simulator.bank import SimBank, constant_load, make_bank


def state(bank: SimBank) -> list[tuple[object, ...]]:
    return [
        (
            p.connection_resistance,
            p.internal_resistance,
            p.full_capacity,
            p.cycles,
            p.cell_offsets,
            p.ambient,
            p.temperature,
            p.model,
            p.firmware,
            p.voltage_noise,
            p.online,
        )
        for p in bank.packs
    ]


@pytest.mark.parametrize(
    "fault",
    [
        faults.LooseTerminal(address=2),
        faults.CellImbalance(address=2),
        faults.HotPack(address=2),
        faults.Aging(address=2),
        faults.Rebadged(address=2, model="X", firmware="Y"),
        faults.FlakyLink(address=2, failure_rate=1.0),
    ],
)
def test_remove_puts_the_pack_back(fault: faults.Fault) -> None:
    bank = make_bank(3)
    before = state(bank)
    fault.apply(bank)
    assert state(bank) != before
    fault.remove(bank)
    assert state(bank) == before
    fault.remove(bank)  # removing twice is harmless
    assert state(bank) == before


def test_a_loose_terminal_adds_resistance_and_seeded_noise_of_a_volt() -> None:
    def voltages(seed: int) -> list[float]:
        bank = make_bank(3, load=constant_load(30.0))
        faults.LooseTerminal(address=2, extra_resistance=0.04, noise=1.0, seed=seed).apply(bank)
        out = []
        for _ in range(50):
            bank.step(10)
            out.append(bank.pack(2).voltage - bank.pack(1).voltage)
        return out

    first = voltages(3)
    assert first == voltages(3)  # repeatable
    assert first != voltages(4)
    assert max(first) - min(first) >= 1.0
    assert max(abs(v) for v in first) <= 1.0 + 0.2

    bank = make_bank(3, load=constant_load(30.0))
    before = bank.pack(2).resistance
    share = bank.pack(2).current / sum(p.current for p in bank.packs)
    faults.LooseTerminal(address=2, extra_resistance=0.04, noise=0.0).apply(bank)
    assert bank.pack(2).resistance == pytest.approx(before + 0.04)
    assert bank.pack(2).current / sum(p.current for p in bank.packs) < share / 2


def test_noise_leaves_the_cells_balanced_and_other_packs_clean() -> None:
    bank = make_bank(3)
    faults.LooseTerminal(address=2, noise=1.5).apply(bank)
    bank.step(10)
    pack = bank.pack(2)
    assert sum(pack.cell_voltages) == pytest.approx(pack.voltage)
    assert bank.pack(1).voltage_error == 0.0
    assert bank.pack(3).voltage_error == 0.0


def test_cell_imbalance_keeps_the_pack_voltage() -> None:
    bank = make_bank(2)
    pack = bank.pack(1)
    voltage = pack.voltage
    faults.CellImbalance(address=1, cell=3, offset=0.2).apply(bank)
    assert sum(pack.cell_voltages) == pytest.approx(voltage)
    cells = pack.cell_voltages
    assert cells.index(max(cells)) == 3
    assert max(cells) - min(cells) == pytest.approx(0.2 + 0.2 / 15)


def test_soc_imbalance_moves_charge_and_comes_back_to_the_mean() -> None:
    bank = make_bank(3)
    fault = faults.SocImbalance(address=1, soc=0.95)
    fault.apply(bank)
    assert bank.pack(1).soc == 0.95
    assert bank.pack(1).current < -5  # it feeds the others at rest
    fault.remove(bank)
    assert bank.pack(1).soc == pytest.approx((bank.pack(2).soc + bank.pack(3).soc) / 2)


def test_aging_fades_capacity_and_grows_resistance() -> None:
    bank = make_bank(2)
    pack = bank.pack(2)
    resistance = pack.internal_resistance
    faults.Aging(address=2, capacity_fade=0.3, resistance_growth=0.5, cycles=2500).apply(bank)
    assert pack.soh == pytest.approx(70.0)
    assert pack.internal_resistance == pytest.approx(1.5 * resistance)
    assert pack.cycles == 2500


def test_flaky_link_drops_about_its_rate() -> None:
    bank = make_bank(2)
    link = faults.FlakyLink(address=2, failure_rate=0.25, seed=1)
    link.apply(bank)
    answered = 0
    for _ in range(400):
        link.tick(bank)
        answered += bank.pack(2).online
    assert 0.65 < answered / 400 < 0.85
    link.remove(bank)
    link.tick(bank)
    assert bank.pack(2).online
