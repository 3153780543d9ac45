"""The ASCII-over-TCP transport against a real loopback socket that misbehaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from custom_components.rack_battery.protocol.errors import (
    BusUnavailable,
    FrameError,
    PackNotResponding,
)
from custom_components.rack_battery.protocol.transport.ascii_tcp import AsciiTcpTransport

from .raw_line import HANG_UP, RawLine, Reply, Responder, open_line

# Home Assistant's test plugin blocks sockets; these tests need loopback TCP.
pytestmark = pytest.mark.usefixtures("socket_enabled")

# Hand-checked frames (see test_pylon_frame.py): a request to ADR 2 and the
# master's "cannot reach" answer for ADR 3.
REQUEST_ADR2 = b"~20024642E00202FD33\r"
REQUEST_ADR3 = b"~20034642E00203FD31\r"
RTN91_ADR3 = b"~200346910000FDA7\r"


@pytest.fixture
async def lines() -> AsyncIterator[list[RawLine]]:
    opened: list[RawLine] = []
    yield opened
    for line in opened:
        await line.close()


async def _transport(
    lines: list[RawLine], respond: Responder, *, answer_within: float = 1.0
) -> AsciiTcpTransport:
    line = await open_line(respond)
    lines.append(line)
    return AsciiTcpTransport(line.host, line.port, timeout=answer_within)


async def test_one_request_one_frame(lines: list[RawLine]) -> None:
    transport = await _transport(lines, lambda _request: RTN91_ADR3)
    assert await transport.transact(REQUEST_ADR3) == RTN91_ADR3
    assert lines[0].requests == [REQUEST_ADR3]
    await transport.close()


async def test_line_noise_before_the_frame_is_skipped(lines: list[RawLine]) -> None:
    # A turn-around glitch that ends in its own CR, then junk with a stray
    # "~" right before the real frame.
    noise = b"\x00\xfe\x7f\r" + b"\x13~~junk"
    transport = await _transport(lines, lambda _request: noise + RTN91_ADR3)
    assert await transport.transact(REQUEST_ADR3) == RTN91_ADR3
    await transport.close()


async def test_stale_input_is_discarded_before_a_request(lines: list[RawLine]) -> None:
    # The line answers every request twice, as an echoing gateway or a
    # late retry would; the second copy must not answer the next request.
    def twice(request: bytes) -> bytes:
        reply = b"~" + request[1:5] + b"..." + b"\r"
        return reply * 2

    transport = await _transport(lines, twice)
    assert await transport.transact(REQUEST_ADR2) == b"~2002...\r"
    assert await transport.transact(REQUEST_ADR3) == b"~2003...\r"
    await transport.close()


async def test_silence_is_a_pack_not_responding(lines: list[RawLine]) -> None:
    transport = await _transport(lines, lambda _request: None, answer_within=0.2)
    with pytest.raises(PackNotResponding, match=r"no answer from 127\.0\.0\.1:\d+ within 0\.2 s"):
        await transport.transact(REQUEST_ADR2)
    # The connection itself is fine and stays open.
    assert transport.connected
    await transport.close()


async def test_a_half_frame_then_silence_times_out(lines: list[RawLine]) -> None:
    transport = await _transport(lines, lambda _request: b"~20024600F07A1102", answer_within=0.2)
    with pytest.raises(PackNotResponding):
        await transport.transact(REQUEST_ADR2)
    await transport.close()


async def test_hang_up_is_bus_unavailable_and_the_next_request_reconnects(
    lines: list[RawLine],
) -> None:
    answers: Iterator[Reply] = iter([HANG_UP, RTN91_ADR3])
    transport = await _transport(lines, lambda _request: next(answers))
    with pytest.raises(BusUnavailable, match="closed the connection"):
        await transport.transact(REQUEST_ADR3)
    assert not transport.connected
    assert await transport.transact(REQUEST_ADR3) == RTN91_ADR3
    await transport.close()


async def test_refused_connection_is_bus_unavailable(lines: list[RawLine]) -> None:
    line = await open_line(lambda _request: None)
    await line.close()  # nothing listens on that port any more
    transport = AsciiTcpTransport(line.host, line.port, timeout=1.0)
    with pytest.raises(BusUnavailable, match="cannot connect to"):
        await transport.connect()
    with pytest.raises(BusUnavailable, match="cannot connect to"):
        await transport.transact(REQUEST_ADR2)


async def test_babbling_line_is_a_frame_error(lines: list[RawLine]) -> None:
    transport = await _transport(lines, lambda _request: b"~" + b"0" * 20_000)
    with pytest.raises(FrameError, match="without ending a frame"):
        await transport.transact(REQUEST_ADR2)
    assert not transport.connected  # the rest of the babble is dropped with it
    await transport.close()


async def test_concurrent_callers_take_turns(lines: list[RawLine]) -> None:
    def echo(request: bytes) -> bytes:
        return b"~" + request[1:5] + b"\r"

    transport = await _transport(lines, echo)
    requests = [f"~20{adr:02X}4642E002{adr:02X}FFFF\r".encode() for adr in range(2, 10)]
    replies = await asyncio.gather(*(transport.transact(request) for request in requests))
    assert replies == [f"~20{adr:02X}\r".encode() for adr in range(2, 10)]
    # Every caller got its own answer: the requests went out one at a time,
    # in the order they were made.
    assert lines[0].requests == requests
    await transport.close()


async def test_close_then_use_again(lines: list[RawLine]) -> None:
    transport = await _transport(lines, lambda _request: RTN91_ADR3)
    await transport.connect()
    await transport.close()
    await transport.close()  # closing twice is harmless
    assert await transport.transact(REQUEST_ADR3) == RTN91_ADR3
    await transport.close()
