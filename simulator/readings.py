"""What a BMS would report for the simulated packs, in the bank model's units.

The rules engine and the benchmarks take readings, not wire bytes; these
give them the simulator's truth without a protocol in between.
"""

from __future__ import annotations

from datetime import datetime

from custom_components.rack_battery.bank.model import BankSnapshot, PackReading

from .bank import SimBank, SimPack


def reading_of(pack: SimPack) -> PackReading:
    """Return what a BMS would report for a simulated pack, in the model's units."""
    return PackReading(
        address=pack.address,
        voltage=pack.voltage,
        current=pack.current,
        soc=100.0 * pack.soc,
        soh=pack.soh,
        remaining_capacity=pack.remaining_capacity,
        full_capacity=pack.full_capacity,
        design_capacity=pack.design_capacity,
        cycles=pack.cycles,
        cell_voltages=pack.cell_voltages,
        temperatures=pack.cell_temperatures,
        mosfet_temperature=pack.mosfet_temperature,
        charge_enabled=pack.charge_on,
        discharge_enabled=pack.discharge_on,
    )


def snapshot_of(bank: SimBank, now: datetime) -> BankSnapshot:
    """Return the bank as one poll would see it: packs off the bus are failed."""
    readings = {pack.address: reading_of(pack) for pack in bank.packs if pack.online}
    failed = {pack.address: "no answer" for pack in bank.packs if not pack.online}
    return BankSnapshot(taken_at=now, readings=readings, failed=failed)
