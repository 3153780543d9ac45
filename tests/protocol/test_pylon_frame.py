"""The Pylon ASCII frame codec against vectors computed by hand from the documents.

The vectors here are typed in, not produced by our encoder: an encoder and a
decoder that share a mistake would otherwise agree with each other forever.
"""

from __future__ import annotations

import pytest

from custom_components.rack_battery.protocol.errors import FrameError, PackNotResponding
from custom_components.rack_battery.protocol.pylon.analog import decode_analog
from custom_components.rack_battery.protocol.pylon.frame import (
    Frame,
    ReturnCodeError,
    check_return_code,
    checksum,
    decode_frame,
    encode_frame,
    length_field,
)

# ---------------------------------------------------------------------------
# LENGTH and CHKSUM


@pytest.mark.parametrize(
    ("lenid", "length"),
    [
        # 18 = 0x012: nibbles 0 + 1 + 2 = 3, -3 mod 16 = 0xD -> D012 (the spec's example).
        (18, 0xD012),
        # 2: -2 mod 16 = 0xE -> E002 (every one-byte request).
        (2, 0xE002),
        # 0: the sum is 0 and so is its complement -> 0000.
        (0, 0x0000),
        # 122 = 0x07A: 0 + 7 + 10 = 17, -17 mod 16 = 0xF -> F07A (the 0x42 example reply).
        (122, 0xF07A),
        # 64 = 0x040: -4 mod 16 = 0xC -> C040 (the 0x51 reply).
        (64, 0xC040),
        # 4095 = 0xFFF: 45, -45 mod 16 = 3 -> 3FFF.
        (4095, 0x3FFF),
    ],
)
def test_length_field(lenid: int, length: int) -> None:
    assert length_field(lenid) == length


def test_length_field_refuses_what_twelve_bits_cannot_count() -> None:
    with pytest.raises(ValueError, match="12 bits"):
        length_field(4096)


def test_checksum_of_the_specification_example() -> None:
    # The documents (V2.8 and V3.3) show "~1203400456ABCEFEFC72\r" and say the
    # ASCII sum of "1203400456ABCEFE" is 0x038E. Adding it up by hand:
    #   '1' 31 + '2' 32 + '0' 30 + '3' 33 + '4' 34 + '0' 30 + '0' 30 + '4' 34
    #   + '5' 35 + '6' 36 = 0x1F9 (505)
    #   'A' 41 + 'B' 42 + 'C' 43 + 'E' 45 + 'F' 46 + 'E' 45 = 0x196 (406)
    #   505 + 406 = 911 = 0x038F, one more than the documents claim.
    # So the checksum is -0x038F mod 65536 = 0xFC71. The documents' own step
    # from 0x038E to 0xFC72 is right; their sum is off by one.
    assert sum(b"1203400456ABCEFE") == 0x038F
    assert checksum(b"1203400456ABCEFE") == 0xFC71
    assert -0x038E & 0xFFFF == 0xFC72  # the documents' arithmetic, from their sum
    # Nor is the example a frame: its LENGTH field 56AB announces 0x6AB = 1707
    # INFO characters where none follow.
    with pytest.raises(FrameError, match="LENID says 1707 INFO characters, frame carries 4"):
        decode_frame(b"~1203400456ABCEFEFC72\r")


# ---------------------------------------------------------------------------
# Requests: the documented vectors


@pytest.mark.parametrize(
    ("wire", "frame"),
    [
        # 0x42 analog values to ADR 2, INFO = the address (Pylontech V3.3 example).
        (b"~20024642E00202FD33\r", Frame(0x20, 0x02, 0x46, 0x42, b"\x02")),
        # 0x44 alarm info to ADR 2.
        (b"~20024644E00202FD31\r", Frame(0x20, 0x02, 0x46, 0x44, b"\x02")),
        # 0x51 manufacturer info, no INFO.
        (b"~200046510000FDAE\r", Frame(0x20, 0x00, 0x46, 0x51)),
        # PACE ASCII (VER 0x25) 0x42 to ADR 1.
        (b"~25014642E00201FD30\r", Frame(0x25, 0x01, 0x46, 0x42, b"\x01")),
        # Seplos V2 table 7: telemetry commands at ADR 0, 10 and 15.
        (b"~20004642E00200FD37\r", Frame(0x20, 0x00, 0x46, 0x42, b"\x00")),
        (b"~200A4642E0020AFD15\r", Frame(0x20, 0x0A, 0x46, 0x42, b"\x0a")),
        (b"~200F4642E0020FFD0B\r", Frame(0x20, 0x0F, 0x46, 0x42, b"\x0f")),
    ],
)
def test_request_vectors(wire: bytes, frame: Frame) -> None:
    assert decode_frame(wire) == frame
    assert encode_frame(frame.ver, frame.adr, frame.cid1, frame.cid2, frame.info) == wire
    assert frame.encode() == wire


