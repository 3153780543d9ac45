"""How long to wait for a reply: worked out from the wire, then learned from the pack.

A flat second per request is too long for a pack that answers in a tenth
of it (every empty address of a scan pays it in full) and too short for a
group reply at 9600 baud. On a serial line the time an answer needs is
known from three things:

- the wire: a byte of 8N1 is ten bit times, so ``bytes * 10 / baud`` for
  the request going out and the longest reply that can answer it;
- the family's answer time: the longest its documents let a BMS take
  before it starts to answer (PACE Modbus: 200 ms; PACE ASCII and Seplos
  V2: 500 ms); where a document gives none, :data:`UNDOCUMENTED_LATENCY`;
- a margin for the host: a USB RS485 adapter holds received bytes up to its
  latency timer (16 ms by default on FTDI chips) and the event loop has
  other work.

That is :func:`derived_timeout`, used until the pack has answered a few
times. Then :func:`learned_timeout` takes over: from the pack's own answer
times (what a reply took beyond its wire time) it allows a high percentile
times a factor, never less than the wire time of the longest reply plus
the answer time its documents allow (or, where they name none,
:data:`LATENCY_FLOOR`), never more than the derived timeout, its cap. A
pack of a family without a documented figure that answers in 30 ms is
then given up on in a fraction of the assumed half second; a pack that
missed a reply counts the time it was given as an answer time, so misses
widen its timeout again, back up to the cap. The cap is the derived
timeout rather than anything longer so that a pack that has died costs a
poll no more than it did before it was ever learned.

Through a TCP gateway the serial speed behind it is known only if the user
said so (the gateway forms ask for it, "I don't know" allowed); without it
nothing can be worked out and the transport keeps its configured timeout
(:data:`DEFAULT_TIMEOUT`). With it, the timeout is worked out and learned
just as on a serial port, plus :data:`GATEWAY_HOP` for the gateway itself.

Everything here is pure: :class:`ReplyTimer` only keeps the figures, the
transports measure and ask.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
import math
from typing import Final

# 8N1: a start bit, eight data bits, a stop bit.
BITS_PER_BYTE: Final = 10
# What a transport waits when the wire's speed is unknown.
DEFAULT_TIMEOUT: Final = 1.0
# The derived timeout is the worked-out time times MARGIN, plus HOST_SLACK.
MARGIN: Final = 1.25
# An FTDI adapter's default latency timer (16 ms) and the loop's own delays.
HOST_SLACK: Final = 0.02
# What a TCP gateway between the host and the RS485 line adds to every
# answer, on top of the host's slack: the round trip over the LAN or Wi-Fi
# and the time a transparent gateway holds the line's bytes before it sends
# them on in one TCP segment (its packing interval, a few to tens of
# milliseconds on the common serial servers).
GATEWAY_HOP: Final = 0.05
# The answer time assumed for a family whose documents name none: what
# PACE's ASCII and Seplos' V2 documents allow, the longest any of the
# documents allow.
UNDOCUMENTED_LATENCY: Final = 0.5

# Learning: how many answer times a pack keeps, how many it needs before
# they count, and what is made of them.
HISTORY: Final = 32
MIN_SAMPLES: Final = 4
PERCENTILE: Final = 0.95
FACTOR: Final = 2.0
# The least answer time a learned timeout allows beyond the wire time, for
# a family without a documented figure: the event loop of a small host
# stalls for this long now and then.
LATENCY_FLOOR: Final = 0.1


@dataclass(frozen=True, slots=True)
class FamilyTiming:
    """What a family's documents say about its timing on RS485."""

    # The longest a BMS may take to start answering, in seconds.
    latency: float = UNDOCUMENTED_LATENCY
    # The quiet time the document asks for between frames, in seconds.
    gap: float = 0.0
    # Whether ``latency`` is the document's own figure (then a learned
    # timeout never allows less) or an assumption.
    documented: bool = False


UNDOCUMENTED: Final = FamilyTiming()

