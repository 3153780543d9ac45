"""Carry Pylon ASCII frames over a byte stream: a serial port or a TCP gateway.

Neither a USB RS485 adapter nor a transparent gateway (the common
serial-to-Ethernet adapters) knows where a frame begins or ends: both copy
bytes. So this side sends one request, cuts what comes back into frames
itself, and treats the line with suspicion:

- RS485 picks up noise when the line turns around, and a babbling device can
  send anything. :class:`AsciiFramer` looks at every byte once: a frame is
  ``~``, upper-case hex characters and a carriage return, no longer than the
  framing allows; anything else is noise, dropped and counted, never scanned
  again. Its buffer holds at most one frame.
- A reply is accepted only for the request just sent. The caller says which
  frames answer it (``accept``); an echo of the request (many RS485 adapters
  hear their own transmitter), a late reply to an earlier request, a frame
  from another pack or a garbled one is discarded and counted against the
  asked pack, and the transaction keeps listening until its timeout.
- Whatever arrives between transactions (a reply that came after its
  request timed out, noise) is thrown away before the next request goes
  out, and counted.

Errors keep the two kinds of silence apart: a request that gets no answer
in time is one pack not responding (PackNotResponding), or FrameError when
frames came but none answered it; a port or socket that cannot be opened,
or that fails under us, is the bus being down (BusUnavailable). After a
broken stream the next request reopens it. Everything the line did is
counted in ``stats`` (:class:`~..linkstats.LinkStats`).

The reading and framing live in :class:`AsciiStreamTransport`; a subclass
only says how its stream is opened (``ascii_tcp``, ``ascii_serial``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import asyncio
from collections.abc import Callable
from typing import Final

from ..errors import BusUnavailable, FrameError, PackNotResponding
from ..linkstats import LinkStats
from ..timing import FamilyTiming, ReplyTimer, pylon_reply_bytes
from .framing import DelimitedFramer

SOI: Final = b"~"
EOI: Final = b"\r"
# The longest frame the framing allows: "~", twelve header characters, 4095
# INFO characters (LENID has twelve bits), four checksum characters, CR.
MAX_FRAME_BYTES: Final = 1 + 12 + 0xFFF + 4 + 1
# How much one read takes from the stream. Bytes are framed as they are
# read, so this bounds the work of one step, not the size of a frame.
READ_CHUNK: Final = 4096
# What the stream itself may buffer before it stops reading the socket or
# port (asyncio pauses the transport at twice this): a bound, not a frame size.
READ_LIMIT: Final = 16 * 1024

# Decides whether a frame answers the request in flight: returns the value
# the transaction yields, or raises FrameError saying why it does not.
type Accept[T] = Callable[[bytes], T]


class AsciiFramer(DelimitedFramer):
    """Cut a byte stream into candidate Pylon frames, in one pass, with a bounded buffer.

    A candidate runs from ``~`` to a carriage return with only upper-case
    hex between, at most :data:`MAX_FRAME_BYTES` long; whether its lengths
    and checksum add up is the codec's business. Every other byte is noise:
    counted in ``stats.noise_bytes`` and forgotten.
    """

    def __init__(self, stats: LinkStats) -> None:
        """Count noise in ``stats``."""
        super().__init__(stats, start=SOI, body=b"0-9A-F", end=EOI, longest=MAX_FRAME_BYTES)


class AsciiStreamTransport(ABC):
    """One stream to an RS485 line, one transaction on it at a time.

    RS485 is half duplex and nothing between us and the packs knows which
    answer belongs to which question, so requests are strictly serialised
    with a lock; callers queue on the lock rather than in a buffer that
    could grow.
    """

    def __init__(
        self, *, timeout: float = 1.0, baudrate: int | None = None, wire_timed: bool = False
    ) -> None:
        """Nothing is opened until needed.

        ``baudrate`` is the speed of the RS485 line (behind a gateway, if
        known). ``wire_timed`` makes each request wait as long as the wire
        and the family need for its longest reply (``protocol/timing.py``),
        then as long as the pack has been seen to need; without it, or
        without a baud rate, a request waits ``timeout``.
        """
        self.timeout = timeout
        self.timer = ReplyTimer(baudrate=baudrate if wire_timed else None, default=timeout)
        self.stats = LinkStats()
        self._framer = AsciiFramer(self.stats)
        self._lock = asyncio.Lock()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    @abstractmethod
    def where(self) -> str:
        """Return where the line is, for messages."""

    @abstractmethod
    async def _open_streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open the stream; raise BusUnavailable (or a subclass) if it cannot be."""

    def use_timing(self, timing: FamilyTiming) -> None:
        """Time requests by a family's documented figures (its driver says which)."""
        self.timer.timing = timing

    @property
    def connected(self) -> bool:
        """Return whether the stream is open (as far as this side knows)."""
        return self._writer is not None

    async def connect(self) -> None:
        """Open the stream; raise BusUnavailable if the line cannot be reached."""
        async with self._lock:
            await self._open()

    async def close(self) -> None:
        """Close the stream, after any transaction in flight."""
        async with self._lock:
            await self._drop()

    async def transact(self, request: bytes) -> bytes:
        """Send one request and return the first frame that is not its echo."""
        return await self.exchange(request, lambda frame: _not_an_echo(request, frame))

    async def exchange[T](self, request: bytes, accept: Accept[T]) -> T:
        """Send one request and return what ``accept`` makes of the frame that answers it.

        Each frame that arrives is handed to ``accept``; one it rejects
        (FrameError) is discarded, counted against the asked pack, and the
        transaction listens on. Raises PackNotResponding when nothing
        arrives within the timeout, FrameError when frames arrived but none
        was accepted (the message says why the last was not), and
        BusUnavailable when the stream fails (the next call reopens it).
        """
        address = _address_of(request)
        stats = self.stats.pack(address)
        longest = pylon_reply_bytes(request)
        async with self._lock:
            timeout = self.timer.timeout(address, request_bytes=len(request), reply_bytes=longest)
            reader, writer = await self._open()
            if not await self._discard_stale(reader):
                # The gateway closed the idle connection (many do after a
                # minute or so): that is not an outage, so reopen once.
                await self._drop()
                reader, writer = await self._open()
            rejected: list[str] = []
            stats.requests += 1
            loop = asyncio.get_running_loop()
            sent = loop.time()
            size: list[int] = []
            try:
                async with asyncio.timeout(timeout):
                    writer.write(request)
                    await writer.drain()
                    result = await self._read_reply(reader, accept, rejected, size)
            except TimeoutError as err:
                stats.timeouts += 1
                self.timer.waited += timeout
                self.timer.missed(address, timeout, request_bytes=len(request), reply_bytes=longest)
                if rejected:
                    raise FrameError(
                        f"no usable answer from {self.where} within {timeout:.3g} s: "
                        f"{len(rejected)} frame(s) discarded, the last: {rejected[-1]}"
                    ) from err
                raise PackNotResponding(
                    f"no answer from {self.where} within {timeout:.3g} s"
                ) from err
            except asyncio.IncompleteReadError as err:
                stats.timeouts += 1
                await self._drop()
                raise BusUnavailable(f"{self.where} closed the connection") from err
            except OSError as err:
                stats.timeouts += 1
                await self._drop()
                raise BusUnavailable(f"{self.where}: {err.strerror or err!r}") from err
            finally:
                stats.discarded += len(rejected)
            stats.replies += 1
            self.timer.answered(
                address,
                loop.time() - sent,
                request_bytes=len(request),
                reply_bytes=size[0] if size else longest,
            )
            return result

    async def _read_reply[T](
        self,
        reader: asyncio.StreamReader,
        accept: Accept[T],
        rejected: list[str],
        size: list[int],
    ) -> T:
        """Read until a frame is accepted; note why each other frame was not.

        The accepted frame's length goes into ``size``.
        """
        while True:
            chunk = await reader.read(READ_CHUNK)
            if not chunk:
                raise asyncio.IncompleteReadError(b"", None)
            frames = iter(self._framer.feed(chunk))
            for frame in frames:
                try:
                    result = accept(frame)
                except FrameError as err:
                    rejected.append(str(err))
                    continue
                # Frames after the answer in the same read answer nothing.
                self.stats.stray_frames += sum(1 for _ in frames)
                size.append(len(frame))
                return result

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is not None and self._writer is not None:
            return self._reader, self._writer
        reader, writer = await self._open_streams()
        self._reader, self._writer = reader, writer
        self._framer.reset()
        return reader, writer

    async def _drop(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        self._framer.reset()
        if writer is None:
            return
        writer.close()
        try:
            async with asyncio.timeout(self.timeout):
                await writer.wait_closed()
        except TimeoutError:
            # A gateway that lost power never acknowledges the close; do not
            # wait minutes for TCP to give up on it.
            writer.transport.abort()
        except OSError:
            pass  # reset by the peer while closing: it is closed either way

    async def _discard_stale(self, reader: asyncio.StreamReader) -> bool:
        """Throw away input that is already waiting; return False if the peer left.

        A late answer to a request that timed out, or noise, would otherwise
        be read as the answer to the next request. Only bytes already
        received are discarded, framed on the way so that what was thrown
        away is counted: whole frames as stray, the rest (and a frame cut
        off) as noise. A zero timeout lets a read return what is buffered
        and stops it as soon as it would have to wait, so nothing here waits
        for the line to go quiet.
        """
        try:
            while True:
                try:
                    async with asyncio.timeout(0):
                        chunk = await reader.read(READ_CHUNK)
                except TimeoutError:
                    return True
                except OSError:
                    return False
                if not chunk:
                    return False
                self.stats.stray_frames += len(self._framer.feed(chunk))
        finally:
            self._framer.reset()


def _address_of(request: bytes) -> int:
    """Return the ADR a request goes to (characters 3 and 4), 0 if it has none."""
    try:
        return int(request[3:5], 16)
    except ValueError:
        return 0


def _not_an_echo(request: bytes, frame: bytes) -> bytes:
    if frame == request:
        raise FrameError("it is an echo of the request")
    return frame
