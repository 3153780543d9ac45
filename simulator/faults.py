"""Faults to inject into a simulated bank, each one undone as cleanly as it was done.

Each fault is a small object with ``apply(bank)`` and ``remove(bank)``, so a
scenario can inject it, watch the rules raise a finding, remove it and
watch the finding clear. Everything random is seeded: a scenario plays out
the same way every time.

- :class:`LooseTerminal`: the connection resistance jumps by tens of
  milliohms and the measured voltage jumps by a volt or more, as a terminal
  that makes and breaks contact does.
- :class:`CellImbalance`: one cell sits high and the others low.
- :class:`SocImbalance`: a pack at a different state of charge, as a pack
  charged on its own before it was added.
- :class:`HotPack`: a pack in a hot spot (beside an inverter, in the sun).
- :class:`Aging`: capacity fade and resistance growth, with cycles to match.
- :class:`Rebadged`: a pack of another model or firmware in the bank.
- :class:`FlakyLink`: a pack whose link cable drops replies at random.

Those are faults of the packs; what a line does to the bytes between a pack
and whoever asks it is in :mod:`simulator.wire_faults`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import random
from typing import Protocol

from .bank import CELLS, SimBank


class Fault(Protocol):
    """Something wrong with a bank, that can be put right again."""

    def apply(self, bank: SimBank) -> None:
        """Inject the fault."""

    def remove(self, bank: SimBank) -> None:
        """Undo it."""


def _resettle(bank: SimBank) -> None:
    """Share the load anew after a change to a pack, without moving the clock."""
    bank.step(0.0)


@dataclass(kw_only=True)
class LooseTerminal:
    """A terminal that makes and breaks contact.

    Its resistance adds to the pack's connection resistance (a loose lug
    adds tens of milliohms), and the voltage the BMS measures jumps by up to
    ``noise`` volts either way at every settle of the bank.
    """

    address: int
    extra_resistance: float = 0.05  # ohm
    noise: float = 1.2  # V, amplitude
    seed: int = 0
    _saved: tuple[float, float] | None = field(default=None, init=False, repr=False)

    def apply(self, bank: SimBank) -> None:
        """Loosen the terminal."""
        pack = bank.pack(self.address)
        self._saved = (pack.connection_resistance, pack.voltage_noise)
        pack.connection_resistance += self.extra_resistance
        pack.voltage_noise = self.noise
        pack.noise_rng = random.Random(self.seed)
        _resettle(bank)

    def remove(self, bank: SimBank) -> None:
        """Clean and torque the terminal."""
        if self._saved is None:
            return
        pack = bank.pack(self.address)
        pack.connection_resistance, pack.voltage_noise = self._saved
        self._saved = None
        _resettle(bank)


@dataclass(kw_only=True)
class CellImbalance:
    """One cell ``offset`` volts above the pack's mean, the others below it."""

    address: int
    cell: int = 0  # 0-based
    offset: float = 0.15  # V
    _saved: tuple[float, ...] | None = field(default=None, init=False, repr=False)

    def apply(self, bank: SimBank) -> None:
        """Unbalance the cells; they still sum to the pack voltage."""
        pack = bank.pack(self.address)
        self._saved = pack.cell_offsets
        others = -self.offset / (CELLS - 1)
        pack.cell_offsets = tuple(
            self.offset if index == self.cell else others for index in range(CELLS)
        )

    def remove(self, bank: SimBank) -> None:
        """Balance the cells again."""
        if self._saved is None:
            return
        bank.pack(self.address).cell_offsets = self._saved
        self._saved = None