FAMILY_TIMING: Final[dict[str, FamilyTiming]] = {
    # PACE Modbus V1.3, "Communication Parameters": timeout 200 ms, interval
    # time of the frame more than 100 ms.
    "pace_modbus": FamilyTiming(latency=0.2, gap=0.1, documented=True),
    # PACE RS485 (ASCII) 2018-06-15: the host counts a command failed with
    # no answer in 500 ms.
    "pace_ascii": FamilyTiming(latency=0.5, documented=True),
    # Seplos V2.0: no answer in 500 ms is a failed communication.
    "seplos_v2": FamilyTiming(latency=0.5, documented=True),
    # Seplos V3, JK-PB, Pylontech RS485 and SunSpec documents give no time.
    "seplos_v3": UNDOCUMENTED,
    "jk_pb": UNDOCUMENTED,
    "pylontech_rs485": UNDOCUMENTED,
    "sunspec": UNDOCUMENTED,
}


def family_timing(family: str) -> FamilyTiming:
    """Return a family's documented timing, or the undocumented default."""
    return FAMILY_TIMING.get(family, UNDOCUMENTED)


def wire_time(size: int, baudrate: int) -> float:
    """Return the seconds ``size`` bytes take on a line of ``baudrate`` (8N1)."""
    return size * BITS_PER_BYTE / baudrate


def derived_timeout(
    *,
    baudrate: int | None,
    request_bytes: int,
    reply_bytes: int,
    timing: FamilyTiming,
    default: float = DEFAULT_TIMEOUT,
    hop: float = 0.0,
) -> float:
    """Return the timeout worked out from the wire and the family's answer time.

    ``reply_bytes`` is the longest reply that can answer the request. Without
    a baud rate (a TCP gateway whose serial speed is not known) it is
    ``default``. ``hop`` is what a gateway in between adds
    (:data:`GATEWAY_HOP`; nothing on a serial port).
    """
    if not baudrate:
        return default
    wire = wire_time(request_bytes + reply_bytes, baudrate)
    return (wire + timing.latency) * MARGIN + HOST_SLACK + hop


