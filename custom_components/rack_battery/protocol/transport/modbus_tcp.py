"""Carry Modbus requests over TCP, to a Modbus TCP device or a TCP-to-RTU gateway.

Rack batteries speak Modbus RTU on RS485; Home Assistant usually reaches
them through a gateway that turns Modbus TCP into RTU. Such a gateway
answers for packs it cannot reach itself: exception 0x0B when the pack on
the line stayed silent, 0x0A when it has no path to that unit at all. Both
mean one pack is not responding while the bus is fine, and that is how they
are reported here. Cheaper gateways simply let the request time out, which
is reported the same way.

Errors keep the two kinds of silence apart: a request without an answer is
one pack not responding (PackNotResponding), while a connection that cannot
be opened or is lost is the bus being down (BusUnavailable). After a lost
connection the next request reconnects. Any other Modbus exception is the
pack refusing what was asked, a FrameError that names the code.

The work is done by pymodbus' asyncio client, with its own habits turned
off where they would hide what the poll has to decide: it retries nothing,
does not reconnect in the background, and does not close the connection
after a few silent requests in a row (one dead pack on a shared line would
otherwise keep knocking the whole bus over).

The same transaction logic serves every Modbus wire: :class:`ModbusTransport`
is parameterised by the pymodbus client it opens, and the RTU wires (a
serial port, raw RTU frames over TCP) live in ``modbus_rtu.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
import sys
from typing import ClassVar, Final

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from ..errors import BusUnavailable, FrameError, PackNotResponding

# Modbus exception codes, as the Modbus application protocol names them.
EXCEPTION_NAMES: Final[dict[int, str]] = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "server device failure",
    0x05: "acknowledge",
    0x06: "server device busy",
    0x07: "negative acknowledge",
    0x08: "memory parity error",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target device failed to respond",
}
# What a gateway says when the unit behind it cannot be reached.
GATEWAY_PATH_UNAVAILABLE: Final = 0x0A
GATEWAY_TARGET_SILENT: Final = 0x0B
# A Modbus frame holds at most 125 registers in a read and 123 in a write.
MAX_READ: Final = 125
MAX_WRITE: Final = 123
MAX_COILS: Final = 2000


class ModbusExceptionError(FrameError):
    """A device answered with a Modbus exception other than the gateway's two.

    The code is kept so a driver can react to one in particular, such as
    0x02 (illegal data address) from firmware that predates a register.
    """

    def __init__(self, device_id: int, code: int) -> None:
        """Name the device and the code in the message."""
        self.device_id = device_id
        self.code = code
        name = EXCEPTION_NAMES.get(code, "unknown exception")
        super().__init__(f"device {device_id} answered Modbus exception 0x{code:02X} ({name})")


class ModbusTransport:
    """One Modbus connection, one transaction on it at a time.

    Behind a gateway all packs share one half-duplex RS485 line, and a
    gateway handles one request at a time however many arrive; so requests
    are strictly serialised with a lock, and callers wait on the lock rather
    than in a queue that could grow.
    """

    def __init__(self, *, timeout: float = 1.0, frame_gap: float = 0.0) -> None:
        """Set the timing; nothing is opened until needed.

        ``frame_gap`` is the quiet time, in seconds, kept between the end of
        one transaction and the start of the next. A gateway forwards
        requests to the RS485 line as fast as they come, while BMS documents
        ask for a pause between frames (PACE: more than 100 ms) that a pack
        may need to be ready for the next request.
        """
        self.timeout = timeout
        self.frame_gap = frame_gap
        self._lock = asyncio.Lock()
        self._client: ModbusBaseClient | None = None
        self._quiet_until = 0.0  # event-loop time

    @property
    def where(self) -> str:
        """Return where the bus is, for messages."""
        raise NotImplementedError

    def _new_client(self) -> ModbusBaseClient:
        """Return a pymodbus client for this wire, not yet connected.

        It must retry nothing and reconnect nothing in the background: the
        poll decides whether a silent pack is asked again, and the next
        request reconnects.
        """
        raise NotImplementedError

    async def _cannot_connect(self) -> BusUnavailable:
        """Return the error for a connection that could not be opened."""
        return BusUnavailable(f"cannot connect to {self.where}")

    @property
    def connected(self) -> bool:
        """Return whether a connection is open (as far as this side knows)."""
        return self._client is not None and self._client.connected

    async def connect(self) -> None:
        """Open the connection; raise BusUnavailable if it cannot be opened."""
        async with self._lock:
            await self._open()

    async def close(self) -> None:
        """Close the connection, after any transaction in flight."""
        async with self._lock:
            self._drop()

    async def read_holding_registers(self, device_id: int, address: int, count: int) -> list[int]:
        """Read holding registers (function 0x03) from one device."""
        _check_count(count, MAX_READ)
        response = await self._transact(
            device_id,
            lambda client: client.read_holding_registers(address, count=count, device_id=device_id),
        )
        return _registers(device_id, response, count)

    async def read_coils(self, device_id: int, address: int, count: int) -> list[bool]:
        """Read coils (function 0x01) from one device."""
        _check_count(count, MAX_COILS)
        response = await self._transact(
            device_id,
            lambda client: client.read_coils(address, count=count, device_id=device_id),
        )
        # A reply carries whole bytes: pymodbus hands back the padding bits too.
        bits = list(response.bits)[:count]
        if len(bits) != count:
            raise FrameError(f"device {device_id} sent {len(bits)} coils, asked {count}")
        return bits

    async def read_input_registers(self, device_id: int, address: int, count: int) -> list[int]:
        """Read input registers (function 0x04) from one device."""
        _check_count(count, MAX_READ)
        response = await self._transact(
            device_id,
            lambda client: client.read_input_registers(address, count=count, device_id=device_id),
        )
        return _registers(device_id, response, count)

    async def write_registers(self, device_id: int, address: int, values: Sequence[int]) -> None:
        """Write registers (function 0x10) of one device."""
        _check_count(len(values), MAX_WRITE)
        if any(not 0 <= value <= 0xFFFF for value in values):
            raise ValueError("register values are 16-bit: 0..65535")
        words = list(values)
        await self._transact(
            device_id,
            lambda client: client.write_registers(address, words, device_id=device_id),
        )

    async def _open(self) -> ModbusBaseClient:
        if self._client is not None and self._client.connected:
            return self._client
        self._drop()
        client = self._new_client()
        # pymodbus closes the connection after a few unanswered requests in a
        # row; one silent pack would then take the bus down with it.
        client.set_max_no_responses(sys.maxsize)
        try:
            connected = await client.connect()
        except BaseException:
            # Cancelled while connecting: leave no socket behind.
            client.close()
            raise
        if not connected:
            client.close()
            raise await self._cannot_connect()
        self._client = client
        return client

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def _transact(
        self,
        device_id: int,
        request: Callable[[ModbusBaseClient], Awaitable[ModbusPDU]],
    ) -> ModbusPDU:
        async with self._lock:
            client = await self._open()
            loop = asyncio.get_running_loop()
            if (wait := self._quiet_until - loop.time()) > 0:
                await asyncio.sleep(wait)
            try:
                response = await request(client)
            except ConnectionException as err:
                self._drop()
                raise BusUnavailable(f"lost the connection to {self.where}") from err
            except ModbusIOException as err:
                if isinstance(err.__cause__, asyncio.CancelledError):
                    # pymodbus turns a cancellation into an I/O error; hand
                    # the cancellation back so timeouts and unloads work.
                    raise err.__cause__ from None
                if not client.connected:
                    # The request waited out its timeout because the peer
                    # went away, not because the pack was silent.
                    self._drop()
                    raise BusUnavailable(f"lost the connection to {self.where}") from err
                raise PackNotResponding(
                    f"device {device_id} did not answer within {self.timeout:g} s"
                ) from err
            except ModbusException as err:
                raise FrameError(f"device {device_id}: {err}") from err
            finally:
                self._quiet_until = loop.time() + self.frame_gap
        if response.isError():
            code = response.exception_code
            if code in (GATEWAY_TARGET_SILENT, GATEWAY_PATH_UNAVAILABLE):
                raise PackNotResponding(
                    f"device {device_id} did not answer the gateway "
                    f"(Modbus exception 0x{code:02X}, {EXCEPTION_NAMES[code]})"
                )
            raise ModbusExceptionError(device_id, code)
        return response


class ModbusTcpTransport(ModbusTransport):
    """Modbus TCP to a device or to a gateway that turns it into RTU."""

    def __init__(
        self, host: str, port: int, *, timeout: float = 1.0, frame_gap: float = 0.0
    ) -> None:
        """Remember where the gateway is; nothing is opened until needed."""
        super().__init__(timeout=timeout, frame_gap=frame_gap)
        self.host = host
        self.port = port

    @property
    def where(self) -> str:
        """Return host:port, for messages."""
        return f"{self.host}:{self.port}"

    # How requests are framed inside the TCP stream: Modbus TCP's own header.
    framer: ClassVar[FramerType] = FramerType.SOCKET

    def _new_client(self) -> ModbusBaseClient:
        return AsyncModbusTcpClient(
            self.host,
            port=self.port,
            framer=self.framer,
            timeout=self.timeout,
            retries=0,
            reconnect_delay=0,
        )


def _check_count(count: int, most: int) -> None:
    if not 1 <= count <= most:
        raise ValueError(f"a Modbus request carries 1 to {most} registers, not {count}")


def _registers(device_id: int, response: ModbusPDU, count: int) -> list[int]:
    registers = list(response.registers)
    if len(registers) != count:
        raise FrameError(f"device {device_id} sent {len(registers)} registers, asked {count}")
    return registers
