"""Drive the analyzer from the simulator: snapshots of a SimBank, and a clock to move.

The simulator keeps its own clock (seconds); the analyzer is handed
``now``. A :class:`Scenario` moves both together, one poll at a time, and
keeps every finding raised and cleared along the way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from custom_components.rack_battery.bank.analysis import (
    AnalysisResult,
    BankAnalyzer,
    Finding,
    Thresholds,
)
from custom_components.rack_battery.bank.model import BankSnapshot, PackIdentity, PackReading
from simulator.bank import SimBank, constant_load, make_bank
from simulator.readings import snapshot_of

START = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def identities_of(bank: SimBank, family: str = "pylontech_rs485") -> dict[int, PackIdentity]:
    """Return what each pack says about itself."""
    return {
        pack.address: PackIdentity(
            address=pack.address,
            family=family,
            manufacturer=pack.manufacturer,
            model=pack.model,
            serial=pack.serial,
            firmware=pack.firmware,
            cell_count=len(pack.cell_offsets),
            design_capacity=pack.design_capacity,
        )
        for pack in bank.packs
    }


def quiet_bank(count: int = 4, *, seed: int = 1, soc: float = 0.6, **kwargs: object) -> SimBank:
    """Return a healthy bank whose packs hold the same charge, so nothing flows at rest."""
    bank = make_bank(count, seed=seed, **kwargs)  # type: ignore[arg-type]
    for pack in bank.packs:
        pack.soc = soc
    bank.load = constant_load(0.0)
    bank.step(0.0)
    return bank


@dataclass
class Scenario:
    """A simulated bank, an analyzer, and one clock for both."""

    bank: SimBank
    thresholds: Thresholds = field(default_factory=Thresholds)
    now: datetime = START
    poll: timedelta = timedelta(seconds=30)
    family: str = "pylontech_rs485"
    analyzer: BankAnalyzer = field(init=False)
    before_poll: list[Callable[[SimBank], None]] = field(default_factory=list)
    raised: list[Finding] = field(default_factory=list)
    cleared: list[Finding] = field(default_factory=list)
    last: AnalysisResult = field(default_factory=AnalysisResult)

    def __post_init__(self) -> None:
        self.analyzer = BankAnalyzer(self.thresholds)

    def step(self) -> AnalysisResult:
        """Let one poll interval pass, then poll and analyze."""
        self.bank.step(self.poll.total_seconds())
        self.now += self.poll
        for hook in self.before_poll:
            hook(self.bank)
        self.last = self.analyzer.update(
            snapshot_of(self.bank, self.now), identities_of(self.bank, self.family), self.now
        )
        self.raised.extend(self.last.raised)
        self.cleared.extend(self.last.cleared)
        return self.last

    def run(self, duration: timedelta) -> AnalysisResult:
        """Poll for a while; return the last result."""
        end = self.now + duration
        while self.now < end:
            self.step()
        return self.last

    def run_until(self, condition: Callable[[AnalysisResult], bool], limit: timedelta) -> timedelta:
        """Poll until a condition holds; return how long it took (fail past the limit)."""
        start = self.now
        while self.now - start < limit:
            if condition(self.step()):
                return self.now - start
        raise AssertionError(f"condition not met within {limit}")

    def open(self, finding_id: str) -> Finding | None:
        """Return an open finding by id."""
        return next((f for f in self.last.open if f.id == finding_id), None)

    def open_ids(self) -> set[str]:
        """Return the ids of every open finding."""
        return {finding.id for finding in self.last.open}


def ids(findings: Iterable[Finding]) -> set[str]:
    """Return the ids of findings."""
    return {finding.id for finding in findings}


def snap(
    now: datetime, packs: Mapping[int, Mapping[str, Any]], failed: Iterable[int] = ()
) -> BankSnapshot:
    """Return a snapshot built by hand: ``{address: {field: value}}``."""
    return BankSnapshot(
        taken_at=now,
        readings={
            address: PackReading(address=address, **fields) for address, fields in packs.items()
        },
        failed={address: "timeout" for address in failed},
    )


def volts(*voltages: float) -> dict[int, dict[str, Any]]:
    """Return packs 1.. with these voltages and nothing else."""
    return {index + 1: {"voltage": voltage} for index, voltage in enumerate(voltages)}
