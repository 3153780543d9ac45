"""Whatever a CAN bus carries, the Pylontech CAN decoders raise FrameError or succeed.

A CAN cable is shared: another device's frames, a clone's shorter frames or
a frame cut by a bus error can reach the driver under any ID and any length.
"""

from __future__ import annotations

import math

from hypothesis import given, strategies as st

from custom_components.rack_battery.protocol.drivers.pylontech_can import (
    KNOWN_IDS,
    decode_bank,
    decode_frame,
)
from custom_components.rack_battery.protocol.errors import FrameError

STANDARD_ID = st.integers(min_value=0, max_value=0x7FF)
PAYLOAD = st.binary(max_size=12)
FRAMES = st.dictionaries(st.sampled_from(sorted(KNOWN_IDS)), st.binary(max_size=10), max_size=9)


@given(STANDARD_ID, PAYLOAD)
def test_decode_frame_returns_signals_or_raises_frame_error(
    arbitration_id: int, data: bytes
) -> None:
    try:
        signals = decode_frame(arbitration_id, data)
    except FrameError:
        return
    assert arbitration_id in KNOWN_IDS
    assert len(data) <= 8
    assert all(math.isfinite(value) for value in signals.values())


@given(FRAMES)
def test_decode_bank_returns_a_reading_or_raises_frame_error(frames: dict[int, bytes]) -> None:
    try:
        reading, bank = decode_bank(frames)
    except FrameError:
        return
    for value in (reading.soc, reading.soh):
        assert value is None or 0.0 <= value <= 100.0
    for value in (
        reading.charge_current_limit,
        reading.discharge_current_limit,
    ):
        assert value is None or value >= 0
    assert bank.protocol_version in ("1.2", "1.3")
    assert bank.manufacturer is None or bank.manufacturer.isprintable()