@dataclass(kw_only=True)
class SocImbalance:
    """A pack at another state of charge than the rest (fraction, 0..1)."""

    address: int
    soc: float
    _saved: float | None = field(default=None, init=False, repr=False)

    def apply(self, bank: SimBank) -> None:
        """Set the pack's state of charge."""
        pack = bank.pack(self.address)
        self._saved = pack.soc
        pack.soc = self.soc
        _resettle(bank)

    def remove(self, bank: SimBank) -> None:
        """Bring the pack back to the mean of the others."""
        if self._saved is None:
            return
        others = [pack.soc for pack in bank.packs if pack.address != self.address]
        bank.pack(self.address).soc = sum(others) / len(others) if others else self._saved
        self._saved = None
        _resettle(bank)


@dataclass(kw_only=True)
class HotPack:
    """A pack in a hot spot: its surroundings, and so the pack, at ``ambient``."""

    address: int
    ambient: float = 52.0  # degC
    _saved: tuple[float, float] | None = field(default=None, init=False, repr=False)

    def apply(self, bank: SimBank) -> None:
        """Move the pack into the heat (it is there at once, not after an hour)."""
        pack = bank.pack(self.address)
        self._saved = (pack.ambient, pack.temperature)
        pack.ambient = self.ambient
        pack.temperature = self.ambient

    def remove(self, bank: SimBank) -> None:
        """Move the pack back, cooled to where it was."""
        if self._saved is None:
            return
        pack = bank.pack(self.address)
        pack.ambient, pack.temperature = self._saved
        self._saved = None


@dataclass(kw_only=True)
class Aging:
    """Years of use: capacity fades, resistance grows, cycles add up."""

    address: int
    capacity_fade: float = 0.25  # fraction of the design capacity lost
    resistance_growth: float = 1.0  # fraction added to the internal resistance
    cycles: int | None = 2900
    _saved: tuple[float, float, int] | None = field(default=None, init=False, repr=False)

    def apply(self, bank: SimBank) -> None:
        """Age the pack."""
        pack = bank.pack(self.address)
        self._saved = (pack.full_capacity, pack.internal_resistance, pack.cycles)
        pack.full_capacity = pack.design_capacity * (1.0 - self.capacity_fade)
        pack.internal_resistance *= 1.0 + self.resistance_growth
        if self.cycles is not None:
            pack.cycles = self.cycles
        _resettle(bank)

    def remove(self, bank: SimBank) -> None:
        """Replace the pack with one as young as it was."""
        if self._saved is None:
            return
        pack = bank.pack(self.address)
        pack.full_capacity, pack.internal_resistance, pack.cycles = self._saved
        self._saved = None
        _resettle(bank)


@dataclass(kw_only=True)
class Rebadged:
    """A pack of another model or firmware in the bank."""

    address: int
    model: str | None = None
    firmware: str | None = None
    _saved: tuple[str, str] | None = field(default=None, init=False, repr=False)

    def apply(self, bank: SimBank) -> None:
        """Swap the pack's identity."""
        pack = bank.pack(self.address)
        self._saved = (pack.model, pack.firmware)
        if self.model is not None:
            pack.model = self.model
        if self.firmware is not None:
            pack.firmware = self.firmware

    def remove(self, bank: SimBank) -> None:
        """Put the bank's own model and firmware back."""
        if self._saved is None:
            return
        pack = bank.pack(self.address)
        pack.model, pack.firmware = self._saved
        self._saved = None


@dataclass(kw_only=True)
class FlakyLink:
    """A pack whose link drops replies: call :meth:`tick` before every poll."""

    address: int
    failure_rate: float = 0.3
    seed: int = 0
    active: bool = field(default=False, init=False)
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Seed the draws."""
        self._rng = random.Random(self.seed)

    def apply(self, bank: SimBank) -> None:
        """Start dropping replies."""
        self.active = True
        self.tick(bank)

    def tick(self, bank: SimBank) -> None:
        """Decide whether the pack answers the next poll."""
        if self.active:
            bank.pack(self.address).online = self._rng.random() >= self.failure_rate

    def remove(self, bank: SimBank) -> None:
        """Mend the link."""
        self.active = False
        bank.put_on_bus(self.address)
