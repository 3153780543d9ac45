"""JK-PB decoders against registers worked out by hand from the JK RS485 Modbus V1.1 map.

A register address is 0x1200 plus the byte offset of the field, so the
pack is written here register by register at the addresses a reader asks.
"""

from __future__ import annotations

import contextlib

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.rack_battery.protocol.drivers.jk_pb import (
    LIVE_BYTES,
    chunks,
    decode_heard,
    decode_identity,
    decode_live,
    decode_live_frame,
    decode_settings_frame,
)
from custom_components.rack_battery.protocol.errors import FrameError

# Live block registers by address; everything not listed reads 0.
LIVE: dict[int, int] = {
    **{0x1200 + 2 * cell: 0x0CE4 for cell in range(15)},  # cells 1..15: 3300 mV
    0x121E: 0x0CF3,  # cell 16 (offset 0x1E = 2 * 15): 3315 mV
    0x1240: 0x0000,  # CellSta u32, high word ...
    0x1242: 0xFFFF,  # ... low word: cells 0..15 fitted
    0x128A: 0x00FA,  # MOSFET temperature INT16 0.1 degC: 250 -> 25.0
    0x1290: 0x0000,  # voltage u32 mV, HIGH word first ...
    0x1292: 0xCE40,  # ... 0x0000CE40 = 52800 -> 52.800 V
    0x1298: 0xFFFF,  # current s32 mA: 0xFFFFCF2C ...
    0x129A: 0xCF2C,  # ... = -12500 -> -12.5 A (discharging)
    0x129C: 0x0104,  # TempBat1: 260 -> 26.0 degC
    0x129E: 0xFFCE,  # TempBat2: 0xFFCE - 0x10000 = -50 -> -5.0 degC
    0x12A0: 0x0000,  # alarms u32: 0x00002010 ...
    0x12A2: 0x2010,  # ... bit 4 cell overvoltage, bit 13 discharge overcurrent
    0x12A6: 0x0050,  # high byte balancer off, LOW byte SoC 80 %
    0x12A8: 0x0001,  # remaining s32 mAh: 0x00013880 ...
    0x12AA: 0x3880,  # ... = 80000 -> 80.0 Ah
    0x12AC: 0x0001,  # full u32 mAh: 0x000186A0 ...
    0x12AE: 0x86A0,  # ... = 100000 -> 100.0 Ah
    0x12B2: 0x0096,  # cycles u32 (low word at 0x12B2): 150
    0x12B8: 0x6300,  # high byte SoH 0x63 = 99 %, low byte precharge off
    0x12C0: 0x0100,  # high byte charge FET on, low byte discharge FET off
    0x12D0: 0x0700,  # high byte 0b111: MOSFET sensor, TempBat1 and TempBat2 fitted
}


def image(registers: dict[int, int]) -> bytes:
    raw = bytearray(LIVE_BYTES)
    for address, value in registers.items():
        offset = address - 0x1200
        raw[offset : offset + 2] = value.to_bytes(2, "big")
    return bytes(raw)


def test_live_block() -> None:
    reading = decode_live(4, image(LIVE))
    assert reading.address == 4
    assert reading.voltage == 52.8
    assert reading.current == -12.5
    assert reading.soc == 80.0
    assert reading.soh == 99.0
    assert reading.remaining_capacity == 80.0
    assert reading.full_capacity == 100.0
    assert reading.cycles == 150
    assert reading.cell_voltages == (*(3.3,) * 15, 3.315)
    # Sensors 3..5 are not fitted (bits 3..5 clear): unknown, not 0 degC.
    assert reading.temperatures == (26.0, -5.0, None, None, None)
    assert reading.mosfet_temperature == 25.0
    assert reading.charge_enabled is True
    assert reading.discharge_enabled is False
    assert reading.balancing is False
    assert reading.protections == {"cell_overvoltage", "discharge_overcurrent"}


def test_charging_current_is_positive() -> None:
    # 0x00003A98 = 15000 mA -> +15.0 A.
    reading = decode_live(1, image({**LIVE, 0x1298: 0x0000, 0x129A: 0x3A98}))
    assert reading.current == 15.0


def test_reads_are_split_into_at_most_forty_registers() -> None:
    # 0x100 bytes = 128 registers: 40 + 40 + 40 + 8, each at base + byte offset.
    assert chunks(0x1200, 0x100) == [(0x1200, 40), (0x1250, 40), (0x12A0, 40), (0x12F0, 8)]


