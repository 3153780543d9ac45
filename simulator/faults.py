"""Faults to inject into a simulated bank, each one undone as cleanly as it was done.

Each fault is a small object with ``apply(bank)`` and ``remove(bank)``, so a
scenario can inject it, watch the rules raise a finding, remove it and
watch the finding clear. Everything random is seeded: a scenario plays out
the same way every time.

- :class:`LooseTerminal`: the connection resistance jumps by tens of
  milliohms and the measured voltage jumps by a volt or more, as a terminal
  that makes and breaks contact does.
- :class:`CellImbalance`: one cell sits high and the others low.
- :class:`SocImbalance`: a pack at a different state of charge, as a pack
  charged on its own before it was added.
- :class:`HotPack`: a pack in a hot spot (beside an inverter, in the sun).
- :class:`Aging`: capacity fade and resistance growth, with cycles to match.
- :class:`Rebadged`: a pack of another model or firmware in the bank.
- :class:`FlakyLink`: a pack whose link cable drops replies at random.

Those are faults of the packs. :class:`WireFaults` is what a line does to the
bytes between a pack and whoever asks it (noise, cut frames, late replies,
echoes, a gateway that resets or restarts, ...): every simulated wire
(``modbus_line.py``, ``pylon_line.py``, ``pylontech_can.py``) asks it how
to deliver each reply, so one fault means the same on every wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
import random
from typing import Final, Protocol

from .bank import CELLS, SimBank


class Fault(Protocol):
    """Something wrong with a bank, that can be put right again."""

    def apply(self, bank: SimBank) -> None:
        """Inject the fault."""

    def remove(self, bank: SimBank) -> None:
        """Undo it."""


def _resettle(bank: SimBank) -> None:
    """Share the load anew after a change to a pack, without moving the clock."""
    bank.step(0.0)


@dataclass(kw_only=True)
class LooseTerminal:
    """A terminal that makes and breaks contact.

    Its resistance adds to the pack's connection resistance (a loose lug
    adds tens of milliohms), and the voltage the BMS measures jumps by up to
    ``noise`` volts either way at every settle of the bank.
    """

    address: int
    extra_resistance: float = 0.05  # ohm
    noise: float = 1.2  # V, amplitude
    seed: int = 0
    _saved: tuple[float, float] | None = field(default=None, init=False, repr=False)

    def apply(self, bank: SimBank) -> None:
        """Loosen the terminal."""
        pack = bank.pack(self.address)
        self._saved = (pack.connection_resistance, pack.voltage_noise)
        pack.connection_resistance += self.extra_resistance
        pack.voltage_noise = self.noise
        pack.noise_rng = random.Random(self.seed)
        _resettle(bank)

    def remove(self, bank: SimBank) -> None:
        """Clean and torque the terminal."""
        if self._saved is None:
            return
        pack = bank.pack(self.address)
        pack.connection_resistance, pack.voltage_noise = self._saved
        self._saved = None
        _resettle(bank)


@dataclass(kw_only=True)
class CellImbalance:
    """One cell ``offset`` volts above the pack's mean, the others below it."""

    address: int
    cell: int = 0  # 0-based
    offset: float = 0.15  # V
    _saved: tuple[float, ...] | None = field(default=None, init=False, repr=False)

    def apply(self, bank: SimBank) -> None:
        """Unbalance the cells; they still sum to the pack voltage."""
        pack = bank.pack(self.address)
        self._saved = pack.cell_offsets
        others = -self.offset / (CELLS - 1)
        pack.cell_offsets = tuple(
            self.offset if index == self.cell else others for index in range(CELLS)
        )

    def remove(self, bank: SimBank) -> None:
        """Balance the cells again."""
        if self._saved is None:
            return
        bank.pack(self.address).cell_offsets = self._saved
        self._saved = None


