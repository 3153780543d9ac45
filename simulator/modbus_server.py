"""What every simulated Modbus TCP device served by pymodbus shares.

pymodbus 3.13's server calls a device's action on every request, which is
how values stay live; unit 0 stands in for every unit number not listed,
and here answers as an RS485 gateway does for a unit with nobody behind it
(exception 0x0B). Binding is done by hand so that a port that is taken
raises OSError instead of pymodbus' blanket RuntimeError.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import SimDevice

from .bank import SimBank

Action = Callable[
    [int, int, int, int, list[int], list[int] | list[bool] | None], Awaitable[ExcCodes | None]
]


async def nobody_there(  # noqa: PLR0917 - pymodbus calls an action with six positionals
    function_code: int,
    start_address: int,
    request_address: int,
    count: int,
    registers: list[int],
    values: list[int] | list[bool] | None,
) -> ExcCodes | None:
    """Answer for a unit number with nothing behind it, as a gateway would."""
    return ExcCodes.GATEWAY_NO_RESPONSE


@dataclass(kw_only=True)
class ModbusServing:
    """A listening simulator; ``port`` is the port actually bound."""

    host: str
    port: int
    bank: SimBank
    _server: ModbusTcpServer = field(repr=False)

    async def stop(self) -> None:
        """Stop listening and drop every connection, as a device losing power would."""
        listener = self._server.transport
        await self._server.shutdown()  # type: ignore[no-untyped-call]
        if isinstance(listener, asyncio.Server):
            await listener.wait_closed()


async def listen(
    devices: Sequence[SimDevice], host: str, port: int, *, ignore_missing_devices: bool = False
) -> tuple[ModbusTcpServer, int]:
    """Start a pymodbus TCP server for the devices; return it and its bound port.

    ``ignore_missing_devices`` makes pymodbus answer nothing when an action
    raises NoSuchIdException, which is how a silent unit is played.
    """
    server = ModbusTcpServer(
        list(devices), address=(host, port), ignore_missing_devices=ignore_missing_devices
    )
    # What serve_forever(background=True) does, minus turning every failure
    # into a RuntimeError: listen() returns False where binding failed with
    # an OSError (port taken, no such address), which pymodbus only logs.
    if not await server.listen():
        raise OSError(f"cannot listen on {host}:{port}")
    listener = server.transport
    if not isinstance(listener, asyncio.Server) or not listener.sockets:
        await server.shutdown()  # type: ignore[no-untyped-call]
        raise OSError(f"cannot listen on {host}:{port}")
    return server, int(listener.sockets[0].getsockname()[1])