def test_encode_refuses_values_that_are_not_bytes() -> None:
    with pytest.raises(ValueError, match="ADR 256"):
        encode_frame(0x20, 256, 0x46, 0x42)
    with pytest.raises(ValueError, match="12 bits"):
        encode_frame(0x20, 2, 0x46, 0x42, bytes(2048))


# ---------------------------------------------------------------------------
# The worked 0x42 reply of the Pylontech V3.3 document ("a 74Ah battery")

# The document's bytes, with its checksum E1A2 replaced by E27A: the ASCII
# codes between "~" and CHKSUM add up to 0x1D86, and -0x1D86 mod 65536 is
# 0xE27A. (E1A2 would need a sum of 0x1E5E.)
V33_BODY = (
    b"20024600F07A"
    b"11020F0D450D440D450D440D450D440D3E0D450D4A0D4A0D4B0D4A0D4A0D4A0D4A"
    b"050BC30BC30BC30BCD0BCD0000C725FFFF04FFFF000200CA58012110"
)
V33_REPLY = b"~" + V33_BODY + b"E27A\r"


def test_v33_example_checksum_is_e27a_not_e1a2() -> None:
    assert sum(V33_BODY) == 0x1D86
    assert checksum(V33_BODY) == 0xE27A
    with pytest.raises(FrameError, match="CHKSUM E1A2 does not match"):
        decode_frame(b"~" + V33_BODY + b"E1A2\r")


def test_v33_example_reply_decodes_to_the_hand_computed_values() -> None:
    frame = decode_frame(V33_REPLY)
    # VER 20, ADR 02, CID1 46, RTN 00; LENGTH F07A: 0x7A = 122 characters = 61 bytes.
    assert (frame.ver, frame.adr, frame.cid1, frame.cid2) == (0x20, 0x02, 0x46, 0x00)
    assert len(frame.info) == 61
    check_return_code(frame)

    reading = decode_analog(frame.info, address=2, expect_command=2)
    # INFO, byte by byte:
    #   11            INFOFLAG
    #   02            command = ADR 2
    #   0F            15 cells
    #   0D45 0D44 0D45 0D44 0D45 0D44 0D3E 0D45 0D4A 0D4A 0D4B 0D4A 0D4A 0D4A 0D4A
    #                 3397 3396 3397 3396 3397 3396 3390 3397 3402 3402 3403
    #                 3402 3402 3402 3402 mV
    #   05            5 temperatures
    #   0BC3 x3       3011 -> (3011 - 2731) / 10 = 28.0 degC
    #   0BCD x2       3021 -> (3021 - 2731) / 10 = 29.0 degC
    #   0000          current 0
    #   C725          50981 mV = 50.981 V
    #   FFFF          remaining capacity 1: not used by a pack over 65 Ah
    #   04            four user-defined items
    #   FFFF          total capacity 1: not used either
    #   0002          2 cycles
    #   00CA58        remaining capacity 2: 51800 mAh = 51.8 Ah
    #   012110        total capacity 2: 74000 mAh = 74.0 Ah
    #   SoC = 51.8 / 74.0 = 70.0 %
    assert reading.address == 2
    assert reading.cell_voltages == (
        3.397, 3.396, 3.397, 3.396, 3.397, 3.396, 3.390, 3.397,
        3.402, 3.402, 3.403, 3.402, 3.402, 3.402, 3.402,
    )  # fmt: skip
    assert reading.temperatures == (28.0, 28.0, 28.0, 29.0, 29.0)
    assert reading.mosfet_temperature is None  # only six-sensor packs send it
    assert reading.current == 0.0
    assert reading.voltage == pytest.approx(50.981)
    assert reading.remaining_capacity == pytest.approx(51.8)
    assert reading.full_capacity == pytest.approx(74.0)
    assert reading.cycles == 2
    assert reading.soc == pytest.approx(70.0)
    assert reading.soh is None
    assert reading.design_capacity is None


