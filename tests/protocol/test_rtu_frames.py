"""Splitting a raw Modbus RTU byte stream into frames, without timing."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from custom_components.rack_battery.protocol.rtu import (
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


def pairs(*chunks: bytes) -> list[tuple[bytes | None, bytes]]:
    splitter = RtuSplitter()
    out: list[tuple[bytes | None, bytes]] = []
    for chunk in chunks:
        for request, frame in splitter.feed(chunk):
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
    found = list(frames.feed(stream))
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
    found = list(splitter.feed(request + bad_crc + wrong_unit + read_request(5, 3, 0, 1)))
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
    found = list(RtuSplitter().feed(request + reply))
    assert bits(found[1][1], 2) == [True, False]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=20))
def test_fuzz_never_raises(chunks: list[bytes]) -> None:
    splitter = RtuSplitter()
    for chunk in chunks:
        for _, frame in splitter.feed(chunk):
            assert 0 <= frame.unit <= 255
