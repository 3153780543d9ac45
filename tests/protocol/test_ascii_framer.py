"""The Pylon ASCII stream framer: one pass, bounded, every byte accounted for.

Whatever a line sends (noise, babble, half frames, frames mutated on the
way), the framer hands on only candidate frames (``~``, upper-case hex,
CR, no longer than the framing allows), counts everything else as noise,
and holds at most one frame's worth of bytes. Where the input is cut into
reads must not change what comes out. The frame decoder then raises
FrameError or returns a frame for each candidate, nothing else, on inputs
up to 64 KB.
"""

from __future__ import annotations

import contextlib
import random
import re

from hypothesis import HealthCheck, given, settings, strategies as st

from custom_components.rack_battery.protocol.errors import FrameError
from custom_components.rack_battery.protocol.linkstats import LinkStats
from custom_components.rack_battery.protocol.pylon.frame import Frame, decode_frame
from custom_components.rack_battery.protocol.transport.ascii_stream import (
    MAX_FRAME_BYTES,
    AsciiFramer,
)

# Hand-checked frames (see test_pylon_frame.py).
KNOWN_FRAMES = (
    b"~20024642E00202FD33\r",
    b"~20024644E00202FD31\r",
    b"~200046510000FDAE\r",
    b"~25014642E00201FD30\r",
    b"~200346910000FDA7\r",
)
_CANDIDATE = re.compile(rb"~[0-9A-F]*\r")
_ALPHABET = [*b"0123456789ABCDEF~\r", 0x00, 0xFF, *b"aG "]
SIXTY_FOUR_KB = 64 * 1024


def _frame_all(data: bytes, cuts: list[int]) -> tuple[list[bytes], AsciiFramer]:
    framer = AsciiFramer(LinkStats())
    frames: list[bytes] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        frames += framer.feed(data[start:cut])
        start = max(start, cut)
    return frames, framer


def _check_accounting(data: bytes, frames: list[bytes], framer: AsciiFramer) -> None:
    held = framer.held
    assert held < MAX_FRAME_BYTES
    for frame in frames:
        assert _CANDIDATE.fullmatch(frame)
        assert len(frame) <= MAX_FRAME_BYTES
    # Every byte is in a frame, counted as noise, or held for the next read.
    assert framer.stats.noise_bytes + sum(map(len, frames)) + held == len(data)


def test_a_frame_split_at_every_point_comes_out_whole() -> None:
    stream = b"\x00noise~~G\r" + b"".join(KNOWN_FRAMES) + b"tail"
    whole, _ = _frame_all(stream, [])
    assert whole == list(KNOWN_FRAMES)
    for cut in range(len(stream)):
        frames, framer = _frame_all(stream, [cut])
        assert frames == list(KNOWN_FRAMES), cut
        _check_accounting(stream, frames, framer)


def test_noise_is_counted_exactly() -> None:
    framer = AsciiFramer(LinkStats())
    # "~~G" is three bytes of noise: two starts cut short and a byte no frame has.
    assert framer.feed(b"\x13\xfe~~G" + KNOWN_FRAMES[0] + b"abc") == [KNOWN_FRAMES[0]]
    assert framer.stats.noise_bytes == 2 + 3 + 3


def test_a_run_longer_than_any_frame_is_noise_and_the_next_frame_is_found() -> None:
    babble = b"~" + b"0" * (MAX_FRAME_BYTES + 10)
    for cuts in ([], [1], [2000, 4000], [MAX_FRAME_BYTES - 1]):
        frames, framer = _frame_all(babble + b"\r" + KNOWN_FRAMES[1], cuts)
        assert frames == [KNOWN_FRAMES[1]]
        assert framer.stats.noise_bytes == len(babble) + 1


def test_the_longest_frame_passes_and_one_byte_more_does_not() -> None:
    longest = b"~" + b"0" * (MAX_FRAME_BYTES - 2) + b"\r"
    assert _frame_all(longest, [])[0] == [longest]
    assert _frame_all(longest, [MAX_FRAME_BYTES - 1])[0] == [longest]
    assert _frame_all(b"~0" + longest[1:], [])[0] == []


def test_a_started_frame_is_dropped_as_noise_on_reset() -> None:
    framer = AsciiFramer(LinkStats())
    assert framer.feed(KNOWN_FRAMES[0][:10]) == []
    framer.reset()
    assert framer.stats.noise_bytes == 10
    # The rest of it, arriving later, is no frame either.
    assert framer.feed(KNOWN_FRAMES[0][10:]) == []
    assert framer.stats.noise_bytes == len(KNOWN_FRAMES[0])


