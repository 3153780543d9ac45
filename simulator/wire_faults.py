"""Faults of the wire: what a line does to the bytes between a pack and whoever asks it.

:class:`WireFaults` holds, per pack address, one :class:`WireFault` (noise,
cut frames, late replies, echoes, another pack's frame, a gateway that
resets or restarts, ...). Every simulated wire (``modbus_line.py``,
``pylon_line.py``, ``pylontech_can.py``) asks it how to deliver each reply
and carries that out on its pty, TCP connection or socketcand stream, so
one fault means the same on every wire. Unlike the pack faults of
:mod:`simulator.faults`, these live on the event loop: a late or dripped
reply is written later, on a timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
from dataclasses import dataclass, field
from enum import StrEnum
import random
import socket
import struct
from typing import Final


class WireFault(StrEnum):
    """One way a line mangles the replies of one pack."""

    GARBAGE = "garbage"  # noise instead of the reply
    NOISE_BURST = "noise_burst"  # a burst of noise (kilobytes), then the sound reply
    HALF_FRAME = "half_frame"  # the first half of the reply, and nothing more
    JUNK_AFTER = "junk_after"  # the sound reply, then junk
    WRONG_ADDRESS = "wrong_address"  # another pack's reply, under that pack's address
    LATE = "late"  # the sound reply, after the asker has given up waiting
    ECHO = "echo"  # the request comes back (a 2-wire adapter), then the sound reply
    WRONG_FUNCTION = "wrong_function"  # a sound frame answering another function or command
    RESET = "reset"  # the gateway resets the connection instead of replying
    RESTART = "restart"  # the gateway closes its port and opens it again once mended
    SILENCE = "silence"  # no reply at all
    DRIP = "drip"  # the sound reply, a few bytes at a time
    ONE_SHOT = "one_shot"  # exactly one reply is missed, then the pack answers again


# Faults that end the connection, which a serial line does not have.
CONNECTION_FAULTS: Final = frozenset({WireFault.RESET, WireFault.RESTART})
# Faults after which the sound reply still arrives in time: a client that
# frames and matches its replies strictly reads the pack all the same.
SURVIVABLE: Final = frozenset(
    {
        WireFault.NOISE_BURST,
        WireFault.JUNK_AFTER,
        WireFault.ECHO,
        WireFault.DRIP,
        WireFault.ONE_SHOT,
    }
)


@dataclass(frozen=True)
class Delivery:
    """What goes back on the wire for one request.

    ``chunks`` are written in order, each at its delay (seconds after the
    request arrived). ``reset`` drops the asker's connection, ``restart``
    the gateway's whole port until the fault is mended.
    """

    chunks: tuple[tuple[float, bytes], ...] = ()
    reset: bool = False
    restart: bool = False
    # Held back: it goes out with the line's next request (the transaction
    # after the one it answers), or at its delay if no request comes first.
    late: bool = False


# A reply that is not there (no pack at the address): nothing arrives.
NOTHING: Final = Delivery()


@dataclass
class WireFaults:
    """The wire faults in force, by pack address, and how long each one lasts.

    ``late_by`` must be longer than the asker's reply timeout, so a late
    reply lands in the transaction after the one it answers. ``drip_over``
    is how long a dripped reply takes to arrive in all (shorter than that
    timeout, so it still counts). Everything random is seeded.
    """

    packs: dict[int, WireFault] = field(default_factory=dict)
    late_by: float = 1.5
    drip_over: float = 0.1
    drip_chunks: int = 8
    burst: int = 4096
    seed: int = 0
    # How many replies each fault has spoiled, by address (for tests and the soak).
    spoiled: dict[int, int] = field(default_factory=dict)
    _rng: random.Random = field(init=False, repr=False)
    _watchers: list[Callable[[], None]] = field(default_factory=list, init=False, repr=False)
    # Chunks written later: the timer, and the write it will make.
    _pending: dict[asyncio.TimerHandle, tuple[Callable[[bytes], None], bytes, bool]] = field(
        default_factory=dict, init=False, repr=False
    )
    _quiet: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    _comebacks: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        """Seed the noise."""
        self._rng = random.Random(self.seed)

    def inject(self, address: int, fault: WireFault) -> None:
        """Put a fault on one pack's replies (replacing the one it had)."""
        self.packs[address] = fault
        self._changed()

    def mend(self, address: int | None = None) -> None:
        """Take the fault off one pack, or (address None) off every pack."""
        if address is None:
            self.packs.clear()
        else:
            self.packs.pop(address, None)
        self._changed()

    def watch(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever a fault is put on or taken off."""
        self._watchers.append(callback)

    def _changed(self) -> None:
        for callback in list(self._watchers):
            callback()

    @property
    def restarting(self) -> bool:
        """Return whether a gateway restart is in force (the port stays closed)."""
        return WireFault.RESTART in self.packs.values()

    def noise(self, length: int) -> bytes:
        """Return ``length`` bytes of seeded noise."""
        return self._rng.randbytes(length)

    def deliver(  # noqa: PLR0911, PLR0912 - one case per fault
        self,
        address: int,
        request: bytes,
        reply: bytes | None,
        *,
        foreign: Callable[[], bytes | None],
        misfunction: Callable[[], bytes | None],
    ) -> Delivery:
        """Return how the reply of the pack at ``address`` to ``request`` arrives.

        ``reply`` is the sound reply (None where no pack answers: then
        nothing arrives, whatever the fault). ``foreign`` builds another
        pack's sound reply to the same question, ``misfunction`` a sound
        reply of the same pack to another function or command; both are
        asked only when needed (None: there is none, and nothing arrives).
        """
        fault = self.packs.get(address)
        if reply is None:
            return NOTHING
        if fault is None:
            return Delivery(((0.0, reply),))
        self.spoiled[address] = self.spoiled.get(address, 0) + 1
        match fault:
            case WireFault.SILENCE:
                return NOTHING
            case WireFault.ONE_SHOT:
                self.packs.pop(address, None)
                self._changed()
                return NOTHING
            case WireFault.GARBAGE:
                return Delivery(((0.0, self.noise(max(len(reply), 16))),))
            case WireFault.NOISE_BURST:
                return Delivery(((0.0, self.noise(self.burst)), (0.0, reply)))
            case WireFault.HALF_FRAME:
                return Delivery(((0.0, reply[: len(reply) // 2]),))
            case WireFault.JUNK_AFTER:
                return Delivery(((0.0, reply + self.noise(32)),))
            case WireFault.WRONG_ADDRESS:
                other = foreign()
                return NOTHING if other is None else Delivery(((0.0, other),))
            case WireFault.LATE:
                return Delivery(((self.late_by, reply),), late=True)
            case WireFault.ECHO:
                return Delivery(((0.0, request), (0.002, reply)))
            case WireFault.WRONG_FUNCTION:
                other = misfunction()
                return NOTHING if other is None else Delivery(((0.0, other),))
            case WireFault.RESET:
                return Delivery(reset=True)
            case WireFault.RESTART:
                return Delivery(restart=True)
            case WireFault.DRIP:
                size = max(1, -(-len(reply) // self.drip_chunks))
                gap = self.drip_over / self.drip_chunks
                return Delivery(
                    tuple(
                        (index * gap, reply[start : start + size])
                        for index, start in enumerate(range(0, len(reply), size))
                    )
                )

    def play(self, delivery: Delivery, write: Callable[[bytes], None]) -> None:
        """Write a delivery's chunks, each at its delay (a late one held for the next request)."""
        loop = asyncio.get_running_loop()
        for delay, data in delivery.chunks:
            if delay <= 0:
                write(data)
                continue
            box: list[asyncio.TimerHandle] = []

            def later(box: list[asyncio.TimerHandle] = box) -> None:
                self._write_pending(box[0])

            box.append(loop.call_later(delay, later))
            self._pending[box[0]] = (write, data, delivery.late)

    def _write_pending(self, handle: asyncio.TimerHandle) -> None:
        handle.cancel()
        write, data, _ = self._pending.pop(handle)
        write(data)
        self._quiet.set()

    def request_arrived(self) -> None:
        """Send what was held back: a late reply lands in the next transaction."""
        for handle, (_, _, late) in list(self._pending.items()):
            if late:
                self._write_pending(handle)

    async def settled(self) -> None:
        """Wait until every chunk put off for later, as of now, has gone out.

        Chunks put off after this call (a late fault still in force keeps
        adding them) are not waited for.
        """
        owed = set(self._pending)
        while owed & self._pending.keys():
            self._quiet.clear()
            await self._quiet.wait()
        # A gateway coming back from a restart is listening again.
        if self._comebacks:
            await asyncio.gather(*self._comebacks, return_exceptions=True)

    def comeback(self, task: asyncio.Task[None]) -> None:
        """Count a line's return from a restart as owed until it is done."""
        self._comebacks.add(task)
        task.add_done_callback(self._comebacks.discard)

    def cancel(self) -> None:
        """Drop whatever is still to be written (the line is stopping)."""
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        self._quiet.set()


def guarded_write(writer: asyncio.StreamWriter) -> Callable[[bytes], None]:
    """Return a write that drops what comes after the connection has gone."""

    def write(data: bytes) -> None:
        if not writer.is_closing():
            writer.write(data)

    return write


def reset_connection(writer: asyncio.StreamWriter) -> None:
    """Drop a connection with a reset (RST), not an orderly close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