def percentile(samples: Sequence[float], share: float) -> float:
    """Return the ``share`` quantile of ``samples`` (nearest rank); 0 for none."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def learned_timeout(
    latencies: Sequence[float],
    *,
    baudrate: int | None,
    request_bytes: int,
    reply_bytes: int,
    timing: FamilyTiming,
    default: float = DEFAULT_TIMEOUT,
    hop: float = 0.0,
) -> float:
    """Return the timeout learned from a pack's answer times, within bounds.

    ``latencies`` are what the pack's replies took beyond their wire time.
    With fewer than :data:`MIN_SAMPLES` of them, or without a baud rate,
    this is :func:`derived_timeout`. Otherwise it is the wire time of the
    request and the longest reply, plus the :data:`PERCENTILE` answer time
    times :data:`FACTOR`, plus :data:`HOST_SLACK` and a gateway's ``hop``:
    at least the wire time plus the family's documented answer time
    (:data:`LATENCY_FLOOR` where it has none) plus the slack and the hop,
    and at most the derived timeout.
    """
    derived = derived_timeout(
        baudrate=baudrate,
        request_bytes=request_bytes,
        reply_bytes=reply_bytes,
        timing=timing,
        default=default,
        hop=hop,
    )
    usable = [sample for sample in latencies if math.isfinite(sample)]
    if not baudrate or len(usable) < MIN_SAMPLES:
        return derived
    wire = wire_time(request_bytes + reply_bytes, baudrate)
    least = timing.latency if timing.documented else LATENCY_FLOOR
    allowance = max(least, percentile(usable, PERCENTILE) * FACTOR)
    return min(wire + allowance + HOST_SLACK + hop, derived)


@dataclass
class ReplyTimer:
    """A line's timing: the family's figures, the baud rate and each pack's answer times.

    A pack that has not answered often enough yet borrows the answer times
    of the whole line (packs of one family on one line answer alike), so a
    scan that has found a pack gives up on the next empty address sooner.
    """

    baudrate: int | None = None
    timing: FamilyTiming = UNDOCUMENTED
    default: float = DEFAULT_TIMEOUT
    # What a gateway between host and line adds (GATEWAY_HOP), 0 on a serial port.
    hop: float = 0.0
    _packs: dict[int, deque[float]] = field(default_factory=dict, repr=False)
    _line: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY), repr=False)
    # The seconds spent waiting out timeouts, for the bench.
    waited: float = 0.0

    def timeout(self, address: int, *, request_bytes: int, reply_bytes: int) -> float:
        """Return how long to wait for the reply to a request to ``address``."""
        own = self._packs.get(address)
        history: Sequence[float] = (
            own if own is not None and len(own) >= MIN_SAMPLES else self._line
        )
        return learned_timeout(
            history,
            baudrate=self.baudrate,
            request_bytes=request_bytes,
            reply_bytes=reply_bytes,
            timing=self.timing,
            default=self.default,
            hop=self.hop,
        )

    def answered(
        self, address: int, elapsed: float, *, request_bytes: int, reply_bytes: int
    ) -> None:
        """Note that a reply of ``reply_bytes`` came ``elapsed`` seconds after the request."""
        if not self.baudrate or not math.isfinite(elapsed):
            return
        latency = max(0.0, elapsed - wire_time(request_bytes + reply_bytes, self.baudrate))
        history = self._packs.get(address)
        if history is None:
            history = self._packs[address] = deque(maxlen=HISTORY)
        history.append(latency)
        self._line.append(latency)

    def missed(self, address: int, waited: float, *, request_bytes: int, reply_bytes: int) -> None:
        """Note that a pack which has answered before let ``waited`` seconds pass in silence.

        The time it was given counts as one of its answer times (it needed
        at least that), so a pack that misses replies is given longer. An
        address that never answered (an empty one, in a scan) learns nothing.
        """
        history = self._packs.get(address)
        if history is None or not self.baudrate:
            return
        history.append(
            max(
                0.0,
                waited
                - wire_time(request_bytes + reply_bytes, self.baudrate)
                - HOST_SLACK
                - self.hop,
            )
        )

    def latencies(self, address: int) -> tuple[float, ...]:
        """Return the answer times kept for one address."""
        return tuple(self._packs.get(address, ()))

    def forget(self, addresses: Iterable[int] | None = None) -> None:
        """Drop what was learned (for some addresses, or all)."""
        if addresses is None:
            self._packs.clear()
            self._line.clear()
            return
        for address in addresses:
            self._packs.pop(address, None)


# Pylon framing: "~", VER ADR CID1 CID2 LENGTH (twelve characters), INFO,
# CHKSUM (four), CR; every INFO byte is two characters.
PYLON_OVERHEAD: Final = 1 + 12 + 4 + 1
PYLON_LONGEST: Final = PYLON_OVERHEAD + 0xFFF
# The longest INFO (in bytes) a reply to each command carries, generously:
# 0x42 for one pack of up to 16 cells (Seplos V2's, the longest, is 73
# bytes), 0x44 about 40, 0x51 32 (name, version, maker), 0x90 one.
PYLON_REPLY_INFO: Final[dict[int, int]] = {
    0x42: 128,
    0x44: 64,
    0x47: 64,
    0x51: 48,
    0x90: 1,
    0x92: 32,
    0x93: 32,
    0x96: 32,
    0xC1: 32,
    0xC2: 48,
}
PYLON_UNKNOWN_INFO: Final = 128
# The command byte that asks a master for its whole group.
WHOLE_GROUP: Final = 0xFF


def pylon_reply_bytes(request: bytes) -> int:
    """Return the longest reply a Pylon-framed request can get, in bytes on the wire.

    A request for the whole group (INFO's command byte 0xFF) may be answered
    with the longest frame the framing allows.
    """
    try:
        cid2 = int(request[7:9], 16)
        command = int(request[13:15], 16) if len(request) >= PYLON_OVERHEAD + 2 else None
    except ValueError:
        return PYLON_LONGEST
    if command == WHOLE_GROUP:
        return PYLON_LONGEST
    return PYLON_OVERHEAD + 2 * PYLON_REPLY_INFO.get(cid2, PYLON_UNKNOWN_INFO)


# Modbus RTU adds a unit byte and a two-byte CRC to each PDU.
RTU_OVERHEAD: Final = 3
