"""The Modbus reply framers without a wire: noise, strays and fuzz up to 64 KB.

Timing stays in ``scripts/bench``; here the framers must drop what is not
the reply, count it, keep their buffers bounded, and never take a frame
whose CRC or header fails or that does not answer the request in flight.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings, strategies as st

from custom_components.rack_battery.protocol.linkstats import LinkStats
from custom_components.rack_battery.protocol.modbus import (
    MBAP_HEADER,
    MBAP_MAX_LENGTH,
    RTU_BUFFER,
    MbapReceiver,
    RtuReceiver,
    read_request,
    write_multiple_request,
)

# Frames are sealed with the CRC the wire tests check against the spec's vector.
from .test_modbus_wire import crc, rtu

NOISE = 64 * 1024


def chunks(data: bytes, rng: random.Random) -> list[bytes]:
    out = []
    at = 0
    while at < len(data):
        size = rng.choice((1, 7, 64, 300, 4096, 20000))
        out.append(data[at : at + size])
        at += size
    return out


def test_64_kb_of_noise_through_the_rtu_framer_is_dropped_and_counted() -> None:
    rng = random.Random(7)
    noise = rng.randbytes(NOISE)
    stats = LinkStats()
    receiver = RtuReceiver(stats)
    receiver.expect(read_request(1, 0x03, 0x10, 1))
    for chunk in chunks(noise, rng):
        assert receiver.feed(chunk) is None
        assert receiver.buffered <= RTU_BUFFER
    receiver.abandon()
    assert stats.noise_bytes == NOISE
    assert stats.pack(1).discarded == 0
    assert receiver.buffered == 0


def test_64_kb_of_noise_between_transactions_is_thrown_away_before_the_next() -> None:
    rng = random.Random(8)
    stats = LinkStats()
    receiver = RtuReceiver(stats)
    for chunk in chunks(rng.randbytes(NOISE), rng):
        receiver.feed(chunk)
        assert receiver.buffered <= RTU_BUFFER
    request = read_request(1, 0x03, 0x10, 1)
    assert receiver.expect(request) == rtu("01 03 0010 0001")
    assert stats.noise_bytes == NOISE
    assert receiver.feed(rtu("01 03 02 1234")) == bytes.fromhex("03 02 1234")


def test_64_kb_of_noise_through_the_mbap_framer_is_dropped_and_counted() -> None:
    rng = random.Random(9)
    noise = rng.randbytes(NOISE)
    stats = LinkStats()
    receiver = MbapReceiver(stats)
    receiver.expect(read_request(1, 0x03, 0x10, 1))
    for chunk in chunks(noise, rng):
        assert receiver.feed(chunk) is None
        assert receiver.buffered < MBAP_HEADER + MBAP_MAX_LENGTH
    receiver.abandon()
    # What did not fit a header was dropped as noise on the way; the tail
    # that could still start one goes at the next request.
    receiver.expect(read_request(1, 0x03, 0x10, 1))
    assert stats.noise_bytes == NOISE
    assert stats.pack(1).discarded == 0


def test_a_late_reply_between_transactions_is_a_stray_frame() -> None:
    stats = LinkStats()
    receiver = RtuReceiver(stats)
    receiver.expect(read_request(1, 0x03, 0x20, 2))
    receiver.abandon()  # timed out
    receiver.feed(rtu("01 03 04 AAAA BBBB"))  # its reply, late
    receiver.expect(read_request(1, 0x03, 0x20, 2))
    assert (stats.stray_frames, stats.noise_bytes) == (1, 0)
    # The same frame now answers the request in flight.
    assert receiver.feed(rtu("01 03 04 AAAA BBBB")) == bytes.fromhex("03 04 AAAA BBBB")

    tcp = MbapReceiver(LinkStats())
    tcp.expect(read_request(1, 0x03, 0x10, 1))
    tcp.abandon()
    assert tcp.feed(bytes.fromhex("0001 0000 0005 01 03 02 AAAA")) is None
    assert tcp.stats.stray_frames == 1


def test_a_reply_in_single_bytes_and_after_a_false_start() -> None:
    # "01 03" in the noise starts a candidate that claims 5 + 0xFA bytes; the
    # real reply, shorter, ends first and is not kept waiting for it.
    stats = LinkStats()
    receiver = RtuReceiver(stats)
    receiver.expect(read_request(1, 0x03, 0x10, 1))
    stream = bytes.fromhex("01 03 FA") + rtu("01 03 02 1234")
    answers = [answer for byte in stream if (answer := receiver.feed(bytes((byte,))))]
    assert answers == [bytes.fromhex("03 02 1234")]
    assert stats.noise_bytes == 3


# Fuzz: random noise and valid frames, mutated, cut and mixed, up to 64 KB.

RTU_REQUEST = read_request(1, 0x03, 0x10, 2)
WRITE_REQUEST = write_multiple_request(1, 0x3C, (0x0102, 0x0304))
VALID_RTU = [
    rtu("01 03 04 1234 5678"),  # the answer
    rtu("01 03 0010 0002"),  # our request, echoed
    rtu("02 03 04 1234 5678"),  # another unit
    rtu("01 04 04 1234 5678"),  # another function
    rtu("01 03 02 1234"),  # another count
    rtu("01 83 02"),  # an exception
    rtu("01 10 003C 0002"),  # a write's reply
]


@st.composite
def streams(draw: st.DrawFn, frames: list[bytes]) -> bytes:
    rng = draw(st.randoms(use_true_random=False))
    if draw(st.booleans()):
        return rng.randbytes(draw(st.integers(0, NOISE)))
    out = bytearray()
    for _ in range(draw(st.integers(0, 200))):
        kind = rng.randrange(4)
        if kind == 0:
            out += rng.randbytes(rng.randrange(300))
            continue
        frame = bytearray(rng.choice(frames))
        if kind == 1:  # flip bytes
            for _ in range(rng.randrange(1, 3)):
                frame[rng.randrange(len(frame))] = rng.randrange(256)
        elif kind == 2:  # cut short
            frame = frame[: rng.randrange(len(frame))]
        out += frame
    return bytes(out[:NOISE])


def feed_all(receiver: RtuReceiver | MbapReceiver, data: bytes, seed: int) -> list[bytes]:
    answers = []
    for chunk in chunks(data, random.Random(seed)):
        if (answer := receiver.feed(chunk)) is not None:
            answers.append(answer)
    return answers


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=streams(VALID_RTU), seed=st.integers(0, 1000), write=st.booleans())
def test_rtu_fuzz_accepts_only_a_valid_frame_that_answers(
    data: bytes, seed: int, write: bool
) -> None:
    request = WRITE_REQUEST if write else RTU_REQUEST
    stats = LinkStats()
    receiver = RtuReceiver(stats)
    receiver.expect(request)
    answers = feed_all(receiver, data, seed)
    assert len(answers) <= 1  # the request is answered once
    for pdu in answers:
        assert request.answered_by(pdu)
        frame = bytes((1,)) + pdu
        assert frame + crc(frame) in data  # a whole frame with a good CRC was sent
    assert receiver.buffered <= RTU_BUFFER
    receiver.abandon()
    receiver.expect(request)
    assert receiver.buffered == 0


def mbap(transaction: int, rtu_frame: bytes) -> bytes:
    body = rtu_frame[:-2]
    return transaction.to_bytes(2, "big") + b"\x00\x00" + len(body).to_bytes(2, "big") + body


VALID_MBAP = [mbap(t, frame) for t in (1, 2) for frame in VALID_RTU]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=streams(VALID_MBAP), seed=st.integers(0, 1000))
def test_mbap_fuzz_accepts_only_a_valid_frame_that_answers(data: bytes, seed: int) -> None:
    stats = LinkStats()
    receiver = MbapReceiver(stats)
    assert receiver.expect(RTU_REQUEST)[:2] == b"\x00\x01"  # transaction 1
    answers = feed_all(receiver, data, seed)
    assert len(answers) <= 1
    for pdu in answers:
        assert RTU_REQUEST.answered_by(pdu)
        header = b"\x00\x01\x00\x00" + (len(pdu) + 1).to_bytes(2, "big") + b"\x01"
        assert header + pdu in data
    assert receiver.buffered < MBAP_HEADER + MBAP_MAX_LENGTH