def test_64_kb_of_random_noise_is_dropped_and_counted() -> None:
    noise = random.Random(3).randbytes(SIXTY_FOUR_KB)
    assert not _CANDIDATE.search(noise)  # the seed holds no frame by chance
    frames, framer = _frame_all(noise, list(range(0, SIXTY_FOUR_KB, 4096)))
    assert frames == []
    _check_accounting(noise, frames, framer)
    framer.reset()
    assert framer.stats.noise_bytes == SIXTY_FOUR_KB


def test_64_kb_of_frame_starts_is_dropped_and_counted() -> None:
    # The worst case for a framer that rescans: a start on every byte.
    for pattern in (b"~", b"~0", b"~0123456789ABCDE"):
        stream = (pattern * (SIXTY_FOUR_KB // len(pattern) + 1))[:SIXTY_FOUR_KB]
        frames, framer = _frame_all(stream, list(range(0, SIXTY_FOUR_KB, 4096)))
        assert frames == []
        framer.reset()
        assert framer.stats.noise_bytes == SIXTY_FOUR_KB


# --- fuzz -------------------------------------------------------------------

cuts = st.lists(st.integers(0, SIXTY_FOUR_KB), max_size=20)


@given(st.binary(max_size=SIXTY_FOUR_KB), cuts)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_random_bytes(data: bytes, where: list[int]) -> None:
    frames, framer = _frame_all(data, where)
    _check_accounting(data, frames, framer)
    assert frames == _frame_all(data, [])[0]  # the cuts change nothing
    for frame in frames:
        with contextlib.suppress(FrameError):
            decode_frame(frame)


def _mutate(data: st.DataObject, wire: bytes) -> bytes:
    mutated = bytearray(wire)
    for _ in range(data.draw(st.integers(0, 6))):
        action = data.draw(st.sampled_from(("replace", "insert", "delete", "repeat", "noise")))
        index = data.draw(st.integers(0, max(len(mutated) - 1, 0)))
        if action == "replace" and mutated:
            mutated[index] = data.draw(st.sampled_from(_ALPHABET))
        elif action == "insert":
            mutated.insert(index, data.draw(st.sampled_from(_ALPHABET)))
        elif action == "delete" and mutated:
            del mutated[index]
        elif action == "repeat":
            mutated[index:index] = mutated[index : index + 200] * data.draw(st.integers(1, 40))
        elif action == "noise":
            mutated[index:index] = data.draw(st.binary(max_size=4096))
    return bytes(mutated[:SIXTY_FOUR_KB])


frames = st.builds(
    Frame,
    ver=st.integers(0, 0xFF),
    adr=st.integers(0, 0xFF),
    cid1=st.integers(0, 0xFF),
    cid2=st.integers(0, 0xFF),
    info=st.binary(max_size=2047),
)
streams = st.lists(
    st.one_of(st.sampled_from(KNOWN_FRAMES), frames.map(Frame.encode)), min_size=1, max_size=30
).map(b"".join)


@given(streams, st.data(), cuts)
@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_mutated_streams_of_valid_frames(
    wire: bytes, data: st.DataObject, where: list[int]
) -> None:
    stream = _mutate(data, wire)
    frames, framer = _frame_all(stream, where)
    _check_accounting(stream, frames, framer)
    assert frames == _frame_all(stream, [])[0]
    for frame in frames:
        try:
            decoded = decode_frame(frame)
        except FrameError:
            continue
        assert decoded.encode() == frame


@given(streams, st.binary(max_size=512).map(lambda noise: noise.replace(b"~", b"")), cuts)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_sound_frames_between_noise_without_a_start_all_come_through(
    wire: bytes, noise: bytes, where: list[int]
) -> None:
    # Noise with no "~" cannot swallow a frame: each one comes through.
    sound = [match.group() for match in _CANDIDATE.finditer(wire)]
    stream = noise + noise.join(sound) + noise
    frames, _ = _frame_all(stream, where)
    assert frames == sound


@given(st.binary(min_size=1, max_size=SIXTY_FOUR_KB))
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_frame_decoder_on_long_inputs(data: bytes) -> None:
    for candidate in (data, b"~" + data.hex().upper().encode()[: SIXTY_FOUR_KB - 2] + b"\r"):
        with contextlib.suppress(FrameError):
            decode_frame(candidate)
