"""A bare TCP line for transport tests: it answers each request as it is told.

This stands where a transparent gateway and a misbehaving BMS would: it can
answer with noise, duplicates, silence, or hang up, none of which the
simulator's well-behaved packs do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final


class _HangUp:
    """Close the connection instead of answering."""


HANG_UP: Final = _HangUp()

Reply = bytes | _HangUp | None
Responder = Callable[[bytes], Reply]


@dataclass
class RawLine:
    """A listening line; ``requests`` lists every request it received."""

    host: str
    port: int
    requests: list[bytes]
    _server: asyncio.Server = field(repr=False)
    _writers: set[asyncio.StreamWriter] = field(repr=False)

    async def close(self) -> None:
        """Stop listening and drop the connections."""
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()


async def open_line(respond: Responder) -> RawLine:
    """Listen on a free loopback port, answering each request with ``respond``."""
    requests: list[bytes] = []
    writers: set[asyncio.StreamWriter] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            while True:
                try:
                    request = await reader.readuntil(b"\r")
                except (asyncio.IncompleteReadError, OSError):
                    return
                requests.append(request)
                reply = respond(request)
                if isinstance(reply, _HangUp):
                    return
                if reply:
                    writer.write(reply)
                    await writer.drain()
        finally:
            writers.discard(writer)
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    return RawLine("127.0.0.1", port, requests, server, writers)
