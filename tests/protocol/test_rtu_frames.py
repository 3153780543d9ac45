"""Splitting a raw Modbus RTU byte stream into frames, without timing."""

from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.rack_battery.protocol.rtu import (
    ALL_UNITS,
    MAX_FRAME,
    Frame,
    JkFrame,
    RtuSplitter,
    bits,
    crc16,
    read_request,
    registers,
    seal,
)

# The Modbus specification's own example: read 10 holding registers from
# unit 1 at address 0 is 01 03 00 00 00 0A, CRC 0xCDC5 sent low byte first.
REQUEST = bytes.fromhex("01030000000AC5CD")
# Unit 1's reply with two registers 0x14B4, 0xFC18; CRC computed with the
# reflected polynomial 0xA001 from 0xFFFF over 01 03 04 14 B4 FC 18.
REPLY_BODY = bytes.fromhex("01030414B4FC18")


def test_crc_of_the_specification_example() -> None:
    assert crc16(bytes.fromhex("01030000000A")) == 0xCDC5
    assert read_request(1, 3, 0, 10) == REQUEST


def rtu(found: list[tuple[Frame | None, Frame | JkFrame]]) -> list[tuple[Frame | None, Frame]]:
    """Return what a splitter found, every one an RTU frame."""
    frames = [(request, frame) for request, frame in found if isinstance(frame, Frame)]
    assert len(frames) == len(found)
    return frames


def pairs(*chunks: bytes) -> list[tuple[bytes | None, bytes]]:
    splitter = RtuSplitter()
    out: list[tuple[bytes | None, bytes]] = []
    for chunk in chunks:
        for request, frame in rtu(list(splitter.feed(chunk))):
            asked = None if request is None else bytes((request.unit, request.function))
            out.append((asked, bytes((frame.unit, frame.function)) + frame.data))
    return out


def test_request_and_reply_in_one_lump_and_byte_by_byte() -> None:
    reply = seal(bytes.fromhex("0103140000" + "00" * 18))  # 10 registers
    stream = REQUEST + reply
    whole = pairs(stream)
    single = pairs(*(bytes((byte,)) for byte in stream))
    assert whole == single
    assert len(whole) == 2
    assert whole[0][0] is None  # a request
    assert whole[1][0] == b"\x01\x03"  # the reply, paired with it


def test_garbage_and_a_cut_off_frame_are_skipped() -> None:
    request = read_request(2, 4, 0x1000, 2)
    reply = seal(bytes.fromhex("02040414B4FC18"))
    stream = b"\x00\xff\x13" + request[:5] + request + reply
    frames = RtuSplitter()
    found = rtu(list(frames.feed(stream)))
    assert [frame.is_request for _, frame in found] == [True, False]
    assert registers(found[1][1]) == [0x14B4, 0xFC18]
    assert frames.dropped > 0


def test_bad_crc_and_wrong_unit_are_not_replies() -> None:
    # Unit 3 is asked for two registers; its reply (03 03 04 00 01 00 02)
    # arrives with one CRC bit flipped, then unit 4 answers in its place.
    request = read_request(3, 3, 0, 2)
    good = seal(bytes.fromhex("03030400010002"))
    bad_crc = good[:-1] + bytes((good[-1] ^ 1,))
    wrong_unit = seal(bytes.fromhex("04030400010002"))
    splitter = RtuSplitter()
    found = rtu(list(splitter.feed(request + bad_crc + wrong_unit + read_request(5, 3, 0, 1))))
    # The broken reply is no frame; unit 4's is one, but answers no request.
    assert [(frame.unit, frame.is_request) for _, frame in found] == [
        (3, True),
        (4, False),
        (5, True),
    ]
    assert all(request is None for request, _ in found)


def test_coil_reply_bits() -> None:
    request = read_request(1, 1, 0x1278, 2)
    reply = seal(bytes.fromhex("01010101"))  # one byte, bit 0 set
    found = rtu(list(RtuSplitter().feed(request + reply)))
    assert bits(found[1][1], 2) == [True, False]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=20))