def test_heard_chunks_make_the_image() -> None:
    raw = image(LIVE)
    heard = {
        (0x03, start): [
            int.from_bytes(raw[2 * i + start - 0x1200 : 2 * i + start - 0x1200 + 2], "big")
            for i in range(count)
        ]
        for start, count in chunks(0x1200, LIVE_BYTES)
    }
    assert decode_heard(4, heard) == decode_live(4, raw)
    del heard[0x03, 0x12A0]
    assert decode_heard(4, heard) is None  # a gap: no reading yet


def test_identity() -> None:
    info = (
        b"JK_PB2A16S20P".ljust(16, b"\x00") + b"19A".ljust(8, b"\x00") + b"15.38".ljust(8, b"\x00")
    )
    settings_bytes = bytes.fromhex("00000010") + bytes(12) + bytes.fromhex("000493E0")
    # cell count 0x10 = 16; design capacity 0x000493E0 = 300000 mAh = 300 Ah
    identity = decode_identity(2, info, settings_bytes)
    assert identity.model == "JK_PB2A16S20P"
    assert identity.firmware == "15.38"
    assert identity.cell_count == 16
    assert identity.design_capacity == 300.0
    assert identity.serial is None  # the map has none: the pack is named by its slot
    assert identity.key == "slot_2"


def test_wrong_length_is_a_frame_error() -> None:
    with pytest.raises(FrameError):
        decode_live(1, bytes(10))


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=0x120))
def test_fuzz_live(raw: bytes) -> None:
    try:
        reading = decode_live(1, raw)
    except FrameError:
        return
    assert reading.soc is None or 0 <= reading.soc <= 100


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.tuples(st.sampled_from([1, 3, 4]), st.integers(0x11F0, 0x1310)),
        st.lists(st.integers(-2, 0x10001), max_size=50),
        max_size=8,
    )
)
def test_fuzz_heard(heard: dict[tuple[int, int], list[int]]) -> None:
    with contextlib.suppress(FrameError):
        decode_heard(1, heard)


# A type 0x02 frame of a JK-PB master bus, laid out byte by byte from
# jk-pb-rs485-frames.md (32S column, little-endian), then summed.
FRAME_FIELDS: dict[int, bytes] = {
    0: bytes.fromhex("55AAEB90"),  # header
    4: b"\x02",  # type: cell / live data
    5: b"\x00",  # counter, ignored
    **{6 + 2 * (n - 1): bytes.fromhex("E40C") for n in range(1, 16)},  # cells 1..15: 3300 mV
    6 + 2 * 15: bytes.fromhex("F30C"),  # cell 16: 3315 mV
    70: bytes.fromhex("FFFF0000"),  # cell_mask: cells 1..16 present
    74: bytes.fromhex("E50C"),  # cell_avg 3301 mV (not used: derived from the cells)
    144: bytes.fromhex("FA00"),  # mos_temp 250 -> 25.0 degC
    150: bytes.fromhex("40CE0000"),  # pack_voltage 0x0000CE40 = 52800 mV
    158: bytes.fromhex("2CCFFFFF"),  # pack_current 0xFFFFCF2C = -12500 mA
    162: bytes.fromhex("0401"),  # temp_1 0x0104 = 260 -> 26.0 degC
    164: bytes.fromhex("CEFF"),  # temp_2 0xFFCE = -50 -> -5.0 degC
    166: bytes.fromhex("10200000"),  # alarms 0x2010: bit 4 cell OVP, bit 13 discharge OCP
    172: b"\x01",  # balance_action: charge-balancing
    173: b"\x50",  # soc 80 %
    174: bytes.fromhex("80380100"),  # remaining 0x00013880 = 80000 mAh
    178: bytes.fromhex("A0860100"),  # full 0x000186A0 = 100000 mAh
    182: bytes.fromhex("96000000"),  # cycles 150
    190: b"\x63",  # soh 99 %
    198: b"\x01\x00",  # charge FET on, discharge FET off
    214: b"\x07",  # temp_present: MOS, sensor 1, sensor 2
}


def laid_frame(fields: dict[int, bytes]) -> bytes:
    raw = bytearray(300)
    for offset, value in fields.items():
        raw[offset : offset + len(value)] = value
    raw[299] = sum(raw[:299]) & 0xFF
    return bytes(raw)


