"""What every rule is handed: the snapshot, who the packs are, the time, the limits."""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ..model import BankSnapshot, PackIdentity, PackReading
from .findings import Severity, finding_id
from .thresholds import Thresholds


@dataclass(frozen=True, kw_only=True)
class RuleContext:
    """One update of the analyzer, as a rule sees it.

    ``open`` holds the severity of every finding that is open now, so a rule
    can apply hysteresis: a finding that is open is held at its clear level,
    one that is not must reach its raise level.
    """

    snapshot: BankSnapshot
    identities: Mapping[int, PackIdentity]
    now: datetime
    thresholds: Thresholds
    open: Mapping[str, Severity] = field(default_factory=dict)
    previous: BankSnapshot | None = None
    # The findings the analyzer follows, open or pending, by id. None: every
    # observation counts (a rule run on its own reports on every pack).
    followed: Container[str] | None = None

    def current(self, rule: str, address: int | None = None) -> Severity | None:
        """Return the severity a rule's finding is open at, or None."""
        return self.open.get(finding_id(rule, address))

    def changes_nothing(self, rule: str, address: int | None, severity: Severity | None) -> bool:
        """Return whether an observation would change nothing, so need not be made.

        That is a calm one about a finding neither open nor pending: the
        analyzer would throw it away. A rule skips working out its values.
        """
        return (
            severity is None
            and self.followed is not None
            and finding_id(rule, address) not in self.followed
        )

    @property
    def readings(self) -> Mapping[int, PackReading]:
        """Return the readings of the packs that answered."""
        return self.snapshot.readings

    @property
    def members(self) -> set[int]:
        """Return every pack the bank is known to have, answering or not."""
        return set(self.identities) | set(self.snapshot.readings) | set(self.snapshot.failed)

    def capacity(self, address: int) -> float | None:
        """Return a pack's capacity in Ah: what it holds now, else what it was built for.

        A pack's share of the bank's work follows what it can hold, so the
        full (aged) capacity comes first; the design capacity stands in for a
        BMS that does not report one.
        """
        reading = self.snapshot.readings.get(address)
        if reading is not None:
            for value in (reading.full_capacity, reading.design_capacity):
                if value is not None and value > 0:
                    return value
        identity = self.identities.get(address)
        if identity is not None and identity.design_capacity:
            return identity.design_capacity
        return None
