"""What the paced-line tests share: a bank with gaps between its packs, and who was asked."""

from __future__ import annotations

from dataclasses import replace

from custom_components.rack_battery.protocol.linkstats import LinkStats
from simulator.bank import PACE_PACK, SimBank, constant_load, make_bank


def bank_at(addresses: tuple[int, ...]) -> SimBank:
    """Return a PACE bank of packs at the given addresses, with gaps between them."""
    packs = make_bank(len(addresses), load=constant_load(20.0), identity=PACE_PACK).packs
    return SimBank(
        packs=[
            replace(pack, address=address) for pack, address in zip(packs, addresses, strict=True)
        ],
        load=constant_load(20.0),
    )


def asked(stats: LinkStats) -> dict[int, int]:
    """Return how many requests each address was sent."""
    return {address: pack.requests for address, pack in stats.packs.items()}