def test_v28_example_reply_with_two_user_defined_items() -> None:
    # The RS232 V2.8 document's example (a 50 Ah pack at ADR 1); its checksum
    # E553 is right. Same cells and temperatures as above, then:
    #   0000 current, C725 50.981 V, BF68 = 49000 mAh remaining,
    #   02 two items, C350 = 50000 mAh total, 0002 cycles.
    #   LENGTH C06E: 0x6E = 110 characters; 0 + 6 + 14 = 20, -20 mod 16 = 0xC.
    wire = (
        b"~20014600C06E11010F0D450D440D450D440D450D440D3E0D450D4A0D4A0D4B0D4A"
        b"0D4A0D4A0D4A050BC30BC30BC30BCD0BCD0000C725BF6802C3500002E553\r"
    )
    frame = decode_frame(wire)
    assert frame.adr == 1
    reading = decode_analog(frame.info, address=1, expect_command=1)
    assert reading.remaining_capacity == pytest.approx(49.0)
    assert reading.full_capacity == pytest.approx(50.0)
    assert reading.soc == pytest.approx(98.0)
    assert reading.cycles == 2
    assert len(reading.cell_voltages) == 15


# ---------------------------------------------------------------------------
# Malformed frames: each fault is named


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"", "too short"),
        (b"~20024642E002\r", "too short"),
        (b"20024642E00202FD33\r\r", "does not start with '~'"),
        (b"~20024642E00202FD33\n", "does not end with carriage return"),
        (b"~20024642E00202FD3\r", "odd number of characters"),
        (b"~20024642e00202FD33\r", "0x65 at position 9 is not upper-case hex"),
        (b"~20024642E00202FD3G\r", "0x47 at position 18 is not upper-case hex"),
        (b"~2002 642E00202FD33\r", "0x20 at position 5 is not upper-case hex"),
        # LENGTH F002: LCHKSUM for LENID 2 must be E.
        (b"~20024642F00202FD33\r", "LENGTH F002 fails its LCHKSUM nibble"),
        # LENGTH C004 is sound on its own (-4 mod 16 = C) but two characters came.
        (b"~20024642C00402FD33\r", "LENID says 4 INFO characters, frame carries 2"),
        (b"~20024642E00202FD34\r", "CHKSUM FD34 does not match the frame .expected FD33."),
    ],
)
def test_malformed_frames_raise_frame_error(wire: bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        decode_frame(wire)


# ---------------------------------------------------------------------------
# Return codes


def _reply(code: int) -> Frame:
    return Frame(0x20, 0x03, 0x46, code)


def test_return_code_normal_passes() -> None:
    check_return_code(_reply(0x00))


@pytest.mark.parametrize(
    ("code", "name"),
    [(0x90, "ADR error"), (0x91, "internal communication error")],
)
def test_return_codes_that_mean_the_pack_is_silent(code: int, name: str) -> None:
    with pytest.raises(PackNotResponding, match=f"ADR 3 answered RTN 0x{code:02X} \\({name}\\)"):
        check_return_code(_reply(code))


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (0x01, "VER error"),
        (0x02, "CHKSUM error"),
        (0x03, "LCHKSUM error"),
        (0x04, "CID2 invalid"),
        (0x05, "command format error"),
        (0x06, "invalid data"),
        (0x42, "unknown return code"),
        (0xFF, "unknown return code"),
    ],
)
def test_return_codes_that_refuse_the_request(code: int, name: str) -> None:
    with pytest.raises(ReturnCodeError, match=f"RTN 0x{code:02X} \\({name}\\)") as caught:
        check_return_code(_reply(code))
    assert caught.value.code == code
    assert isinstance(caught.value, FrameError)


def test_a_wire_reply_with_rtn_91() -> None:
    # The master answering for an unreachable slave at ADR 3: RTN 91, no INFO.
    # "200346910000" is 32 30 30 33 34 36 39 31 30 30 30 30: 50 + 48 + 48 + 51
    # + 52 + 54 + 57 + 49 + 4 * 48 = 601 = 0x259; -0x259 mod 65536 = 0xFDA7.
    frame = decode_frame(b"~200346910000FDA7\r")
    assert frame == Frame(0x20, 0x03, 0x46, 0x91)
    with pytest.raises(PackNotResponding):
        check_return_code(frame)
