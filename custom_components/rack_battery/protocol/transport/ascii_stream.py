"""Carry Pylon ASCII frames over a byte stream: a serial port or a TCP gateway.

Neither a USB RS485 adapter nor a transparent gateway (the common
serial-to-Ethernet adapters) knows where a frame begins or ends: both copy
bytes. So this side has to send one request, listen until the carriage
return that ends a frame, and treat what the line does in between with
suspicion. RS485 picks up noise when the line turns around, so bytes before
the ``~`` are skipped; a reply that arrives after its request timed out
would be taken for the next request's answer, so what is already waiting is
thrown away before a new request goes out.

Errors keep the two kinds of silence apart: a request that gets no answer
in time is one pack not responding (PackNotResponding), while a port or
socket that cannot be opened, or that fails under us, is the bus being down
(BusUnavailable). After a broken stream the next request reopens it.

The reading and framing live in :class:`AsciiStreamTransport`; a subclass
only says how its stream is opened (``ascii_tcp``, ``ascii_serial``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import asyncio
from typing import Final

from ..errors import BusUnavailable, FrameError, PackNotResponding

SOI: Final = b"~"
EOI: Final = b"\r"
# Longest frame the framing allows is about 4.1 kB; leave room for noise
# in front of it before deciding that the line is babbling.
READ_LIMIT: Final = 16 * 1024


class AsciiStreamTransport(ABC):
    """One stream to an RS485 line, one transaction on it at a time.

    RS485 is half duplex and nothing between us and the packs knows which
    answer belongs to which question, so requests are strictly serialised
    with a lock; callers queue on the lock rather than in a buffer that
    could grow.
    """

    def __init__(self, *, timeout: float = 1.0) -> None:
        """Nothing is opened until needed."""
        self.timeout = timeout
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
        """Send one request and return the frame that answers it.

        The returned bytes run from ``~`` to the carriage return inclusive;
        checking them is the codec's job. Raises PackNotResponding when no
        frame ends within the timeout, BusUnavailable when the stream fails
        (the next call reopens it), and FrameError when the line sends so
        much without a carriage return that no frame can be in it.
        """
        async with self._lock:
            reader, writer = await self._open()
            if not await self._discard_stale(reader):
                # The gateway closed the idle connection (many do after a
                # minute or so): that is not an outage, so reopen once.
                await self._drop()
                reader, writer = await self._open()
            try:
                async with asyncio.timeout(self.timeout):
                    writer.write(request)
                    await writer.drain()
                    return await self._read_frame(reader)
            except TimeoutError as err:
                raise PackNotResponding(
                    f"no answer from {self.where} within {self.timeout:g} s"
                ) from err
            except asyncio.LimitOverrunError as err:
                await self._drop()
                raise FrameError(
                    f"{self.where} sent over {READ_LIMIT} bytes without ending a frame"
                ) from err
            except asyncio.IncompleteReadError as err:
                await self._drop()
                raise BusUnavailable(f"{self.where} closed the connection") from err
            except OSError as err:
                await self._drop()
                raise BusUnavailable(f"{self.where}: {err.strerror or err!r}") from err

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is not None and self._writer is not None:
            return self._reader, self._writer
        reader, writer = await self._open_streams()
        self._reader, self._writer = reader, writer
        return reader, writer

    async def _drop(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
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

    @staticmethod
    async def _discard_stale(reader: asyncio.StreamReader) -> bool:
        """Throw away input that is already waiting; return False if the peer left.

        A late answer to a request that timed out, or noise, would otherwise
        be read as the answer to the next request. Only bytes already
        received are discarded: a zero timeout lets a read return what is
        buffered and stops it as soon as it would have to wait, so nothing
        here waits for the line to go quiet.
        """
        while True:
            try:
                async with asyncio.timeout(0):
                    chunk = await reader.read(READ_LIMIT)
            except TimeoutError:
                return True
            except OSError:
                return False
            if not chunk:
                return False

    @staticmethod
    async def _read_frame(reader: asyncio.StreamReader) -> bytes:
        while True:
            chunk = await reader.readuntil(EOI)
            start = chunk.rfind(SOI)
            if start >= 0:
                # Hex characters never include "~", so the last one starts
                # the frame; anything in front of it was noise.
                return chunk[start:]
            # Noise that happened to end in a carriage return: keep listening.
