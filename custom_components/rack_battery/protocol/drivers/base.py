"""What every BMS driver offers the layers above it.

A driver reads each pack on its own, so a poll comes back as a report of
which packs answered and which did not. Only a bus that answers nobody fails
the whole poll. Every reading a poll returns has passed the plausibility
screen (:mod:`..plausibility`): a value that cannot be true is unknown, and
the reply is counted as suspect in the link's statistics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import ClassVar, Protocol

from ...bank.model import PackIdentity, PackReading, PollReport
from ..errors import BusUnavailable, ControlNotSupported, FrameError, PackNotResponding
from ..linkstats import LinkStats
from ..plausibility import screen
from ..timing import FamilyTiming, family_timing


class BmsDriver(ABC):
    """Reads the packs of one BMS family over one bus."""

    family: ClassVar[str]
    # Where packs of this family can sit on a bus, in scanning order.
    addresses: ClassVar[range]

    @abstractmethod
    async def connect(self) -> None:
        """Open the bus; raise BusUnavailable if it cannot be reached."""

    @abstractmethod
    async def close(self) -> None:
        """Release the bus."""

    @abstractmethod
    async def read_identity(self, address: int) -> PackIdentity:
        """Ask one pack who it is."""

    @abstractmethod
    async def read_pack(self, address: int) -> PackReading:
        """Read one pack's measurements."""

    @property
    def link_stats(self) -> LinkStats:
        """Return the statistics of the link this driver reads through.

        Those of its transport (or, for a listener, its own ``stats``) where
        it has them, so that every bank on a bus counts in one place;
        otherwise statistics the driver keeps for itself.
        """
        for holder in (self, getattr(self, "transport", None)):
            stats = getattr(holder, "stats", None)
            if isinstance(stats, LinkStats):
                return stats
        own: LinkStats | None = self.__dict__.get("_own_link_stats")
        if own is None:
            own = self.__dict__["_own_link_stats"] = LinkStats()
        return own

    def screened(self, address: int, reading: PackReading) -> PackReading:
        """Return ``reading`` with what cannot be true made unknown; count it if suspect.

        Every override of :meth:`poll` passes its readings through here.
        """
        result = screen(reading)
        if result.suspect:
            self.link_stats.pack(address).suspect += 1
        return result.reading

    async def set_paths(
        self, address: int, *, charge: bool | None = None, discharge: bool | None = None
    ) -> None:
        """Close (True) or open (False) a pack's charge and discharge paths; None leaves one.

        Only a family whose catalog entry says it can switch a path
        overrides this; every other family refuses, having written nothing.
        What the BMS did is known only from the next reading: a caller reads
        back, never trusts the write.
        """
        raise ControlNotSupported(f"{self.family} packs cannot be switched over this protocol")

    async def poll(self, addresses: Iterable[int]) -> PollReport:
        """Read every pack on its own and report who answered.

        Raises BusUnavailable when the bus is down (lost for two packs
        running, or for the only one), or when it is up but no pack
        answered: a bus that answers nobody is down, whatever the socket
        says.
        """
        readings: dict[int, PackReading] = {}
        failed: dict[int, str] = {}
        # A link lost while one pack was asked (a gateway that resets the
        # connection) is that pack's failure if the link opens again for the
        # next; lost twice running, the bus is down.
        lost = False
        for address in addresses:
            try:
                readings[address] = self.screened(address, await self.read_pack(address))
            except (PackNotResponding, FrameError) as err:
                failed[address] = str(err) or type(err).__name__
            except BusUnavailable as err:
                if lost:
                    raise
                failed[address] = str(err) or type(err).__name__
                lost = True
                continue
            lost = False
        if failed and not readings:
            raise BusUnavailable(
                f"no pack answered ({len(failed)} asked): {next(iter(failed.values()))}"
            )
        return PollReport(readings=readings, failed=failed)

    async def scan_addresses(self) -> Sequence[int]:
        """Return the addresses worth asking in a scan, in scanning order.

        An address nobody holds stays silent and costs a full response
        timeout, so a family whose bus can say where its packs are (a master
        that counts its slaves) narrows the scan here. This may talk on the
        bus; a caller sharing the bus gives it a turn of its own. It never
        leaves out an address a scan of every address would have found a
        pack at; without such knowledge it returns every allowed address.
        """
        return self.addresses

    async def scan(self, addresses: Iterable[int] | None = None) -> list[PackIdentity]:
        """Find the packs present on the bus, in address order.

        Without ``addresses`` the scan asks those :meth:`scan_addresses` names.
        """
        found: list[PackIdentity] = []
        for address in await self.scan_addresses() if addresses is None else addresses:
            try:
                found.append(await self.read_identity(address))
            except (PackNotResponding, FrameError):
                continue
        return found


class Link(Protocol):
    """What every transport offers a driver: a way in and a way out."""

    async def connect(self) -> None:
        """Open the bus; raise BusUnavailable if it cannot be reached."""

    async def close(self) -> None:
        """Release the bus."""


class LinkedDriver[LinkT: Link](BmsDriver):
    """A driver that reads its packs through one transport, perhaps shared."""

    def __init__(self, transport: LinkT) -> None:
        """Use a transport that may be shared with other banks on the same bus.

        A transport that times its requests by the wire (``timing.py``) is
        told this family's documented answer time and frame gap.
        """
        self.transport = transport
        use_timing = getattr(transport, "use_timing", None)
        if callable(use_timing):
            timing: FamilyTiming = family_timing(self.family)
            use_timing(timing)

    async def connect(self) -> None:
        """Open the bus; raise BusUnavailable if it cannot be reached."""
        await self.transport.connect()

    async def close(self) -> None:
        """Release the bus."""
        await self.transport.close()
