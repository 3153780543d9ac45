"""Seplos V3 decoders against registers worked out by hand from the XZH Modbus-RTU map."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.rack_battery.protocol.drivers.seplos_v3 import (
    decode_identity,
    decode_pack,
    decode_system,
    decode_text,
)
from custom_components.rack_battery.protocol.errors import FrameError
from custom_components.rack_battery.protocol.rtu import (
    Frame,
    RtuSplitter,
    read_request,
    registers,
    seal,
)

# PIA, input registers 0x1000..0x1010, a pack discharging at 10 A.
PACK: tuple[int, ...] = (
    0x14B4,  # 1000 voltage UINT16 10 mV: 5300 -> 53.00 V
    0xFC18,  # 1001 current INT16 10 mA: 0xFC18 - 0x10000 = -1000 -> -10.00 A
    0x1F40,  # 1002 remaining 10 mAh: 8000 -> 80.00 Ah
    0x2710,  # 1003 total capacity: 10000 -> 100.00 Ah
    0x0000,  # 1004 total discharge capacity (10 Ah)
    0x0320,  # 1005 SoC 0.1 %: 800 -> 80.0 %
    0x03DE,  # 1006 SoH 0.1 %: 990 -> 99.0 %
    0x0096,  # 1007 cycles: 150
    0x0CE4,  # 1008 average cell: 3300 mV
    0x0BA5,  # 1009 average temperature 0.1 K: 2981 -> 25.0 degC
    0x0CF3,  # 100A max cell 3315 mV
    0x0CDA,  # 100B min cell 3290 mV
    0x0BAF,  # 100C max temperature
    0x0B9B,  # 100D min temperature
    0x0000,  # 100E reserved
    0x0064,  # 100F max discharge current 1 A: 100 A
    0x0032,  # 1010 max charge current: 50 A
)
# PIB, input registers 0x1100..0x1119.
CELLS: tuple[int, ...] = (
    *(0x0CE4,) * 14,  # cells 1..14: 3300 mV
    0x0CDA,  # cell 15: 3290 mV
    0x0CF3,  # cell 16: 3315 mV
    0x0BA5,  # 1110 sensor 1: (2981 - 2731) / 10 = 25.0 degC
    0x0B9B,  # 1111 sensor 2: (2971 - 2731) / 10 = 24.0 degC
    0x0A6B,  # 1112 sensor 3: (2667 - 2731) / 10 = -6.4 degC
    0x0000,  # 1113 sensor 4: 0 K, no sensor -> unknown
    0,
    0,
    0,
    0,  # 1114..1117 reserved
    0x0BAF,  # 1118 environment: (2991 - 2731) / 10 = 26.0 degC
    0x0BE1,  # 1119 power (MOSFET): (3041 - 2731) / 10 = 31.0 degC
)


def coils(*on: int) -> list[bool]:
    """Return the 144 coils 0x1200..0x128F with the listed ones set."""
    return [0x1200 + index in on for index in range(0x90)]


def test_pack_block_and_cells() -> None:
    reading = decode_pack(3, PACK, CELLS)
    assert reading.voltage == 53.0
    assert reading.current == -10.0  # discharging is negative
    assert reading.remaining_capacity == 80.0
    assert reading.full_capacity == 100.0
    assert reading.soc == 80.0
    assert reading.soh == 99.0
    assert reading.cycles == 150
    assert reading.discharge_current_limit == 100.0
    assert reading.charge_current_limit == 50.0
    assert reading.cell_voltages == (*(3.3,) * 14, 3.29, 3.315)
    assert reading.temperatures == (25.0, 24.0, -6.4, None, 26.0)
    assert reading.mosfet_temperature == 31.0
    # Without the coils, nothing is known of the FETs and alarms.
    assert reading.charge_enabled is None
    assert reading.warnings == frozenset()


def test_coils_give_fets_balancing_and_alarms() -> None:
    events = coils(
        0x1278,  # TB07 bit 0: discharge FET on
        0x1232,  # cell 3 balancing (0x1230 + 2)
        0x1248,  # TB02 bit 0: cell high voltage alarm
        0x1266,  # TB05 bit 6: output short circuit protection
        0x1274,  # TB06 bit 4: cell difference alarm
        0x128B,  # TB15 bit 3: discharge MOSFET fault
    )
    reading = decode_pack(1, PACK, CELLS, events)
    assert reading.discharge_enabled is True
    assert reading.charge_enabled is False  # 0x1279 clear
    assert reading.balancing is True
    assert reading.warnings == {"cell_overvoltage", "cell_imbalance"}
    assert reading.protections == {"short_circuit", "discharge_mosfet_fault"}


def test_charging_current_is_positive() -> None:
    # 0x03E8 = 1000 -> +10.00 A while charging.
    reading = decode_pack(1, (PACK[0], 0x03E8, *PACK[2:]), CELLS)
    assert reading.current == 10.0


# EIA, the master's system block 0x2000..0x2019: 32-bit values LOW word first.
SYSTEM: tuple[int, ...] = (
    0x14B4, 0x0000,  # 2000 voltage 10 mV: 5300 -> 53.00 V
    0xFECF, 0xFFFF,  # 2002 current INT32 100 mA: 0xFFFFFECF = -305 -> -30.5 A
    0x7530, 0x0000,  # 2004 remaining 10 mAh: 30000 -> 300.00 Ah
    0x1170, 0x0001,  # 2006 total: 0x00011170 = 70000 -> 700.00 Ah
    0x0000, 0x0000,  # 2008 total discharge
    0x3880, 0x0001,  # 200A rated: 0x00013880 = 80000 -> 800.00 Ah
    0x000F, 0x0000,  # 200C online packs: bits 0..3
    0x0004, 0x0000,  # 200E protected packs: bit 2
    0x0FA0, 0x0000,  # 2010 max discharge 100 mA: 4000 -> 400.0 A
    0x07D0, 0x0000,  # 2012 max charge: 2000 -> 200.0 A
    0x0230,  # 2014 suggested pack OV 100 mV
    0x01B8,  # 2015 suggested pack UV
    0x0004,  # 2016 pack count
    0x00A0,  # 2017 cycles: 160
    0x0258,  # 2018 SoC: 600 -> 60.0 %
    0x03E3,  # 2019 SoH: 995 -> 99.5 %
)  # fmt: skip


def test_system_block_low_word_first() -> None:
    summary = decode_system(SYSTEM)
    assert summary.voltage == 53.0
    # High word first would make this 0xFECFFFFF: -2097152.1 A.
    assert summary.current == -30.5
    assert summary.remaining_capacity == 300.0
    # High word first would make this 0x11700001: about 2.9 MAh.
    assert summary.full_capacity == 700.0
    assert summary.rated_capacity == 800.0
    assert summary.online_packs == {0, 1, 2, 3}
    assert summary.protected_packs == {2}
    assert summary.discharge_current_limit == 400.0
    assert summary.charge_current_limit == 200.0
    assert summary.pack_count == 4
    assert summary.cycles == 160
    assert summary.soc == 60.0
    assert summary.soh == 99.5


def test_version_text_is_high_byte_first() -> None:
    # "SEPLOS", the first character in the HIGH byte, as real packs send it:
    # 'S' 0x53, 'E' 0x45 -> 0x5345; 'P' 0x50, 'L' 0x4C -> 0x504C; 'O' 0x4F, 'S' 0x53 -> 0x4F53.
    assert decode_text([0x5345, 0x504C, 0x4F53, 0x0000]) == "SEPLOS"
    assert decode_text([0xFFFF, 0x0000]) is None


def test_identity() -> None:
    via = [0] * 0x33
    via[0:3] = [0x5345, 0x504C, 0x4F53]  # factory "SEPLOS"
    via[0x0A:0x0C] = [0x3134, 0x3538]  # device name "1458" ('1' 0x31, '4' 0x34; '5' 0x35, '8' 0x38)
    via[0x14] = 0x0106  # firmware: two bytes 0x01, 0x06, not text -> "1.6"
    via[0x15:0x17] = [0x424D, 0x5331]  # BMS serial "BMS1"
    via[0x24:0x26] = [0x5041, 0x4337]  # pack serial "PAC7"
    identity = decode_identity(2, via, rated=0x2710)  # 10000 * 10 mAh = 100 Ah
    assert identity.manufacturer == "SEPLOS"
    assert identity.model == "1458"
    assert identity.firmware == "1.6"
    assert identity.serial == "PAC7"
    assert identity.design_capacity == 100.0


# A pack's whole reply to "read input registers 0x1700, 51 registers" (unit 1),
# byte by byte as it arrives on the wire: unit, function, byte count, then
# each register high byte first; the text itself high byte first too.
VIA_REPLY_BODY = bytes.fromhex(
    "01"  # unit 1
    "04"  # read input registers
    "66"  # 102 bytes: 51 registers
    "5345 504C 4F53 0000 0000 0000 0000 0000 0000 0000"  # 1700 factory "SEPLOS"
    "3130 3042 0000 0000 0000 0000 0000 0000 0000 0000"  # 170A device "100B"
    "0106"  # 1714 firmware 1.6
    "424D 5331 3233 3400 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000"  # BMS SN
    "3232 3035 3036 3135 3136 3300 0000 0000 0000 0000 0000 0000 0000 0000 0000".replace(  # pack SN
        " ", ""
    )
)


def test_a_version_reply_frame_names_maker_and_serial() -> None:
    frame = seal(VIA_REPLY_BODY)
    found = [reply for _, reply in RtuSplitter().feed(read_request(1, 4, 0x1700, 51) + frame)]
    reply = found[-1]
    assert isinstance(reply, Frame)
    identity = decode_identity(1, registers(reply))
    assert identity.manufacturer == "SEPLOS"
    assert identity.model == "100B"
    assert identity.firmware == "1.6"
    assert identity.serial == "22050615163"
    assert identity.key == "22050615163"  # named by its serial, not its slot


def test_system_sentinels_are_unknown() -> None:
    unset = list(SYSTEM)
    unset[2:4] = [0x0000, 0x8000]  # current INT32 0x80000000
    unset[0:2] = [0xFFFF, 0xFFFF]  # voltage 0xFFFFFFFF
    unset[0xC:0xE] = [0xFFFF, 0xFFFF]  # online packs: a sentinel, not 32 packs
    summary = decode_system(unset)
    assert summary.current is None
    assert summary.voltage is None
    assert summary.online_packs == frozenset()


def test_pack_sentinels_are_unknown() -> None:
    reading = decode_pack(1, [0xFFFF] * 17, [0xFFFF] * 26)
    assert reading.voltage is None
    assert reading.current is None  # 0xFFFF as INT16 is -1: unset
    assert reading.soc is None
    assert reading.cycles is None
    assert reading.cell_voltages == ()
    assert reading.temperatures == (None,) * 5
    reading = decode_pack(1, [PACK[0], 0x8000, *PACK[2:]], CELLS)
    assert reading.current is None
    # With the pack voltage set, 0xFFFF is a true -10 mA, not a filler.
    reading = decode_pack(1, [PACK[0], 0xFFFF, *PACK[2:]], CELLS)
    assert reading.current == -0.01


def test_wrong_lengths_are_frame_errors() -> None:
    with pytest.raises(FrameError):
        decode_pack(1, PACK[:-1], CELLS)
    with pytest.raises(FrameError):
        decode_pack(1, PACK, CELLS, [False] * 8)
    with pytest.raises(FrameError):
        decode_system(SYSTEM[:10])


words = st.integers(min_value=0, max_value=0xFFFF)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(words, max_size=20),
    st.lists(words, max_size=30),
    st.none() | st.lists(st.booleans(), max_size=150),
)
def test_fuzz_pack(pack: list[int], cells: list[int], events: list[bool] | None) -> None:
    try:
        reading = decode_pack(1, pack, cells, events)
    except FrameError:
        return
    assert reading.soc is None or 0 <= reading.soc <= 100


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=-5, max_value=0x1FFFF), max_size=30))
def test_fuzz_system(registers: list[int]) -> None:
    with contextlib.suppress(FrameError):
        decode_system(registers)


@settings(max_examples=100, deadline=None)
@given(st.lists(words, min_size=0x33, max_size=0x33))
def test_fuzz_identity(registers: list[int]) -> None:
    decode_identity(1, registers)
