"""A pass-through in front of a simulated gateway that watches the traffic.

A real gateway serves one request at a time on its RS485 line, and many
accept only one TCP client. This tap sits between the clients and a
simulator personality and records what a gateway's owner would want to
know: how many connections were opened, which bytes each request carried,
and whether a request arrived while another was still waiting for its
answer (which, on a real line, would garble both).

It knows nothing of the protocol: a request is what a client sends, and it
is answered once the server sends something back. That is enough on a
half-duplex bus, where a well-behaved master never sends before the answer
to its last request has arrived or timed out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
from dataclasses import dataclass, field


@dataclass
class Wiretap:
    """A listening tap; ``port`` is where clients connect."""

    host: str
    port: int
    connections: int = 0
    open_connections: int = 0
    # Every request, in the order it reached the tap.
    requests: list[bytes] = field(default_factory=list)
    # Requests that arrived while another was still unanswered.
    overlaps: int = 0
    most_in_flight: int = 0
    # Bytes the server sent back, in all.
    reply_bytes: int = 0
    _waiting: set[int] = field(default_factory=set, repr=False)
    _server: asyncio.Server | None = field(default=None, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    def note_request(self, client: int, data: bytes) -> None:
        """Count a request from a client, and whether another was still unanswered."""
        if self._waiting - {client}:
            self.overlaps += 1
        self._waiting.add(client)
        self.most_in_flight = max(self.most_in_flight, len(self._waiting))
        self.requests.append(data)

    def note_answer(self, client: int, size: int = 0) -> None:
        """Mark a client's request as answered by ``size`` bytes."""
        self._waiting.discard(client)
        self.reply_bytes += size

    @property
    def request_bytes(self) -> int:
        """Return the bytes of every request, in all."""
        return sum(len(request) for request in self.requests)

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    seen: Callable[[bytes], None],
    delay: float = 0.0,
) -> None:
    """Copy bytes one way until the reader ends, telling ``seen`` of each chunk.

    ``delay`` holds each chunk back that long, as a slow gateway would.
    """
    try:
        while chunk := await reader.read(65536):
            if delay > 0:
                await asyncio.sleep(delay)
            seen(chunk)
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def start_wiretap(
    upstream_host: str,
    upstream_port: int,
    host: str = "127.0.0.1",
    *,
    port: int = 0,
    reply_delay: float = 0.0,
) -> Wiretap:
    """Listen on ``port`` (0: a free one) and relay every connection to the upstream server.

    ``reply_delay`` holds every answer back that many seconds: a gateway far
    away or a slow RS485 line, for a scan that takes its time.
    """
    tap = Wiretap(host=host, port=port)
    numbers = iter(range(1, 1 << 30))

    async def relay(
        client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        number = next(numbers)
        tap.connections += 1
        tap.open_connections += 1
        task = asyncio.current_task()
        assert task is not None
        tap._tasks.add(task)
        try:
            server_reader, server_writer = await asyncio.open_connection(
                upstream_host, upstream_port
            )
        except OSError:
            client_writer.close()
            tap.open_connections -= 1
            tap._tasks.discard(task)
            return
        try:
            await asyncio.gather(
                _pump(client_reader, server_writer, lambda data: tap.note_request(number, data)),
                _pump(
                    server_reader,
                    client_writer,
                    lambda data: tap.note_answer(number, len(data)),
                    reply_delay,
                ),
            )
        finally:
            tap.note_answer(number)
            tap.open_connections -= 1
            tap._tasks.discard(task)
            server_writer.close()
            client_writer.close()

    server = await asyncio.start_server(relay, host, port)
    tap.port = int(server.sockets[0].getsockname()[1])
    tap._server = server
    return tap
