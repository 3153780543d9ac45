"""Carry Pylon ASCII frames over TCP, as a transparent RS485 gateway does.

A transparent gateway (the common serial-to-Ethernet adapters) copies bytes
between the socket and the RS485 line without knowing where a frame begins
or ends. So this side has to do what a serial port driver would: send one
request, listen until the carriage return that ends a frame, and treat what
the line does in between with suspicion. RS485 picks up noise when the line
turns around, so bytes before the ``~`` are skipped; a reply that arrives
after its request timed out would be taken for the next request's answer,
so what is already waiting is thrown away before a new request goes out.

Errors keep the two kinds of silence apart: a request that gets no answer
in time is one pack not responding (PackNotResponding), while a socket that
cannot be opened, or is reset or closed, is the bus being down
(BusUnavailable). After a broken connection the next request reconnects.
"""

from __future__ import annotations

import asyncio
from typing import Final

from ..errors import BusUnavailable, FrameError, PackNotResponding

SOI: Final = b"~"
EOI: Final = b"\r"
# Longest frame the framing allows is about 4.1 kB; leave room for noise
# in front of it before deciding that the line is babbling.
READ_LIMIT: Final = 16 * 1024


class AsciiTcpTransport:
    """One TCP connection to a gateway, one transaction on it at a time.

    RS485 is half duplex and a gateway has no idea which answer belongs to
    which question, so requests are strictly serialised with a lock; callers
    queue on the lock rather than in a buffer that could grow.
    """

    def __init__(self, host: str, port: int, *, timeout: float = 1.0) -> None:
        """Remember where the gateway is; nothing is opened until needed."""
        self.host = host
        self.port = port
        self.timeout = timeout
        self._lock = asyncio.Lock()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def where(self) -> str:
        """Return host:port, for messages."""
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        """Return whether a connection is open (as far as this side knows)."""
        return self._writer is not None

    async def connect(self) -> None:
        """Open the connection; raise BusUnavailable if the gateway cannot be reached."""
        async with self._lock:
            await self._open()

    async def close(self) -> None:
        """Close the connection, after any transaction in flight."""
        async with self._lock:
            await self._drop()

    async def transact(self, request: bytes) -> bytes:
        """Send one request and return the frame that answers it.

        The returned bytes run from ``~`` to the carriage return inclusive;
        checking them is the codec's job. Raises PackNotResponding when no
        frame ends within the timeout, BusUnavailable when the connection
        fails (the next call reconnects), and FrameError when the line sends
        so much without a carriage return that no frame can be in it.
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
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, limit=READ_LIMIT
                )
        except TimeoutError as err:
            raise BusUnavailable(
                f"cannot connect to {self.where} within {self.timeout:g} s"
            ) from err
        except OSError as err:
            raise BusUnavailable(
                f"cannot connect to {self.where}: {err.strerror or err!r}"
            ) from err
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