def test_fuzz_never_raises(chunks: list[bytes]) -> None:
    splitter = RtuSplitter()
    for chunk in chunks:
        for _, frame in splitter.feed(chunk):
            assert isinstance(frame, JkFrame) or 0 <= frame.unit <= 255


# A JK-PB master's trigger for unit 5's live data, and unit 5's write reply,
# as jk-pb-rs485-frames.md works them out (CRC low byte first).
TRIGGER = bytes.fromhex("05101620000102 0000 E431".replace(" ", ""))
ACK = bytes.fromhex("051016200001 05CF".replace(" ", ""))
MASTER_TRAILER = bytes.fromhex("001016200001 059A".replace(" ", ""))


def jk_frame(kind: int, fill: int = 0x11) -> bytes:
    body = b"\x55\xaa\xeb\x90" + bytes((kind, 0)) + bytes((fill,)) * 293
    return body + bytes((sum(body) & 0xFF,))


def test_the_documented_trigger_and_replies_check() -> None:
    assert seal(TRIGGER[:-2]) == TRIGGER
    assert seal(ACK[:-2]) == ACK
    assert seal(MASTER_TRAILER[:-2]) == MASTER_TRAILER


def test_a_jk_pb_master_bus_splits_into_trigger_frame_and_reply() -> None:
    stream = TRIGGER + jk_frame(0x02) + b"\x00" + ACK + b"\x00" + jk_frame(0x01) + MASTER_TRAILER
    for chunks in ([stream], [stream[i : i + 7] for i in range(0, len(stream), 7)]):
        splitter = RtuSplitter(range(16))
        found = [item for chunk in chunks for item in splitter.feed(chunk)]
        kinds = [
            frame.kind if isinstance(frame, JkFrame) else (frame.unit, frame.is_request)
            for _, frame in found
        ]
        assert kinds == [(5, True), 0x02, (5, False), 0x01, (0, False)]
        # The slave's reply answers the trigger; the master's own trailer answers nothing.
        assert found[2][0] is not None
        assert found[2][0].unit == 5
        assert found[4][0] is None
        assert splitter.dropped == 2


def test_a_jk_frame_with_a_bad_sum_is_noise() -> None:
    broken = bytearray(jk_frame(0x02))
    broken[100] ^= 0x01
    splitter = RtuSplitter(range(16))
    found = list(splitter.feed(bytes(broken) + ACK))
    assert [frame.unit for _, frame in found if isinstance(frame, Frame)] == [5]
    assert not any(isinstance(frame, JkFrame) for _, frame in found)
    assert splitter.dropped == 300


@pytest.mark.parametrize("units", [ALL_UNITS, range(16)])
def test_64_kb_of_noise_is_dropped_and_counted(units: range) -> None:
    noise = random.Random(7).randbytes(65536)
    splitter = RtuSplitter(units)
    taken = 0
    for start in range(0, len(noise), 4096):
        for _, frame in splitter.feed(noise[start : start + 4096]):
            taken += _length(frame)
    # Every byte is either in a frame that checks (rare, by chance) or
    # counted as noise; at most a frame's worth waits for more.
    assert splitter.dropped + taken + splitter.held == len(noise)
    assert splitter.dropped > len(noise) - 1024
    assert splitter.held <= 300


def _length(frame: Frame | JkFrame) -> int:
    if isinstance(frame, JkFrame):
        return len(frame.raw)
    return len(frame.data) + 4


def _valid_stream(rng: random.Random) -> bytes:
    out = bytearray()
    for _ in range(rng.randrange(1, 12)):
        unit = rng.randrange(16)
        choice = rng.randrange(4)
        if choice == 0:
            count = rng.randrange(1, 40)
            out += read_request(unit, 3, rng.randrange(0x10000), count)
            out += seal(bytes((unit, 3, 2 * count)) + rng.randbytes(2 * count))
        elif choice == 1:
            out += jk_frame(rng.choice((1, 2)), rng.randrange(256))
            out += seal(bytes((unit, 0x10, 0x16, 0x20, 0, 1)))
        elif choice == 2:
            out += seal(bytes((unit, 0x83, rng.randrange(1, 12))))
        else:
            out += seal(bytes((unit, 0x10, 0x16, 0x1E, 0, 1, 2, 0, 0)))
    return bytes(out)


