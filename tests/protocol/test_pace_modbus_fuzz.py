"""Whatever registers a pack sends, the PACE Modbus decoders raise FrameError or succeed.

A confused BMS, an older firmware or a gateway that answers for the wrong
unit can hand over any number of registers holding any values; any other
exception (IndexError, ValueError, UnicodeDecodeError) would escape the
driver's error handling and take the whole poll down with it.
"""

from __future__ import annotations

import math

from hypothesis import given, strategies as st

from custom_components.rack_battery.protocol.drivers.pace_modbus import (
    TEMPERATURE_RANGE,
    decode_flags,
    decode_identity,
    decode_pack,
)
from custom_components.rack_battery.protocol.errors import FrameError

REGISTER = st.integers(min_value=0, max_value=0xFFFF)
# Any length at all, and the two lengths that reach the whole decoder.
ANY_REGISTERS = st.one_of(
    st.lists(REGISTER, max_size=200),
    st.lists(REGISTER, min_size=37, max_size=37),
)
IDENTITY_REGISTERS = st.one_of(
    st.lists(REGISTER, max_size=60),
    st.lists(REGISTER, min_size=20, max_size=20),
    st.lists(REGISTER, min_size=30, max_size=30),
)
ADDRESS = st.integers(min_value=1, max_value=15)


@given(ADDRESS, ANY_REGISTERS)
def test_decode_pack_returns_a_reading_or_raises_frame_error(
    address: int, registers: list[int]
) -> None:
    try:
        reading = decode_pack(address, registers)
    except FrameError:
        assert len(registers) != 37
        return
    assert len(registers) == 37
    assert reading.address == address
    low, high = TEMPERATURE_RANGE
    for value in (*reading.temperatures, reading.mosfet_temperature):
        assert value is None or low <= value <= high
    for value in (reading.soc, reading.soh):
        assert value is None or 0.0 <= value <= 100.0
    for value in (reading.voltage, reading.current, *reading.cell_voltages):
        assert value is None or math.isfinite(value)
    assert len(reading.cell_voltages) <= 16


@given(ADDRESS, ANY_REGISTERS)
def test_decode_flags_returns_flags_or_raises_frame_error(
    address: int, registers: list[int]
) -> None:
    try:
        flags = decode_flags(address, registers)
    except FrameError:
        assert len(registers) != 37
        return
    assert all(1 <= cell <= 16 for cell in flags.balancing_cells)


@given(ADDRESS, IDENTITY_REGISTERS)
def test_decode_identity_returns_an_identity_or_raises_frame_error(
    address: int, registers: list[int]
) -> None:
    try:
        identity = decode_identity(address, registers)
    except FrameError:
        assert len(registers) not in (20, 30)
        return
    for text in (identity.firmware, identity.model, identity.serial):
        assert text is None or (text.isascii() and text.isprintable() and text == text.strip())


@given(ADDRESS, st.lists(st.integers(), min_size=37, max_size=37))
def test_values_outside_sixteen_bits_are_frame_errors(address: int, registers: list[int]) -> None:
    try:
        decode_pack(address, registers)
    except FrameError:
        assert any(not 0 <= value <= 0xFFFF for value in registers)
