"""Whatever arrives on the line, the Pylon decoders raise FrameError or succeed.

A gateway delivers noise, half frames and frames from a confused BMS; any
other exception (IndexError, ValueError, UnicodeDecodeError) would escape the
driver's error handling and take the whole poll down with it.
"""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings, strategies as st

from custom_components.rack_battery.protocol.errors import FrameError
from custom_components.rack_battery.protocol.pylon.analog import decode_analog
from custom_components.rack_battery.protocol.pylon.frame import Frame, decode_frame
from custom_components.rack_battery.protocol.pylon.identity import (
    decode_manufacturer_info,
    decode_serial,
)
from custom_components.rack_battery.protocol.pylon.profiles import (
    PACE,
    PYLONTECH,
    SEPLOS_V2,
    VendorProfile,
)

# Hand-checked frames (see test_pylon_frame.py) to mutate.
KNOWN_FRAMES = (
    b"~20024642E00202FD33\r",
    b"~20024644E00202FD31\r",
    b"~200046510000FDAE\r",
    b"~25014642E00201FD30\r",
    b"~20024600F07A11020F0D450D440D450D440D450D440D3E0D450D4A0D4A0D4B0D4A0D4A0D4A0D4A"
    b"050BC30BC30BC30BCD0BCD0000C725FFFF04FFFF000200CA58012110E27A\r",
)

_HEX = b"0123456789ABCDEF"
_FRAME_ALPHABET = _HEX + b"~\r" + b"abcdefG \x00\xff"

frames = st.builds(
    Frame,
    ver=st.integers(0, 0xFF),
    adr=st.integers(0, 0xFF),
    cid1=st.integers(0, 0xFF),
    cid2=st.integers(0, 0xFF),
    info=st.binary(max_size=300),
)
wire_frames = st.one_of(st.sampled_from(KNOWN_FRAMES), frames.map(Frame.encode))
profiles = st.sampled_from((PYLONTECH, PACE, SEPLOS_V2))


def _decode(data: bytes) -> Frame | None:
    try:
        return decode_frame(data)
    except FrameError:
        return None


@given(st.binary(max_size=200))
def test_decode_of_arbitrary_bytes(data: bytes) -> None:
    _decode(data)


@given(st.lists(st.sampled_from(list(_FRAME_ALPHABET)), max_size=120).map(bytes))
def test_decode_of_frame_like_text(body: bytes) -> None:
    # Mostly hex between the markers: reaches the LENGTH and CHKSUM checks.
    _decode(b"~" + body + b"\r")


@given(frames)
def test_encode_then_decode_round_trips(frame: Frame) -> None:
    assert decode_frame(frame.encode()) == frame


@given(wire_frames, st.data())
def test_every_single_byte_change_is_detected(wire: bytes, data: st.DataObject) -> None:
    # A changed character changes the ASCII sum by less than 65536, so the
    # checksum (or a marker, or LENGTH) always catches it.
    index = data.draw(st.integers(0, len(wire) - 1))
    value = data.draw(st.integers(0, 0xFF).filter(lambda byte: byte != wire[index]))
    mutated = wire[:index] + bytes((value,)) + wire[index + 1 :]
    assert _decode(mutated) is None


@given(wire_frames, st.data())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_mutated_frames(wire: bytes, data: st.DataObject) -> None:
    mutated = bytearray(wire)
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(("replace", "insert", "delete", "truncate", "swap")))
        index = data.draw(st.integers(0, max(len(mutated) - 1, 0)))
        if action == "replace" and mutated:
            mutated[index] = data.draw(st.integers(0, 0xFF))
        elif action == "insert":
            mutated.insert(index, data.draw(st.sampled_from(list(_FRAME_ALPHABET))))
        elif action == "delete" and mutated:
            del mutated[index]
        elif action == "truncate":
            del mutated[index:]
        elif action == "swap" and index + 1 < len(mutated):
            mutated[index], mutated[index + 1] = mutated[index + 1], mutated[index]
    _decode(bytes(mutated))


@given(st.binary(max_size=200), profiles, st.one_of(st.none(), st.integers(0, 0xFF)))
def test_analog_decoder_on_arbitrary_info(
    info: bytes, profile: VendorProfile, command: int | None
) -> None:
    with contextlib.suppress(FrameError):
        decode_analog(info, address=2, profile=profile, expect_command=command)


# INFO shaped like a 0x42 reply, with counts that may or may not fit.
analog_shaped = st.builds(
    lambda cells, temps, tail, count, items: (
        bytes((0x11, 0x02, cells[0]))
        + cells[1]
        + bytes((temps[0],))
        + temps[1]
        + tail
        + bytes((count,))
        + items
    ),
    st.tuples(st.integers(0, 24), st.binary(max_size=48)),
    st.tuples(st.integers(0, 8), st.binary(max_size=16)),
    st.binary(min_size=0, max_size=6),
    st.integers(0, 12),
    st.binary(max_size=30),
)


@given(analog_shaped, profiles)
def test_analog_decoder_on_plausible_info(info: bytes, profile: VendorProfile) -> None:
    try:
        reading = decode_analog(info, address=2, profile=profile, expect_command=2)
    except FrameError:
        return
    if profile is not SEPLOS_V2:  # the one that sends its own (unchecked) SoC
        assert reading.soc is None or 0.0 <= reading.soc <= 100.0


@given(st.binary(max_size=60), st.one_of(st.none(), st.integers(0, 0xFF)))
def test_identity_decoders_on_arbitrary_info(info: bytes, command: int | None) -> None:
    try:
        maker = decode_manufacturer_info(info)
    except FrameError:
        pass
    else:
        for text in (maker.device_name, maker.manufacturer):
            assert text is None or text.isprintable()
    with contextlib.suppress(FrameError):
        decode_serial(info, expect_command=command)