@dataclass(kw_only=True)
class SocImbalance:
    """A pack at another state of charge than the rest (fraction, 0..1)."""

    address: int
    soc: float
    _saved: float | None = field(default=None, init=False, repr=False)

    def apply(self, bank: SimBank) -> None:
        """Set the pack's state of charge."""
        pack = bank.pack(self.address)
        self._saved = pack.soc
        pack.soc = self.soc
        _resettle(bank)

    def remove(self, bank: SimBank) -> None:
        """Bring the pack back to the mean of the others."""
        if self._saved is None:
            return
        others = [pack.soc for pack in bank.packs if pack.address != self.address]
        bank.pack(self.address).soc = sum(others) / len(others) if others else self._saved
        self._saved = None
        _resettle(bank)


@dataclass(kw_only=True)
class HotPack:
    """A pack in a hot spot: its surroundings, and so the pack, at ``ambient``."""

    address: int
    ambient: float = 52.0  # degC
    _saved: tuple[float, float] | None = field(default=None, init=False, repr=False)

    def apply(self, bank: SimBank) -> None:
        """Move the pack into the heat (it is there at once, not after an hour)."""
        pack = bank.pack(self.address)
        self._saved = (pack.ambient, pack.temperature)
        pack.ambient = self.ambient
        pack.temperature = self.ambient

    def remove(self, bank: SimBank) -> None:
        """Move the pack back, cooled to where it was."""
        if self._saved is None:
            return
        pack = bank.pack(self.address)
        pack.ambient, pack.temperature = self._saved
        self._saved = None


@dataclass(kw_only=True)
class Aging:
    """Years of use: capacity fades, resistance grows, cycles add up."""

    address: int
    capacity_fade: float = 0.25  # fraction of the design capacity lost
    resistance_growth: float = 1.0  # fraction added to the internal resistance
    cycles: int | None = 2900
    _saved: tuple[float, float, int] | None = field(default=None, init=False, repr=False)

    def apply(self, bank: SimBank) -> None:
        """Age the pack."""
        pack = bank.pack(self.address)
        self._saved = (pack.full_capacity, pack.internal_resistance, pack.cycles)
        pack.full_capacity = pack.design_capacity * (1.0 - self.capacity_fade)
        pack.internal_resistance *= 1.0 + self.resistance_growth
        if self.cycles is not None:
            pack.cycles = self.cycles
        _resettle(bank)

    def remove(self, bank: SimBank) -> None:
        """Replace the pack with one as young as it was."""
        if self._saved is None:
            return
        pack = bank.pack(self.address)
        pack.full_capacity, pack.internal_resistance, pack.cycles = self._saved
        self._saved = None
        _resettle(bank)


@dataclass(kw_only=True)
class Rebadged:
    """A pack of another model or firmware in the bank."""

    address: int
    model: str | None = None
    firmware: str | None = None
    _saved: tuple[str, str] | None = field(default=None, init=False, repr=False)

    def apply(self, bank: SimBank) -> None:
        """Swap the pack's identity."""
        pack = bank.pack(self.address)
        self._saved = (pack.model, pack.firmware)
        if self.model is not None:
            pack.model = self.model
        if self.firmware is not None:
            pack.firmware = self.firmware

    def remove(self, bank: SimBank) -> None:
        """Put the bank's own model and firmware back."""
        if self._saved is None:
            return
        pack = bank.pack(self.address)
        pack.model, pack.firmware = self._saved
        self._saved = None


@dataclass(kw_only=True)
class FlakyLink:
    """A pack whose link drops replies: call :meth:`tick` before every poll."""

    address: int
    failure_rate: float = 0.3
    seed: int = 0
    active: bool = field(default=False, init=False)
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Seed the draws."""
        self._rng = random.Random(self.seed)

    def apply(self, bank: SimBank) -> None:
        """Start dropping replies."""
        self.active = True
        self.tick(bank)

    def tick(self, bank: SimBank) -> None:
        """Decide whether the pack answers the next poll."""
        if self.active:
            bank.pack(self.address).online = self._rng.random() >= self.failure_rate

    def remove(self, bank: SimBank) -> None:
        """Mend the link."""
        self.active = False
        bank.put_on_bus(self.address)


# ---------------------------------------------------------------------------
# Faults of the wire


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
