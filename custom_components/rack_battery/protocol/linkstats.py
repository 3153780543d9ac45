"""What a link has seen: the counts that tell a healthy line from a sick one.

A real RS485 line is noisy: a cable beside an inverter, a slave that talks
while the bus turns around, a gateway that restarts. The stack drops what it
cannot trust rather than decode it, and counts what it dropped here, so a
user (diagnostics) and the rules can tell a pack that is silent from a pack
whose line is full of noise.

Counts are kept per pack address on the transport that carries the bus, so
every bank sharing a bus sees the same figures for the same address; what
cannot be laid at one pack's door (noise between frames) is counted for the
whole link.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(slots=True)
class PackLinkStats:
    """Counts for one pack address, since the link was opened."""

    requests: int = 0  # requests sent to this address
    replies: int = 0  # replies accepted as the answer to the request in flight
    timeouts: int = 0  # requests that ended without an accepted reply
    # Frames that arrived while a request to this address was in flight but
    # did not answer it: a late reply to an earlier request, an echo of our
    # own request, a frame for another unit, a wrong function code or count.
    discarded: int = 0
    # Replies accepted and decoded, in which a value could not be true (a
    # sentinel, a cell above 5 V, ...): the value was published as unknown.
    suspect: int = 0

    def as_dict(self) -> dict[str, int]:
        """Return the counts as plain data, for diagnostics."""
        return asdict(self)


@dataclass(slots=True)
class LinkStats:
    """Counts for one link (a transport or a listener), per pack and in all."""

    packs: dict[int, PackLinkStats] = field(default_factory=dict)
    # Bytes thrown away while looking for the start of a frame.
    noise_bytes: int = 0
    # Whole frames thrown away that no request in flight could explain
    # (arriving between transactions, or foreign traffic on the line).
    stray_frames: int = 0

    def pack(self, address: int) -> PackLinkStats:
        """Return the counts of one address, made on first use."""
        if (stats := self.packs.get(address)) is None:
            stats = self.packs[address] = PackLinkStats()
        return stats

    def as_dict(self) -> dict[str, object]:
        """Return the counts as plain data, for diagnostics."""
        return {
            "noise_bytes": self.noise_bytes,
            "stray_frames": self.stray_frames,
            "packs": {address: stats.as_dict() for address, stats in sorted(self.packs.items())},
        }
