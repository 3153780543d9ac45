"""The simulator's wire faults, as a test or a developer at the command line sets them."""

from __future__ import annotations

import asyncio

import pytest

from simulator.__main__ import parse_args, play_faults
from simulator.wire_faults import WireFault, WireFaults


def test_fault_flags_name_a_pack_and_a_fault() -> None:
    """`--fault ADDRESS=FAULT` is read as given, repeatable, with a cycle."""
    args = parse_args(
        ["--protocol", "seplos-v2", "--fault", "2=late", "--fault", "3=echo", "--fault-cycle", "30"]
    )
    assert args.fault == [(2, WireFault.LATE), (3, WireFault.ECHO)]
    assert args.fault_cycle == 30


@pytest.mark.parametrize("given", ["9=late", "2=bogus", "late"])
def test_fault_flags_refuse_what_is_not_there(given: str) -> None:
    """A pack the bank does not have, or a fault that does not exist, is refused."""
    with pytest.raises(SystemExit):
        parse_args(["--packs", "4", "--fault", given])


async def test_a_fault_cycle_puts_faults_on_and_takes_them_off() -> None:
    """With a cycle, the faults go on, come off, and go on again."""
    wire = WireFaults()
    seen: list[dict[int, WireFault]] = []
    three = asyncio.Event()

    def changed() -> None:
        seen.append(dict(wire.packs))
        if len(seen) >= 3:
            three.set()

    wire.watch(changed)
    task = asyncio.create_task(play_faults(wire, [(2, WireFault.SILENCE)], 0.01))
    await three.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert seen[:3] == [{2: WireFault.SILENCE}, {}, {2: WireFault.SILENCE}]


def test_a_one_shot_fault_spoils_one_reply_and_mends_itself() -> None:
    """One missed reply, then the pack answers again, with the fault gone."""
    wire = WireFaults()
    wire.inject(1, WireFault.ONE_SHOT)

    def nothing() -> None:
        return None

    first = wire.deliver(1, b"q", b"reply", foreign=nothing, misfunction=nothing)
    second = wire.deliver(1, b"q", b"reply", foreign=nothing, misfunction=nothing)
    assert first.chunks == ()
    assert second.chunks == ((0.0, b"reply"),)
    assert wire.packs == {}
    assert wire.spoiled == {1: 1}