def test_live_frame_of_a_master_bus() -> None:
    reading = decode_live_frame(3, laid_frame(FRAME_FIELDS))
    assert reading.address == 3
    assert reading.cell_voltages == (*(3.3,) * 15, 3.315)
    assert reading.voltage == 52.8
    assert reading.current == -12.5
    assert reading.soc == 80.0
    assert reading.soh == 99.0
    assert reading.remaining_capacity == 80.0
    assert reading.full_capacity == 100.0
    assert reading.cycles == 150
    assert reading.temperatures == (26.0, -5.0, None, None, None)
    assert reading.mosfet_temperature == 25.0
    assert reading.charge_enabled is True
    assert reading.discharge_enabled is False
    assert reading.balancing is True
    assert reading.protections == {"cell_overvoltage", "discharge_overcurrent"}


def test_settings_frame_names_cells_capacity_and_address() -> None:
    settings_frame = laid_frame(
        {
            0: bytes.fromhex("55AAEB90"),
            4: b"\x01",
            114: bytes.fromhex("10000000"),  # cell_count 16
            130: bytes.fromhex("C0450400"),  # design_capacity 0x000445C0 = 280000 mAh
            270: bytes.fromhex("03000000"),  # device_address 3
        }
    )
    found = decode_settings_frame(settings_frame)
    assert (found.cell_count, found.design_capacity, found.address) == (16, 280.0, 3)


def test_a_frame_that_does_not_add_up_is_a_frame_error() -> None:
    frame = bytearray(laid_frame(FRAME_FIELDS))
    frame[150] ^= 1
    with pytest.raises(FrameError, match="checksum"):
        decode_live_frame(3, bytes(frame))
    with pytest.raises(FrameError, match="type"):
        decode_settings_frame(laid_frame(FRAME_FIELDS))
    with pytest.raises(FrameError):
        decode_live_frame(3, laid_frame(FRAME_FIELDS)[:299])


def test_sentinels_are_unknown() -> None:
    # A pack that fills every register with 0xFFFF.
    reading = decode_live(2, b"\xff" * LIVE_BYTES)
    assert reading.voltage is None
    assert reading.current is None
    assert reading.remaining_capacity is None
    assert reading.full_capacity is None
    assert reading.cycles is None
    assert reading.soc is None
    assert reading.soh is None
    assert reading.cell_voltages == ()
    assert reading.temperatures == (None,) * 5
    assert reading.mosfet_temperature is None
    assert reading.charge_enabled is None
    assert reading.balancing is None
    assert reading.protections == frozenset()
    # The signed sentinels 0x8000 and 0x80000000, with the sensors fitted.
    signed = image(
        {
            **LIVE,
            0x128A: 0x8000,  # MOSFET temperature
            0x129C: 0x8000,  # TempBat1
            0x1298: 0x8000,  # current s32 0x80000000 ...
            0x129A: 0x0000,
            0x12A8: 0x8000,  # remaining s32 0x80000000
            0x12AA: 0x0000,
            0x1290: 0xFFFF,  # voltage u32 0xFFFFFFFF
            0x1292: 0xFFFF,
            0x12B0: 0xFFFF,  # cycles u32 0xFFFFFFFF
            0x12B2: 0xFFFF,
        }
    )
    reading = decode_live(2, signed)
    assert reading.mosfet_temperature is None
    assert reading.temperatures[0] is None
    assert reading.current is None
    assert reading.remaining_capacity is None
    assert reading.voltage is None
    assert reading.cycles is None
    assert reading.temperatures[1] == -5.0  # the rest stays


def test_a_lone_minus_one_is_a_true_reading() -> None:
    # -1 mA of current (0xFFFFFFFF) and -0.1 degC (0xFFFF) in a block whose
    # pack voltage is set are readings a resting pack in a cold garage sends.
    reading = decode_live(
        2,
        image(
            {
                **LIVE,
                0x1298: 0xFFFF,  # current s32 0xFFFFFFFF = -1 mA
                0x129A: 0xFFFF,
                0x129C: 0xFFFF,  # TempBat1 s16 0xFFFF = -0.1 degC
            }
        ),
    )
    assert reading.voltage is not None
    assert reading.current == -0.001
    assert reading.temperatures[0] == -0.1


def test_identity_with_unset_capacity() -> None:
    identity = decode_identity(1, b"\xff" * 0x20, b"\xff" * 0x14)
    assert identity.model is None
    assert identity.design_capacity is None
    assert identity.cell_count is None


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=300, max_size=300))
def test_fuzz_frames(raw: bytes) -> None:
    frame = b"\x55\xaa\xeb\x90" + raw[4:299]
    frame += bytes((sum(frame) & 0xFF,))
    for decode in (lambda f: decode_live_frame(1, f), decode_settings_frame):
        with contextlib.suppress(FrameError):
            decode(frame)
