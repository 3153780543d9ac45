"""The ASCII-over-TCP transport against a real loopback socket that misbehaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
import random
import re

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
        reply = b"~" + request[1:5] + b"00\r"
        return reply * 2

    transport = await _transport(lines, twice)
    assert await transport.transact(REQUEST_ADR2) == b"~200200\r"
    assert await transport.transact(REQUEST_ADR3) == b"~200300\r"
    # The first reply's copy was thrown away unread, and counted.
    assert transport.stats.stray_frames >= 1
    await transport.close()


async def test_an_echo_of_the_request_is_not_its_answer(lines: list[RawLine]) -> None:
    # Many RS485 adapters hear their own transmitter: the request comes
    # back first, then the pack's answer.
    transport = await _transport(lines, lambda request: request + RTN91_ADR3)
    assert await transport.transact(REQUEST_ADR3) == RTN91_ADR3
    assert transport.stats.pack(3).discarded == 1
    assert (transport.stats.pack(3).requests, transport.stats.pack(3).replies) == (1, 1)
    await transport.close()


async def test_frames_the_caller_rejects_are_discarded_until_the_answer(
    lines: list[RawLine],
) -> None:
    late = b"~200346000000FDB1\r"  # something else from ADR 3 first

    def reject_late(frame: bytes) -> bytes:
        if frame == late:
            raise FrameError("it answers an earlier request")
        return frame

    transport = await _transport(lines, lambda _request: late + RTN91_ADR3)
    assert await transport.exchange(REQUEST_ADR3, reject_late) == RTN91_ADR3
    assert transport.stats.pack(3).discarded == 1
    await transport.close()


async def test_only_rejected_frames_end_in_a_frame_error_naming_why(
    lines: list[RawLine],
) -> None:
    def reject(_frame: bytes) -> bytes:
        raise FrameError("it answers an earlier request")

    transport = await _transport(lines, lambda _request: RTN91_ADR3, answer_within=0.2)
    with pytest.raises(FrameError, match=r"1 frame.* discarded, the last: it answers an earlier"):
        await transport.exchange(REQUEST_ADR3, reject)
    stats = transport.stats.pack(3)
    assert (stats.requests, stats.replies, stats.timeouts, stats.discarded) == (1, 0, 1, 1)
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


async def test_a_babbling_line_is_noise_and_the_answer_after_it_is_read(
    lines: list[RawLine],
) -> None:
    # 20 kB of hex after a "~" without a carriage return is longer than any
    # frame: it is dropped as noise, and the connection stays up.
    babble = b"~" + b"0" * 20_000
    transport = await _transport(lines, lambda _request: babble + RTN91_ADR3)
    assert await transport.transact(REQUEST_ADR3) == RTN91_ADR3
    assert transport.connected
    assert transport.stats.noise_bytes == len(babble)
    await transport.close()


async def test_64_kb_of_noise_is_dropped_and_counted(lines: list[RawLine]) -> None:
    # Seeded, and checked to hold no "~hex...CR" by chance: all of it is noise.
    noise = random.Random(3).randbytes(64 * 1024)
    assert not re.search(rb"~[0-9A-F]*\r", noise)
    transport = await _transport(lines, lambda _request: noise + RTN91_ADR3)
    assert await transport.transact(REQUEST_ADR3) == RTN91_ADR3
    assert transport.stats.noise_bytes == len(noise)
    assert transport.connected
    await transport.close()


async def test_noise_alone_is_silence(lines: list[RawLine]) -> None:
    noise = random.Random(8).randbytes(64 * 1024).replace(b"~", b"")
    transport = await _transport(lines, lambda _request: noise, answer_within=0.3)
    with pytest.raises(PackNotResponding, match="no answer"):
        await transport.transact(REQUEST_ADR3)
    assert transport.connected
    assert transport.stats.pack(3).timeouts == 1
    # What came after the timeout is thrown away, and counted, before the next request.
    with pytest.raises(PackNotResponding):
        await transport.transact(REQUEST_ADR3)
    assert transport.stats.noise_bytes >= len(noise)
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
