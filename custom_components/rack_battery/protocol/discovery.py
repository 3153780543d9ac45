"""Find a bank on a bus: which family answers, and which packs are there.

Nothing on an RS485 line announces itself: the only way to learn what is
there is to ask every address that a family allows and see who answers. An
address nobody holds costs a full response timeout (a gateway may answer at
once with "target silent", a serial line never does), so a scan is slow by
nature, and reports its progress as it goes. That timeout is worked out
from the line's speed and the family's documented answer time where the
speed is known (``timing.py``), and an empty address is asked once. Where a
family's bus can say which addresses hold packs (a Pylontech master counts
its group, a Seplos V3 master flags the packs online), the driver narrows
the scan to those first (``BmsDriver.scan_addresses``); PACE's 0x90 only
answers for the address asked, so a PACE ASCII scan asks it first, as the
shortest question, at every address.

That question and each identity read take a turn of their own on the bus,
so banks already running on the same bus keep polling while a scan walks
the addresses.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from ..bank.model import PackIdentity
from .bus import Bus
from .catalog import FAMILIES
from .connection import ConnectionSpec
from .drivers.base import BmsDriver
from .errors import FrameError, PackNotResponding

# Told the share of the scan done so far, from 0 to 1.
type ProgressCallback = Callable[[float], None]


@dataclass(frozen=True, kw_only=True)
class Discovery:
    """What a scan found: the family that answered and its packs, by address."""

    family: str
    packs: tuple[PackIdentity, ...]


def driver_on(bus: Bus, spec: ConnectionSpec, family: str) -> BmsDriver:
    """Return a family's driver over the bus's shared transport for the spec's wire."""
    info = FAMILIES[family]
    if spec.wire not in info.wires:
        raise ValueError(f"{info.name} does not speak on {spec.wire}")
    return info.driver(bus.transport(spec))


async def read_identity(bus: Bus, driver: BmsDriver, address: int) -> PackIdentity | None:
    """Ask one address who is there, in a turn of its own; None if nobody answers.

    A garbled reply counts as nobody: a pack of another family can answer a
    request it does not understand with something that is no identity.
    """
    async with bus.turn():
        try:
            return await driver.read_identity(address)
        except (PackNotResponding, FrameError):
            return None


async def scan_plan(bus: Bus, driver: BmsDriver, *, skip: Collection[int] = ()) -> list[int]:
    """Return the addresses a scan should ask, except ``skip``, in a turn of its own.

    Raises BusUnavailable when the bus itself cannot be reached.
    """
    async with bus.turn():
        addresses = await driver.scan_addresses()
    return [address for address in addresses if address not in skip]


async def _identify(
    bus: Bus,
    driver: BmsDriver,
    addresses: Sequence[int],
    progress: ProgressCallback | None,
) -> list[PackIdentity]:
    """Ask each address who is there and return those who answered."""
    found: list[PackIdentity] = []
    for done, address in enumerate(addresses, 1):
        if (identity := await read_identity(bus, driver, address)) is not None:
            found.append(identity)
        if progress is not None:
            progress(done / len(addresses))
    return found


async def find_packs(
    bus: Bus,
    spec: ConnectionSpec,
    family: str,
    *,
    skip: Collection[int] = (),
    progress: ProgressCallback | None = None,
) -> list[PackIdentity]:
    """Ask every address worth asking for a family, except ``skip``; return who answered.

    Raises BusUnavailable when the bus itself cannot be reached.
    """
    driver = driver_on(bus, spec, family)
    await driver.connect()
    addresses = await scan_plan(bus, driver, skip=skip)
    return await _identify(bus, driver, addresses, progress)


async def discover(
    bus: Bus,
    spec: ConnectionSpec,
    families: Sequence[str],
    *,
    skip: Collection[int] = (),
    progress: ProgressCallback | None = None,
) -> Discovery | None:
    """Try each family in turn and return the first whose packs answer.

    Families are tried in the order given, and a family that finds packs
    ends the search: a bus carries one bank's protocol, and asking the rest
    would only cost their full address ranges in timeouts.

    Progress counts addresses still to be asked. A family not reached yet
    counts every address it allows; once its driver has said which are
    worth asking, it counts those, and the share left is divided anew, so
    progress only moves forward and ends at 1.
    """
    bounds = [
        len([address for address in driver_on(bus, spec, family).addresses if address not in skip])
        for family in families
    ]
    reached = 0.0
    found: Discovery | None = None
    for index, family in enumerate(families):
        driver = driver_on(bus, spec, family)
        await driver.connect()
        addresses = await scan_plan(bus, driver, skip=skip)
        later = sum(bounds[index + 1 :])
        span = (1.0 - reached) * len(addresses) / ((len(addresses) + later) or 1)

        def report(share: float, start: float = reached, span: float = span) -> None:
            if progress is not None:
                progress(start + share * span)

        if packs := await _identify(bus, driver, addresses, report):
            found = Discovery(family=family, packs=tuple(packs))
            break
        reached += span
    if progress is not None:
        progress(1.0)
    return found
