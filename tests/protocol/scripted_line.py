"""Wires a test drives byte by byte: a loopback TCP line and a pseudo-terminal.

Each stands where a gateway or an RS485 adapter and a misbehaving pack
would: the test reads the request the transport sent, then writes exactly
the bytes it wants the transport to see (noise, echoes, late replies,
foreign frames, half frames), or hangs up.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import tty


class ScriptedTcpLine:
    """A listening loopback port; the test plays the peer of each connection."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.connections = 0  # connections accepted so far
        self._server: asyncio.Server | None = None
        self._peers: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def start(self) -> ScriptedTcpLine:
        """Listen (again, on the same port after a restart)."""

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            await self._peers.put((reader, writer))

        self._server = await asyncio.start_server(accept, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def request(self, size: int) -> bytes:
        """Return the next ``size`` bytes the transport sends (on a new connection if any)."""
        if self._reader is None or not self._peers.empty():
            self._reader, self._writer = await self._peers.get()
        return await self._reader.readexactly(size)

    async def send(self, data: bytes) -> None:
        """Write bytes to the transport."""
        assert self._writer is not None
        self._writer.write(data)
        await self._writer.drain()

    def reset(self) -> None:
        """Drop the current connection with a TCP reset, as a rebooting gateway does."""
        assert self._writer is not None
        sock = self._writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._writer.close()
        self._reader = self._writer = None

    async def stop(self) -> None:
        """Stop listening and hang up (a gateway that goes away)."""
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
        while not self._peers.empty():
            self._peers.get_nowait()[1].close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


class ScriptedPty:
    """A pseudo-terminal pair: the transport opens ``name``, the test plays the line."""

    def __init__(self) -> None:
        self._controller, self._device = os.openpty()
        tty.setraw(self._device)
        self.name = os.ttyname(self._device)
        self._received = bytearray()
        self._arrived = asyncio.Event()
        os.set_blocking(self._controller, False)
        asyncio.get_running_loop().add_reader(self._controller, self._readable)

    def _readable(self) -> None:
        try:
            self._received += os.read(self._controller, 4096)
        except OSError:
            return
        self._arrived.set()

    async def request(self, size: int) -> bytes:
        """Return the next ``size`` bytes the transport wrote to the port."""
        while len(self._received) < size:
            self._arrived.clear()
            await self._arrived.wait()
        data = bytes(self._received[:size])
        del self._received[:size]
        return data

    async def send(self, data: bytes) -> None:
        """Put bytes on the line, for the transport to read."""
        os.write(self._controller, data)

    def close(self) -> None:
        """Close both ends."""
        asyncio.get_running_loop().remove_reader(self._controller)
        os.close(self._controller)
        os.close(self._device)
