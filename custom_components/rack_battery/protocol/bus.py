"""One physical bus, shared by every bank on it.

An RS485 line is half duplex and carries one conversation at a time; a
gateway in front of it forwards one request at a time however many TCP
clients talk to it, and many gateways accept only one client at all. So a
bus is one object for the whole process: the banks on it (and a scan that
looks for more) borrow it from a registry, share one transport per framing,
and take turns on one lock.

A turn covers one driver operation (a poll of one bank, the identity of one
pack), so the transactions of an operation that needs several (Pylontech's
identity is three) are not interleaved with another bank's. A write takes
its turn ahead of reads that are still waiting: isolating a pack should not
wait behind every other bank's next poll.

Nothing here queues without bound: every waiter is a caller that awaits its
own turn, and callers are few and bounded (each bank has at most one poll
running, a flow one scan, a user one action at a time).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from enum import IntEnum
import heapq
import itertools

from .connection import ConnectionSpec, Wire
from .transport.factory import Transport, open_transport

type TransportOpener = Callable[[ConnectionSpec], Transport]


class Priority(IntEnum):
    """Who goes first when the bus frees up: lower values first."""

    WRITE = 0
    READ = 1


class BusLock:
    """A lock held by one caller at a time, writers ahead of waiting readers.

    Among callers of the same priority the order is first come, first
    served, so no bank's poll can be starved by another's.
    """

    def __init__(self) -> None:
        """Start free."""
        self._held = False
        self._queue: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def locked(self) -> bool:
        """Return whether someone holds the bus."""
        return self._held

    @property
    def waiting(self) -> int:
        """Return how many callers are waiting for their turn."""
        return sum(1 for *_, future in self._queue if not future.done())

    @asynccontextmanager
    async def hold(self, priority: Priority = Priority.READ) -> AsyncIterator[None]:
        """Wait for the bus, hold it for the body, and hand it on."""
        await self._acquire(priority)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: Priority) -> None:
        if not self._held and not self.waiting:
            self._held = True
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._queue, (priority, next(self._order), future))
        try:
            await future
        except asyncio.CancelledError:
            # Handed the bus in the same moment as being cancelled: pass it
            # on, or nobody would ever hold it again.
            if future.done() and not future.cancelled():
                self._release()
            raise

    def _release(self) -> None:
        # The bus passes straight to the next waiter, so a newcomer cannot
        # slip in between.
        while self._queue:
            *_, future = heapq.heappop(self._queue)
            if not future.done():
                future.set_result(None)
                return
        self._held = False


class Bus:
    """One physical bus: its lock, and a transport per framing spoken on it.

    A serial port or gateway can in principle carry two protocols (a PACE
    bank on Modbus and a Pylontech bank on the ASCII protocol); each needs its
    own framing, so each wire gets its own transport, but both share the one
    lock, as they share the one line.
    """

    def __init__(self, key: str, opener: TransportOpener) -> None:
        """Name the bus; transports are opened when first asked for."""
        self.key = key
        self.lock = BusLock()
        self.holders: set[str] = set()
        self._opener = opener
        self._transports: dict[Wire, Transport] = {}

    def transport(self, spec: ConnectionSpec) -> Transport:
        """Return the shared transport for a spec's wire (not yet connected)."""
        if spec.bus_key != self.key:
            raise ValueError(f"{spec.where} is not on the bus {self.key}")
        if (transport := self._transports.get(spec.wire)) is None:
            transport = self._transports[spec.wire] = self._opener(spec)
        return transport

    @property
    def transports(self) -> list[Transport]:
        """Return the transports opened on this bus so far."""
        return list(self._transports.values())

    def turn(self, priority: Priority = Priority.READ) -> AbstractAsyncContextManager[None]:
        """Return a context in which the caller alone talks on the bus."""
        return self.lock.hold(priority)

    async def close(self) -> None:
        """Close every transport, each after the transaction it has in flight."""
        transports, self._transports = list(self._transports.values()), {}
        for transport in transports:
            await transport.close()


class BusRegistry:
    """The buses in use, each handed out to whoever names it, closed after the last.

    Borrowers are counted by name (a config entry id, a flow id), so giving
    a bus back twice cannot close it under another borrower.
    """

    def __init__(
        self, *, timeout: float, opener: TransportOpener | None = None, wire_timed: bool = False
    ) -> None:
        """Open transports with ``opener``, by default from the spec, with ``timeout``.

        ``wire_timed`` lets the default opener time requests by the wire
        where it knows the line's speed (``transport.factory.open_transport``).
        """
        self._timeout = timeout
        self._wire_timed = wire_timed
        self._opener: TransportOpener = opener or self._open
        self._buses: dict[str, Bus] = {}

    def _open(self, spec: ConnectionSpec) -> Transport:
        return open_transport(spec, timeout=self._timeout, wire_timed=self._wire_timed)

    def borrow(self, spec: ConnectionSpec, holder: str) -> Bus:
        """Return the bus a spec names, opening it for its first borrower."""
        bus = self._buses.get(spec.bus_key)
        if bus is None:
            bus = self._buses[spec.bus_key] = Bus(spec.bus_key, self._opener)
        bus.holders.add(holder)
        return bus

    def get(self, spec: ConnectionSpec) -> Bus | None:
        """Return the bus a spec names if someone holds it."""
        return self._buses.get(spec.bus_key)

    async def give_back(self, bus: Bus, holder: str) -> None:
        """Return a borrowed bus; the last borrower's return closes it."""
        bus.holders.discard(holder)
        if bus.holders or self._buses.get(bus.key) is not bus:
            return
        del self._buses[bus.key]
        await bus.close()

    def __len__(self) -> int:
        """Return how many buses are in use."""
        return len(self._buses)
