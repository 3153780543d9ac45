"""Listen to a CAN bus through python-can without blocking the event loop.

A battery on CAN is not asked anything: it broadcasts its frames on its own
cycle (Pylontech: each one every second), and whoever listens picks them up.
So this transport is a subscription, not a request and a reply: it opens one
python-can ``Bus`` for its interface and channel, hands every frame that
arrives to the subscribers on the event loop, and can send a frame where a
protocol needs one (an inverter's keep-alive).

python-can is a blocking library, and this has to live with three habits of
it:

- Opening a bus blocks. A USB adapter (``slcan``) is opened and configured
  over its serial line; ``socketcand`` connects over TCP and waits for the
  daemon's greeting with no timeout of its own, and while the daemon refuses
  the connection it retries in a tight loop, logging each try, for ten
  seconds. So the bus is opened in an executor thread, given ``timeout``
  seconds, and a socketcand daemon is first reached once with a plain,
  bounded TCP connect so that "connection refused" is an answer at once.
- Receiving blocks. ``can.Notifier`` reads in a thread of its own (or
  watches the socket's file descriptor on the loop, for ``socketcan``) and
  hands frames to the loop with ``call_soon_threadsafe``: subscribers run
  on the loop, never in python-can's thread.
- Shutting down blocks: the notifier joins its thread, and a bus closes its
  port. Both run in an executor.

A bus whose reader failed (an adapter unplugged, a daemon gone) is
remembered as failed; the next ``connect`` opens it anew.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
import contextlib
from dataclasses import dataclass
import logging
from typing import Any, Final

import can

from ..errors import BusUnavailable

_LOGGER = logging.getLogger(__name__)

# What a CAN battery port runs at out of the box (Pylontech, and the
# SMA/Victron style protocols that copied it).
DEFAULT_BITRATE: Final = 500_000
# How long the notifier's reader thread blocks in one receive; it bounds how
# long closing the bus waits for that thread.
READER_POLL: Final = 0.1
# socketcand's default port, and the CAN interface it serves when the
# channel does not name one.
SOCKETCAND_PORT: Final = 29536
SOCKETCAND_DEFAULT_CHANNEL: Final = "can0"
# The interfaces a user can pick; the transport accepts any python-can knows.
INTERFACES: Final = ("socketcan", "slcan", "socketcand", "virtual")


@dataclass(frozen=True, slots=True)
class CanFrame:
    """One received frame: who sent it, what it holds, when it arrived."""

    arbitration_id: int
    data: bytes
    received_at: float  # event-loop time


type FrameCallback = Callable[[CanFrame], None]


def bus_arguments(interface: str, channel: str, bitrate: int) -> dict[str, Any]:
    """Return the keyword arguments of ``can.Bus`` for an interface and channel.

    The channel is what the user types, in the form each interface knows:
    ``can0`` for socketcan, ``/dev/ttyACM0`` or ``/dev/ttyACM0@115200`` for
    an slcan adapter (the serial speed after the ``@``), and
    ``host:port`` or ``host:port/can1`` for socketcand (the CAN interface on
    the daemon's host after the slash; ``can0`` when left out).
    """
    arguments: dict[str, Any] = {"interface": interface, "channel": channel}
    if interface == "socketcand":
        host, port, remote = parse_socketcand_channel(channel)
        arguments.update(host=host, port=port, channel=remote)
    elif interface in ("slcan", "socketcan"):
        # socketcan takes the bitrate from the kernel (``ip link``) and
        # ignores it here; slcan sets it on the adapter.
        arguments["bitrate"] = bitrate
    # The virtual bus has no bitrate: python-can would pass it on unused.
    if interface == "virtual":
        # Frames one bus sends are not handed back to itself.
        arguments["receive_own_messages"] = False
    return arguments


def parse_socketcand_channel(channel: str) -> tuple[str, int, str]:
    """Split a socketcand channel, ``host[:port][/interface]``, into its parts."""
    address, _, remote = channel.partition("/")
    host, colon, port_text = address.rpartition(":")
    if not colon:
        host, port_text = address, str(SOCKETCAND_PORT)
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"socketcand channel {channel!r} is not host:port[/interface]")
    return host, int(port_text), remote or SOCKETCAND_DEFAULT_CHANNEL


class _Relay(can.Listener):
    """Hands frames from python-can to the transport, on the event loop."""

    def __init__(self, transport: CanTransport) -> None:
        self._transport = transport

    def on_message_received(self, msg: can.Message) -> None:
        self._transport._deliver(msg)

    def on_error(self, exc: Exception) -> None:
        self._transport._fail(exc)


class CanTransport:
    """One python-can bus, its frames handed to subscribers on the event loop.

    Several drivers may subscribe to the same transport (two banks cannot
    share a CAN bus, but a scan and a bank can), and each gets every frame.
    """

    def __init__(
        self,
        interface: str,
        channel: str,
        *,
        bitrate: int = DEFAULT_BITRATE,
        timeout: float = 3.0,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        """Remember the bus; nothing is opened until ``connect``.

        ``options`` go to ``can.Bus`` as they are, for what an interface
        needs beyond the channel (a python-can interface's own settings).
        """
        self.interface = interface
        self.channel = channel
        self.bitrate = bitrate
        self.timeout = timeout
        self._options = dict(options or {})
        self._lock = asyncio.Lock()
        self._bus: can.BusABC | None = None
        self._notifier: can.Notifier | None = None
        self._subscribers: list[FrameCallback] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.failure: str | None = None

    @property
    def where(self) -> str:
        """Return the interface and channel, for messages."""
        return f"{self.interface} {self.channel}"

    @property
    def connected(self) -> bool:
        """Return whether the bus is open and its reader alive."""
        return self._bus is not None and self.failure is None

    def subscribe(self, callback: FrameCallback) -> Callable[[], None]:
        """Call ``callback`` on the loop with every frame; return the unsubscriber."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    async def connect(self) -> None:
        """Open the bus; raise BusUnavailable when the interface cannot be opened."""
        async with self._lock:
            if self.connected:
                return
            await self._shutdown()
            self._loop = asyncio.get_running_loop()
            arguments = self._arguments()
            if self.interface == "socketcand":
                await self._reach_daemon(arguments["host"], arguments["port"])
            bus = await self._open_bus(arguments)
            self.failure = None
            self._bus = bus
            self._notifier = can.Notifier(bus, [_Relay(self)], timeout=READER_POLL, loop=self._loop)

    async def close(self) -> None:
        """Stop listening and release the interface."""
        async with self._lock:
            await self._shutdown()

    async def reopen_later(self) -> None:
        """Release the interface so that the next ``connect`` opens it anew.

        For a bus that has gone quiet. python-can does not always notice a
        far end that went away: its socketcand reader takes a closed
        connection for an empty read and goes on reading it, so only
        reopening finds out whether the daemon is still there.
        """
        await self.close()

    async def send(self, arbitration_id: int, data: bytes) -> None:
        """Send one standard (11-bit) frame; raise BusUnavailable if the bus is gone."""
        await self.connect()
        bus = self._bus
        if bus is None:  # closed while this call waited
            raise BusUnavailable(f"{self.where} is closed")
        message = can.Message(arbitration_id=arbitration_id, data=data, is_extended_id=False)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, bus.send, message)
        except (can.CanError, OSError, ValueError) as err:
            raise BusUnavailable(f"cannot send on {self.where}: {err}") from err

    def _arguments(self) -> dict[str, Any]:
        try:
            arguments = bus_arguments(self.interface, self.channel, self.bitrate)
        except ValueError as err:
            raise BusUnavailable(str(err)) from err
        return {**arguments, **self._options}

    async def _reach_daemon(self, host: str, port: int) -> None:
        """Try the daemon's port once, with a timeout python-can does not offer."""
        try:
            async with asyncio.timeout(self.timeout):
                _, writer = await asyncio.open_connection(host, port)
        except TimeoutError as err:
            raise BusUnavailable(
                f"socketcand at {host}:{port} did not accept within {self.timeout:g} s"
            ) from err
        except OSError as err:
            raise BusUnavailable(
                f"cannot reach socketcand at {host}:{port}: {err.strerror or err!r}"
            ) from err
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    async def _open_bus(self, arguments: dict[str, Any]) -> can.BusABC:
        loop = asyncio.get_running_loop()
        opening = asyncio.ensure_future(loop.run_in_executor(None, lambda: can.Bus(**arguments)))
        try:
            async with asyncio.timeout(self.timeout):
                bus: can.BusABC = await asyncio.shield(opening)
        except TimeoutError as err:
            # The thread goes on; whatever bus it opens in the end is closed.
            opening.add_done_callback(_close_late_bus)
            raise BusUnavailable(f"{self.where} did not open within {self.timeout:g} s") from err
        except asyncio.CancelledError:
            opening.add_done_callback(_close_late_bus)
            raise
        except (can.CanError, OSError, ValueError, ImportError, TypeError) as err:
            # CanInterfaceNotImplementedError (an unknown interface, or one
            # whose library is missing) is a CanError; a serial port that
            # does not exist is an OSError from pyserial.
            raise BusUnavailable(f"cannot open {self.where}: {err}") from err
        return bus

    async def _shutdown(self) -> None:
        notifier, self._notifier = self._notifier, None
        bus, self._bus = self._bus, None
        loop = asyncio.get_running_loop()
        if notifier is not None:
            if _watches_descriptor(bus):
                # The notifier watches the socket on the loop: removing the
                # reader must happen on the loop, and there is no thread to join.
                notifier.stop(timeout=0)
            else:
                await loop.run_in_executor(None, notifier.stop, 5 * READER_POLL + 1.0)
        if bus is not None:
            try:
                await loop.run_in_executor(None, bus.shutdown)
            except (can.CanError, OSError) as err:
                _LOGGER.debug("closing %s: %s", self.where, err)

    def _deliver(self, msg: can.Message) -> None:
        if msg.is_error_frame or msg.is_remote_frame or msg.is_extended_id:
            # The battery protocols here use standard data frames only.
            return
        loop = self._loop
        frame = CanFrame(
            arbitration_id=msg.arbitration_id,
            data=bytes(msg.data),
            received_at=loop.time() if loop is not None else 0.0,
        )
        for callback in list(self._subscribers):
            callback(frame)

    def _fail(self, exc: Exception) -> None:
        # The reader thread has died with this error: no frame will come.
        self.failure = f"{self.where} stopped receiving: {exc}"
        _LOGGER.debug(self.failure)


def _watches_descriptor(bus: can.BusABC | None) -> bool:
    if bus is None:
        return False
    try:
        return int(bus.fileno()) >= 0
    except NotImplementedError:
        return False


def _close_late_bus(opening: asyncio.Future[can.BusABC]) -> None:
    if opening.cancelled() or opening.exception() is not None:
        return
    bus = opening.result()
    # shutdown() may block; it runs in a thread of its own.
    asyncio.get_running_loop().run_in_executor(None, bus.shutdown)
