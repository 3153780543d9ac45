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
  over its serial line, so the bus is opened in an executor thread, given
  ``timeout`` seconds.
- Receiving blocks. ``can.Notifier`` reads in a thread of its own (or
  watches the socket's file descriptor on the loop, for ``socketcan``) and
  hands frames to the loop with ``call_soon_threadsafe``: subscribers run
  on the loop, never in python-can's thread.
- Shutting down blocks: the notifier joins its thread, and a bus closes its
  port. Both run in an executor.

A bus whose reader failed (an adapter unplugged, a daemon gone) is
remembered as failed; the next ``connect`` opens it anew.

socketcand (a daemon serving a CAN interface as text over TCP: ``< frame
356 1700000000.000000 1E14000064000000 >``) is spoken here on the event
loop rather than through python-can's client, which waits for the daemon
with no timeout, retries a refused connection in a tight loop for ten
seconds, scans its buffer again on every read, and lets one garbled or
non-ASCII byte end its reader for good. :class:`SocketcandClient` frames
the text with the shared one-pass framer and a bounded buffer: noise is
dropped and counted, a token that is not a sound frame is dropped and
counted as a stray frame, and the link goes on. What the link has seen is
in the transport's ``stats``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
import contextlib
from dataclasses import dataclass
import logging
from typing import Any, Final

import can

from ..errors import BusUnavailable
from ..linkstats import LinkStats
from .framing import DelimitedFramer

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
# The longest socketcand token: "< frame 1FFFFFFF 4294967295.999999 ", 64
# data bytes of CAN FD in hex and " >" make 167 characters.
SOCKETCAND_LONGEST: Final = 256
# Printable ASCII but the markers: what may stand between "<" and ">".
_SOCKETCAND_TEXT: Final = rb"\x20-\x3b\x3d\x3f-\x7e"
_SOCKETCAND_READ: Final = 4096
_STANDARD_ID: Final = 0x7FF
_EXTENDED_ID: Final = 0x1FFFFFFF


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


def parse_socketcand_frame(token: bytes) -> tuple[int, bytes, bool] | None:
    """Return the ID, data and extended flag of a ``< frame ... >`` token; None if it is not one.

    socketcand sends ``< frame ID SECONDS.MICROS DATA >``, the ID in three
    hex digits (standard) or eight (extended) and the data as hex, in one
    run or (in some versions) byte by byte. Anything that does not add up
    (an ID out of range, an odd number of digits, more than 64 bytes) is
    not a frame.
    """
    words = token[1:-1].split()
    if len(words) < 3 or words[0] != b"frame":
        return None
    identifier, stamp, data_words = words[1], words[2], words[3:]
    digits = b"".join(data_words)
    try:
        arbitration_id = int(identifier, 16)
        float(stamp)
        data = bytes.fromhex(digits.decode("ascii"))
    except ValueError:
        return None
    extended = len(identifier) == 8
    if len(identifier) not in (3, 8) or len(data) > 64:
        return None
    if arbitration_id > (_EXTENDED_ID if extended else _STANDARD_ID):
        return None
    return arbitration_id, data, extended


class SocketcandClient:
    """One connection to a socketcand daemon in raw mode, read on the event loop."""

    def __init__(
        self,
        host: str,
        port: int,
        channel: str,
        *,
        timeout: float,
        stats: LinkStats,
        deliver: Callable[[int, bytes], None],
        fail: Callable[[Exception], None],
    ) -> None:
        """Remember the daemon; ``deliver`` gets each standard frame, ``fail`` a lost link."""
        self.host = host
        self.port = port
        self.channel = channel
        self.timeout = timeout
        self.stats = stats
        self._deliver = deliver
        self._fail = fail
        self._framer = DelimitedFramer(
            stats, start=b"<", body=_SOCKETCAND_TEXT, end=b">", longest=SOCKETCAND_LONGEST
        )
        self._pending: deque[bytes] = deque()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def where(self) -> str:
        """Return the daemon's address, for messages."""
        return f"socketcand at {self.host}:{self.port}"

    async def open(self) -> None:
        """Connect, open the channel in raw mode and start reading; raise BusUnavailable."""
        try:
            async with asyncio.timeout(self.timeout):
                self._reader, self._writer = await asyncio.open_connection(
                    self.host, self.port, limit=4 * _SOCKETCAND_READ
                )
                await self._expect(b"hi", "greet")
                await self._say(f"< open {self.channel} >")
                await self._expect(b"ok", f"open {self.channel}")
                await self._say("< rawmode >")
                await self._expect(b"ok", "enter raw mode")
        except TimeoutError as err:
            await self.close()
            raise BusUnavailable(f"{self.where} did not answer within {self.timeout:g} s") from err
        except (OSError, asyncio.IncompleteReadError) as err:
            await self.close()
            reason = err.strerror if isinstance(err, OSError) and err.strerror else repr(err)
            raise BusUnavailable(f"cannot reach {self.where}: {reason}") from err
        except BusUnavailable:
            await self.close()
            raise
        self._task = asyncio.create_task(self._read_frames(), name=f"rack_battery {self.where}")

    async def send(self, arbitration_id: int, data: bytes) -> None:
        """Send one standard frame; raise BusUnavailable if the link is gone."""
        payload = " ".join(f"{byte:02X}" for byte in data)
        try:
            await self._say(f"< send {arbitration_id:03X} {len(data)} {payload} >")
        except OSError as err:
            raise BusUnavailable(f"cannot send to {self.where}: {err}") from err

    async def close(self) -> None:
        """Stop reading and close the connection."""
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        writer, self._writer, self._reader = self._writer, None, None
        self._framer.reset()
        if writer is not None:
            writer.transport.abort()

    async def _say(self, text: str) -> None:
        if self._writer is None:
            raise BusUnavailable(f"{self.where} is closed")
        self._writer.write(text.encode("ascii"))
        await self._writer.drain()

    async def _next_token(self) -> bytes:
        while not self._pending:
            if self._reader is None:
                raise BusUnavailable(f"{self.where} is closed")
            chunk = await self._reader.read(_SOCKETCAND_READ)
            if not chunk:
                raise asyncio.IncompleteReadError(b"", None)
            self._pending.extend(self._framer.feed(chunk))
        return self._pending.popleft()

    async def _expect(self, word: bytes, doing: str) -> None:
        """Wait for the daemon's answer to a handshake step; raise BusUnavailable on an error."""
        while True:
            words = (await self._next_token())[1:-1].split()
            if words == [word]:
                return
            if words[:1] == [b"error"]:
                said = b" ".join(words[1:]).decode("ascii")
                raise BusUnavailable(f"{self.where} could not {doing}: {said}")
            self.stats.stray_frames += 1

    async def _read_frames(self) -> None:
        try:
            while True:
                self._take(await self._next_token())
        except asyncio.CancelledError:
            raise
        except (OSError, asyncio.IncompleteReadError, BusUnavailable) as err:
            self._fail(ConnectionError(f"{self.where} closed the connection: {err!r}"))

    def _take(self, token: bytes) -> None:
        parsed = parse_socketcand_frame(token)
        if parsed is None:
            # Garbled, or an answer nobody asked for: nothing to deliver.
            self.stats.stray_frames += 1
            return
        arbitration_id, data, extended = parsed
        if not extended:  # the battery protocols here use standard frames only
            self._deliver(arbitration_id, data)


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
        self._client: SocketcandClient | None = None
        self._subscribers: list[FrameCallback] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.failure: str | None = None
        self.stats = LinkStats()

    @property
    def where(self) -> str:
        """Return the interface and channel, for messages."""
        return f"{self.interface} {self.channel}"

    @property
    def connected(self) -> bool:
        """Return whether the bus is open and its reader alive."""
        return (self._bus is not None or self._client is not None) and self.failure is None

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
                client = SocketcandClient(
                    arguments["host"],
                    arguments["port"],
                    arguments["channel"],
                    timeout=self.timeout,
                    stats=self.stats,
                    deliver=self._deliver_frame,
                    fail=self._fail,
                )
                await client.open()
                self.failure = None
                self._client = client
                return
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
        if self._client is not None:
            await self._client.send(arbitration_id, data)
            return
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
        client, self._client = self._client, None
        if client is not None:
            await client.close()
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
        if msg.is_error_frame:
            # What the controller could not receive intact: dropped, counted.
            self.stats.stray_frames += 1
            return
        if msg.is_remote_frame or msg.is_extended_id:
            # The battery protocols here use standard data frames only.
            return
        self._deliver_frame(msg.arbitration_id, bytes(msg.data))

    def _deliver_frame(self, arbitration_id: int, data: bytes) -> None:
        loop = self._loop
        frame = CanFrame(
            arbitration_id=arbitration_id,
            data=data,
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
