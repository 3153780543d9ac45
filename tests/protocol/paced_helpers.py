"""What the paced-line tests share: a bank with gaps between its packs, and who was asked."""

from __future__ import annotations

from dataclasses import replace

from custom_components.rack_battery.protocol.discovery import Discovery
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


def assert_every_pack_found_and_each_empty_address_asked_once(
    found: Discovery | None, bank: SimBank, stats: LinkStats, empty: list[int]
) -> None:
    """Check a scan: every pack of the bank found in order, each empty address given up at once.

    An empty address is asked once (no retry on silence) and times out once;
    no pack missed a reply.
    """
    assert found is not None
    present = [pack.address for pack in bank.packs]
    assert [pack.address for pack in found.packs] == present
    assert [pack.serial for pack in found.packs] == [pack.serial for pack in bank.packs]
    requests = asked(stats)
    assert {address: requests[address] for address in empty} == dict.fromkeys(empty, 1)
    assert all(stats.pack(address).timeouts == 1 for address in empty)
    assert all(stats.pack(address).timeouts == 0 for address in present)