def _check_split(stream: bytes, chunk: int, *, unasked: bool = True) -> None:
    splitter = RtuSplitter(range(16), unasked=unasked)
    taken = 0
    for start in range(0, len(stream), chunk):
        for request, frame in splitter.feed(stream[start : start + chunk]):
            taken += _length(frame)
            if isinstance(frame, JkFrame):
                assert sum(frame.raw[:-1]) & 0xFF == frame.raw[-1]
                continue
            body = bytes((frame.unit, frame.function)) + frame.data
            assert 0 <= frame.unit < 16
            assert len(body) + 2 <= MAX_FRAME
            if request is not None:
                assert request.unit == frame.unit
    assert splitter.dropped + taken + splitter.held == len(stream)
    assert splitter.held <= 2 * 300 + MAX_FRAME


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=65536), st.integers(1, 5000), st.booleans())
def test_fuzz_random_streams_up_to_64_kb(stream: bytes, chunk: int, unasked: bool) -> None:
    _check_split(stream, chunk, unasked=unasked)


@settings(max_examples=60, deadline=None)
@given(
    st.randoms(use_true_random=False),
    st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255), st.integers(0, 2))),
    st.integers(1, 600),
    st.booleans(),
)
def test_fuzz_mutated_valid_traffic(
    rng: random.Random, mutations: list[tuple[int, int, int]], chunk: int, unasked: bool
) -> None:
    stream = bytearray()
    size = rng.randrange(1, 65536)
    while len(stream) < size:
        stream += _valid_stream(rng)
    for where, value, how in mutations:
        at = where % (len(stream) + 1)
        if how == 0 and at < len(stream):
            stream[at] ^= value or 1  # a flipped byte
        elif how == 1:
            stream[at:at] = bytes((value,))  # a byte inserted
        else:
            del stream[at : at + value % 8]  # a few bytes lost
    _check_split(bytes(stream), chunk, unasked=unasked)


def test_unmutated_traffic_comes_through_whole() -> None:
    rng = random.Random(3)
    stream = b"".join(_valid_stream(rng) for _ in range(50))
    splitter = RtuSplitter(range(16))
    found = list(splitter.feed(stream))
    assert splitter.dropped == 0
    assert splitter.held == 0
    assert sum(_length(frame) for _, frame in found) == len(stream)


def test_a_listener_looks_only_for_the_read_reply_it_awaits() -> None:
    reply = seal(bytes.fromhex("01030414B4FC18"))  # two registers from unit 1
    splitter = RtuSplitter(range(16), unasked=False)
    # Without its request, a read reply is not looked for: it is noise.
    assert list(splitter.feed(reply)) == []
    assert splitter.dropped + splitter.held == len(reply)
    # After the request, it is; and a reply of that shape from another unit
    # is a frame too, answering nothing.
    wrong = seal(bytes.fromhex("02030414B4FC18"))
    found = rtu(list(splitter.feed(read_request(1, 3, 0, 2) + wrong + reply)))
    assert [(None if r is None else r.unit, f.unit) for r, f in found] == [
        (None, 1),
        (None, 2),
        (1, 1),
    ]


@pytest.mark.parametrize(
    "pattern",
    [
        b"\x55\xaa\xeb\x90",  # JK headers, each awaited and each failing its sum
        b"\x01\x03\xfa",  # read-reply headers
        bytes.fromhex("01101620007BF6"),  # long write requests
    ],
)
@pytest.mark.parametrize("unasked", [True, False])
def test_starts_that_come_to_nothing_do_not_pile_up(pattern: bytes, unasked: bool) -> None:
    stream = (pattern * 4096)[:8192]
    splitter = RtuSplitter(range(16), unasked=unasked)
    most = 0
    for start in range(0, len(stream), 16):
        for _ in splitter.feed(stream[start : start + 16]):
            pass
        most = max(most, splitter.held)
    assert most < 300 + 16
    assert splitter.dropped + splitter.held == len(stream)
