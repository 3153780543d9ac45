"""The socketcand client: a line full of noise and garbled tokens, and the frames through it.

A bare daemon on loopback greets, opens the channel, enters raw mode and
then sends what each test tells it: noise, tokens that are not frames, and
sound frames. The subscriber must see the sound frames and nothing else;
the rest is dropped and counted, and the link stays up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import contextlib
import random

from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from custom_components.rack_battery.protocol.errors import BusUnavailable
from custom_components.rack_battery.protocol.linkstats import LinkStats
from custom_components.rack_battery.protocol.transport.can import (
    SOCKETCAND_LONGEST,
    CanFrame,
    CanTransport,
    parse_socketcand_frame,
)
from custom_components.rack_battery.protocol.transport.framing import DelimitedFramer

pytestmark = pytest.mark.usefixtures("socket_enabled")

SOUND = (
    b"< frame 356 1700000000.000000 1E14000064000000 >",  # 51.50 V, 10.0 A
    b"< frame 355 1700000000.000100 5A006400 >",  # SoC 90 %, SoH 100 %
    b"< frame 351 1700000000.000200 14 02 E8 03 E8 03 C2 01 >",  # byte by byte
)
GARBLED = (
    b"< frame zz 1.0 00 >",  # no ID
    b"< frame 356 noon 00 >",  # no time
    b"< frame 356 1.0 0 >",  # an odd digit
    b"< frame 800 1.0 00 >",  # past eleven bits
    b"< frame 356 1.0 " + b"00" * 65 + b" >",  # longer than CAN FD
    b"< ok >",  # an answer nobody asked for
)


async def _daemon(after_handshake: Callable[[], bytes]) -> tuple[asyncio.Server, int]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"< hi >")
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            assert (await reader.readuntil(b">")).startswith(b"< open ")
            writer.write(b"< ok >")
            await reader.readuntil(b">")  # rawmode
            writer.write(b"< ok >" + after_handshake())
            await writer.drain()
            await reader.read()  # until the client leaves
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


@pytest.fixture
async def servers() -> AsyncIterator[list[asyncio.Server]]:
    running: list[asyncio.Server] = []
    yield running
    for server in running:
        server.close()
        await server.wait_closed()


async def _listen(
    servers: list[asyncio.Server], payload: bytes, expect: int
) -> tuple[list[CanFrame], CanTransport]:
    server, port = await _daemon(lambda: payload)
    servers.append(server)
    transport = CanTransport("socketcand", f"127.0.0.1:{port}", timeout=2.0)
    heard: list[CanFrame] = []
    enough = asyncio.Event()

    def hear(frame: CanFrame) -> None:
        heard.append(frame)
        if len(heard) >= expect:
            enough.set()

    transport.subscribe(hear)
    await transport.connect()
    try:
        async with asyncio.timeout(5):
            await enough.wait()
    finally:
        await transport.close()
    return heard, transport


async def test_sound_frames_come_through_garbled_ones_are_counted(
    servers: list[asyncio.Server],
) -> None:
    noise = b"\x00\xff junk > more\x80"
    payload = noise + b"".join(g + s for g, s in zip(GARBLED, SOUND * 2, strict=False))
    heard, transport = await _listen(servers, payload, expect=len(SOUND) * 2)
    assert [(f.arbitration_id, f.data) for f in heard] == [
        (0x356, bytes.fromhex("1E14000064000000")),
        (0x355, bytes.fromhex("5A006400")),
        (0x351, bytes.fromhex("1402E803E803C201")),
    ] * 2
    assert transport.stats.stray_frames == len(GARBLED)
    assert transport.stats.noise_bytes == len(noise)


async def test_64_kb_of_noise_is_dropped_and_counted(servers: list[asyncio.Server]) -> None:
    noise = random.Random(5).randbytes(64 * 1024).replace(b"<", b"")
    heard, transport = await _listen(servers, noise + SOUND[0], expect=1)
    assert [frame.arbitration_id for frame in heard] == [0x356]
    assert transport.stats.noise_bytes == len(noise)
    assert transport.stats.stray_frames == 0


async def test_a_refusal_to_open_names_what_the_daemon_said(
    servers: list[asyncio.Server],
) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"< hi >")
        await reader.readuntil(b">")
        writer.write(b"< error could not open bus >")
        await writer.drain()
        with contextlib.suppress(ConnectionError):
            await reader.read()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    servers.append(server)
    port = int(server.sockets[0].getsockname()[1])
    transport = CanTransport("socketcand", f"127.0.0.1:{port}/can7", timeout=2.0)
    with pytest.raises(BusUnavailable, match="could not open can7: could not open bus"):
        await transport.connect()
    assert not transport.connected


# --- fuzz -------------------------------------------------------------------

_TOKEN_ALPHABET = [*b"<> frame0123456789ABCDEF.", 0x00, 0xFF, ord("z")]


@given(st.binary(max_size=SOCKETCAND_LONGEST))
def test_parse_of_arbitrary_tokens(token: bytes) -> None:
    parsed = parse_socketcand_frame(b"<" + token + b">")
    if parsed is not None:
        arbitration_id, data, extended = parsed
        assert 0 <= arbitration_id <= (0x1FFFFFFF if extended else 0x7FF)
        assert len(data) <= 64


def _mutated(data: st.DataObject) -> bytes:
    stream = bytearray(b"".join(data.draw(st.lists(st.sampled_from(SOUND + GARBLED)))))
    for _ in range(data.draw(st.integers(0, 8))):
        index = data.draw(st.integers(0, len(stream)))
        if data.draw(st.booleans()):
            stream[index:index] = data.draw(st.binary(max_size=2048))
        else:
            stream.insert(index, data.draw(st.sampled_from(_TOKEN_ALPHABET)))
    return bytes(stream[: 64 * 1024])


@given(st.data(), st.lists(st.integers(0, 64 * 1024), max_size=10))
@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_the_text_framer_on_mutated_streams(data: st.DataObject, cuts: list[int]) -> None:
    stream = _mutated(data)
    stats = LinkStats()
    framer = DelimitedFramer(
        stats, start=b"<", body=rb"\x20-\x3b\x3d\x3f-\x7e", end=b">", longest=SOCKETCAND_LONGEST
    )
    tokens: list[bytes] = []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        tokens += framer.feed(stream[start:cut])
        start = max(start, cut)
    assert framer.held < SOCKETCAND_LONGEST
    assert stats.noise_bytes + sum(map(len, tokens)) + framer.held == len(stream)
    for token in tokens:
        assert len(token) <= SOCKETCAND_LONGEST
        parse_socketcand_frame(token)  # a frame or None, never an exception
