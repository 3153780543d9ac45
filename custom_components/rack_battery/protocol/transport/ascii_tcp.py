"""Carry Pylon ASCII frames over TCP, as a transparent RS485 gateway does.

The gateway copies bytes between the socket and the RS485 line; everything
about finding frames in them is shared with the serial port and lives in
:mod:`.ascii_stream`. What is particular to TCP is how the line is reached,
and that a gateway may refuse or drop the connection: both are the bus
being down (BusUnavailable).
"""

from __future__ import annotations

import asyncio

from ..errors import BusUnavailable
from ..timing import GATEWAY_HOP
from .ascii_stream import EOI, READ_LIMIT, SOI, AsciiStreamTransport

__all__ = ["EOI", "READ_LIMIT", "SOI", "AsciiTcpTransport"]


class AsciiTcpTransport(AsciiStreamTransport):
    """One TCP connection to a gateway, one transaction on it at a time."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 1.0,
        baudrate: int | None = None,
        wire_timed: bool = False,
    ) -> None:
        """Remember where the gateway is; nothing is opened until needed.

        ``baudrate`` is the speed of the RS485 line behind the gateway, if
        known; timed by it, a request also allows for the gateway's own hop
        (``timing.GATEWAY_HOP``).
        """
        super().__init__(timeout=timeout, baudrate=baudrate, wire_timed=wire_timed)
        self.timer.hop = GATEWAY_HOP
        self.host = host
        self.port = port

    @property
    def where(self) -> str:
        """Return host:port, for messages."""
        return f"{self.host}:{self.port}"

    async def _open_streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            async with asyncio.timeout(self.timeout):
                return await asyncio.open_connection(self.host, self.port, limit=READ_LIMIT)
        except TimeoutError as err:
            raise BusUnavailable(
                f"cannot connect to {self.where} within {self.timeout:g} s"
            ) from err
        except OSError as err:
            raise BusUnavailable(
                f"cannot connect to {self.where}: {err.strerror or err!r}"
            ) from err
