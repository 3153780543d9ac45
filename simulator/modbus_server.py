"""What every simulated Modbus TCP device shares: a small Modbus TCP server.

A device is a unit number, the register block it holds and an action that
is called on every request to it, which is how values stay live: the action
fills the block from the simulated bank (or keeps what was written), or
answers with a Modbus exception, or raises :class:`Silent` to send nothing
at all. Unit 0 stands in for every unit number not listed (a gateway
answering for a unit with nobody behind it).

The server is the simulator's own rather than pymodbus', so the simulator
runs with whichever pymodbus a Home Assistant line pins (its server API
changed between 3.8 and 3.13), or with none, and its frames are built
independently of any client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
import contextlib
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from .bank import SimBank

READ_FUNCTIONS: Final = (0x03, 0x04)
WRITE_SINGLE: Final = 0x06
WRITE_MULTIPLE: Final = 0x10
# Modbus application protocol: at most 125 registers read, 123 written.
MAX_READ: Final = 125
MAX_WRITE: Final = 123


class ExcCodes(IntEnum):
    """Modbus exception codes a device or gateway answers with."""

    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_ADDRESS = 0x02
    ILLEGAL_VALUE = 0x03
    DEVICE_FAILURE = 0x04
    GATEWAY_NO_RESPONSE = 0x0B


class Silent(Exception):
    """Raised by an action for a request that gets no reply at all."""


Action = Callable[
    [int, int, int, int, list[int], list[int] | list[bool] | None], Awaitable[ExcCodes | None]
]


async def nobody_there(  # noqa: PLR0917 - an action takes six positionals
    function_code: int,
    start_address: int,
    request_address: int,
    count: int,
    registers: list[int],
    values: list[int] | list[bool] | None,
) -> ExcCodes | None:
    """Answer for a unit number with nothing behind it, as a gateway would."""
    return ExcCodes.GATEWAY_NO_RESPONSE


@dataclass(frozen=True)
class SimDevice:
    """One unit: its number, its register block (start, size) and its action.

    The action gets the function code, the block's start, the request's
    address and count, the block to fill (as long as the block) and, for a
    write, the values written.
    """

    unit: int
    start: int
    size: int
    action: Action


def _exception(function: int, code: int) -> bytes:
    return bytes((function | 0x80, code))


async def answer(  # noqa: PLR0911 - one return per Modbus outcome
    device: SimDevice, function: int, data: bytes
) -> bytes | None:
    """Return the reply PDU to a request PDU's function and data, or None for silence."""
    values: list[int] | None = None
    if function in READ_FUNCTIONS and len(data) == 4:
        address = int.from_bytes(data[0:2], "big")
        count = int.from_bytes(data[2:4], "big")
        if not 1 <= count <= MAX_READ:
            return _exception(function, ExcCodes.ILLEGAL_VALUE)
    elif function == WRITE_SINGLE and len(data) == 4:
        address, count = int.from_bytes(data[0:2], "big"), 1
        values = [int.from_bytes(data[2:4], "big")]
    elif function == WRITE_MULTIPLE and len(data) >= 5:
        address = int.from_bytes(data[0:2], "big")
        count = int.from_bytes(data[2:4], "big")
        if not 1 <= count <= MAX_WRITE or data[4] != 2 * count or len(data) != 5 + 2 * count:
            return _exception(function, ExcCodes.ILLEGAL_VALUE)
        values = [int.from_bytes(data[5 + 2 * i : 7 + 2 * i], "big") for i in range(count)]
    else:
        return _exception(function, ExcCodes.ILLEGAL_FUNCTION)
    registers = [0] * device.size
    try:
        code = await device.action(function, device.start, address, count, registers, values)
    except Silent:
        return None
    if code is not None:
        return _exception(function, code)
    offset = address - device.start
    if offset < 0 or offset + count > device.size:
        return _exception(function, ExcCodes.ILLEGAL_ADDRESS)
    if function in READ_FUNCTIONS:
        raw = b"".join(value.to_bytes(2, "big") for value in registers[offset : offset + count])
        return bytes((function, len(raw))) + raw
    # A write is echoed: address and value, or address and count.
    return bytes((function,)) + data[0:4]


@dataclass(kw_only=True)
class ModbusServing:
    """A listening simulator; ``port`` is the port actually bound."""

    host: str
    port: int
    bank: SimBank
    _server: asyncio.Server = field(repr=False)

    async def stop(self) -> None:
        """Stop listening and drop every connection, as a device losing power would."""
        self._server.close()
        self._server.close_clients()
        await self._server.wait_closed()


async def listen(devices: Sequence[SimDevice], host: str, port: int) -> tuple[asyncio.Server, int]:
    """Serve the devices over Modbus TCP; return the server and its bound port.

    A port that is taken raises OSError. Requests on one connection are
    answered in turn; a silent unit's request gets nothing, and the next
    request on the connection is answered as usual.
    """
    by_unit = {device.unit: device for device in devices}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                header = await reader.readexactly(7)
                length = int.from_bytes(header[4:6], "big")
                if header[2:4] != b"\x00\x00" or not 2 <= length <= 254:
                    break  # not Modbus: a device drops the connection
                body = await reader.readexactly(length - 1)
                device = by_unit.get(header[6], by_unit.get(0))
                if device is None:
                    continue
                pdu = await answer(device, body[0], body[1:])
                if pdu is None:
                    continue
                writer.write(header[0:4] + (len(pdu) + 1).to_bytes(2, "big") + header[6:7] + pdu)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, host, port)
    return server, int(server.sockets[0].getsockname()[1])
