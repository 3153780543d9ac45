"""0x44, 0x47, 0x92, 0x96, the 0xFF bank read, PACE and Seplos V2, on frames written out by hand.

Every INFO below is laid out field by field from the vendor documents, with
the arithmetic in the comments; none of it comes from our own encoders.
"""

from __future__ import annotations

import pytest

from custom_components.rack_battery.protocol import alarms as a
from custom_components.rack_battery.protocol.errors import FrameError
from custom_components.rack_battery.protocol.pylon.alarms import (
    decode_pace_alarms,
    decode_pylontech_alarms,
    decode_pylontech_bank_alarms,
    decode_seplos_alarms,
)
from custom_components.rack_battery.protocol.pylon.analog import decode_analog, decode_bank_analog
from custom_components.rack_battery.protocol.pylon.frame import checksum, decode_frame
from custom_components.rack_battery.protocol.pylon.management import (
    decode_charge_management,
    decode_firmware,
    decode_system_parameters,
)
from custom_components.rack_battery.protocol.pylon.profiles import PACE, SEPLOS_V2

# ---------------------------------------------------------------------------
# Pylontech 0x44: flag, command, M cell bytes, N temperature bytes, charge
# current, module voltage, discharge current, status 1..5.

PYLONTECH_ALARMS = bytes.fromhex(
    "11"  # DATAFLAG
    "03"  # command = ADR 3
    "10" + "00" * 15 + "02"  # 16 cells, cell 16 above its upper limit
    "06"  # six temperatures
    "00"  # BMS board normal
    "02"  # cells 1-4 above the upper limit
    "00"
    "01"  # cells 5-8 normal, cells 9-12 below the lower limit
    "00"
    "02"  # cells 13-16 normal, MOSFET above the upper limit
    "00"  # charge current normal
    "00"  # module voltage normal
    "02"  # discharge current above the upper limit
    "50"  # status 1 = 0101 0000: bit 6 charge over temp, bit 4 DOC
    "04"  # status 2 = 0100: bit 2 discharge MOSFET on, bit 1 charge MOSFET off
    "40"  # status 3: bit 6 effective discharge current
    "01"  # status 4: cell 1 failed
    "80"  # status 5: cell 16 failed
)


def test_pylontech_alarms() -> None:
    state = decode_pylontech_alarms(PYLONTECH_ALARMS, expect_command=3)
    assert state.protections == {
        a.CELL_OVERVOLTAGE,  # cell 16 byte 02
        a.CHARGE_OVERTEMPERATURE,  # cells 1-4 byte 02 and status 1 bit 6
        a.CHARGE_UNDERTEMPERATURE,  # cells 9-12 byte 01
        a.MOSFET_OVERTEMPERATURE,  # sixth temperature byte 02
        a.DISCHARGE_OVERCURRENT,  # discharge current byte 02 and status 1 bit 4
        a.CELL_FAULT,  # status 4 and 5
    }
    assert state.warnings == frozenset()  # Pylontech has none of its own
    assert state.charge_enabled is False
    assert state.discharge_enabled is True
    assert state.faulty_cells == (1, 16)
    assert state.protections <= set(a.Alarm)


def test_pylontech_alarms_for_another_pack_are_refused() -> None:
    with pytest.raises(FrameError, match="0x44 reply is for command 0x03, asked 0x04"):
        decode_pylontech_alarms(PYLONTECH_ALARMS, expect_command=4)


def test_pylontech_alarms_cut_short() -> None:
    with pytest.raises(FrameError, match="status bytes 1 to 5"):
        decode_pylontech_alarms(PYLONTECH_ALARMS[:-1])


# A quiet 0x44 request to ADR 2 from the shared facts, checked here: the
# characters of "20024644E00202" sum to 0x02CF; -0x02CF & 0xFFFF = 0xFD31.
def test_alarm_request_checksum() -> None:
    assert checksum(b"20024644E00202") == 0xFD31


# ---------------------------------------------------------------------------
# Pylontech 0x47: flag, then twelve 16-bit values.

SYSTEM_PARAMETERS = bytes.fromhex(
    "11"
    "0E42"  # cell high 3650 mV
    "0C1C"  # cell low 3100 mV
    "0B54"  # cell under 2900 mV
    "0D49"  # charge high: 3401 -> (3401 - 2731) / 10 = 67.0 degC
    "0AAB"  # charge low: 2731 -> 0.0 degC
    "0172"  # charge current limit: 370 x 100 mA = 37.0 A
    "D2F0"  # module high 54000 mV
    "B5A4"  # module low 46500 mV
    "ADD4"  # module under 44500 mV
    "0D49"  # discharge high 67.0 degC
    "0A0F"  # discharge low: 2575 -> -15.6 degC
    "FC18"  # discharge current limit: -1000 x 100 mA = -100 A, kept as 100 A
)


def test_system_parameters() -> None:
    limits = decode_system_parameters(SYSTEM_PARAMETERS)
    assert (limits.cell_high_voltage, limits.cell_low_voltage, limits.cell_under_voltage) == (
        3.65,
        3.1,
        2.9,
    )
    assert (limits.charge_high_temperature, limits.charge_low_temperature) == (67.0, 0.0)
    assert limits.charge_current_limit == 37.0
    assert (limits.pack_high_voltage, limits.pack_low_voltage, limits.pack_under_voltage) == (
        54.0,
        46.5,
        44.5,
    )
    assert (limits.discharge_high_temperature, limits.discharge_low_temperature) == (67.0, -15.6)
    assert limits.discharge_current_limit == 100.0  # the magnitude of 0xFC18


def test_system_parameters_cut_short() -> None:
    with pytest.raises(FrameError, match="discharge current limit"):
        decode_system_parameters(SYSTEM_PARAMETERS[:-2])


# ---------------------------------------------------------------------------
# Pylontech 0x92: command, charge V, discharge V, charge I, discharge I, status.

CHARGE_MANAGEMENT = bytes.fromhex(
    "02"  # command = ADR 2
    "D0D0"  # 53456 mV
    "AFC8"  # 45000 mV
    "01F4"  # 500 x 100 mA = 50.0 A
    "FC18"  # -1000 x 100 mA: discharge is negative here, kept as 100.0 A
    "C8"  # 1100 1000: charge and discharge allowed, full charge requested
)


def test_charge_management() -> None:
    limits = decode_charge_management(CHARGE_MANAGEMENT, expect_command=2)
    assert limits.charge_voltage_limit == 53.456
    assert limits.discharge_voltage_limit == 45.0
    assert limits.charge_current_limit == 50.0
    assert limits.discharge_current_limit == 100.0
    assert limits.charge_allowed
    assert limits.discharge_allowed
    assert limits.full_charge_request
    assert not limits.force_charge


def test_charge_management_for_another_pack_is_refused() -> None:
    with pytest.raises(FrameError, match="0x92 reply is for command 0x02, asked 0x05"):
        decode_charge_management(CHARGE_MANAGEMENT, expect_command=5)


# ---------------------------------------------------------------------------
# Pylontech 0x96: command, two bytes of the vendor's version, three of the main line.


def test_firmware() -> None:
    version = decode_firmware(bytes.fromhex("020105020A03"), expect_command=2)
    assert (version.manufacturer, version.main_line) == ("1.5", "2.10.3")
    assert str(version) == "2.10.3"


def test_firmware_cut_short() -> None:
    with pytest.raises(FrameError, match="main line version"):
        decode_firmware(bytes.fromhex("02010502"))


# ---------------------------------------------------------------------------
# The master's reply to INFO = 0xFF: flag, pack count, then pack blocks that
# begin at the cell count (no command byte of their own).


def _pack_block(cell_mv: str, current: str, remaining: str) -> str:
    return (
        "02" + cell_mv * 2  # two cells (short, to keep the frame readable)
        + "01" "0BAA"  # one temperature: 2986 -> 25.5 degC
        + current
        + "1A2C"  # 6700 mV
        + remaining
        + "02" "C350" "0064"  # total 50000 mAh, 100 cycles
    )  # fmt: skip


BANK_ANALOG = bytes.fromhex(
    "11"
    "02"  # two packs
    + _pack_block("0D05", "FFD8", "61A8")  # 3333 mV; -40 x 0.1 A = -4.0 A; 25000 mAh
    + _pack_block("0D06", "0014", "9C40")  # 3334 mV; +2.0 A; 40000 mAh
)


def test_bank_analog() -> None:
    first, second = decode_bank_analog(BANK_ANALOG, first_address=2)
    assert (first.address, second.address) == (2, 3)
    assert first.cell_voltages == (3.333, 3.333)
    assert (first.current, second.current) == (-4.0, 2.0)
    assert (first.voltage, second.voltage) == (6.7, 6.7)
    assert (first.soc, second.soc) == (50.0, 80.0)  # 25000 / 50000, 40000 / 50000
    assert second.cycles == 100
    assert first.mosfet_temperature is None  # one sensor only


# The group request and a whole group reply frame. The request is the one
# the V3.3 document describes for the system (ADR = 0x02 + 0x10 m, INFO =
# 0xFF): "~" 20 02 46 42 E002 FF CHKSUM "\r". Its characters "20024642E002FF"
# add up to 0x32+0x30+0x30+0x32 + 0x34+0x36+0x34+0x32 + 0x45+0x30+0x30+0x32
# + 0x46+0x46 = 0x2F7, so CHKSUM = 0x10000 - 0x2F7 = FD09.
GROUP_REQUEST = b"~20024642E002FFFD09\r"

# Each block is the V3.3 document's own 74 Ah example (section 4), from the
# cell count on: 15 cells, 5 temperatures, current 0, module voltage C725
# (50981 mV), remaining FFFF and user-defined count 4 (a pack over 65 Ah),
# total FFFF, cycles 0002, remaining 2 = 00CA58 (51800 mAh), total 2 =
# 012110 (74000 mAh). The second pack differs in its current, 0xFFD8
# (-40 x 0.1 A = -4.0 A discharging), and its cycles, 0x0003.
_EXAMPLE_CELLS = "0F0D450D440D450D440D450D440D3E0D450D4A0D4A0D4B0D4A0D4A0D4A0D4A"
_EXAMPLE_TEMPERATURES = "050BC30BC30BC30BCD0BCD"  # 3011 -> 28.0, 3021 -> 29.0 degC
GROUP_REPLY_INFO = (
    "11"  # INFOFLAG
    "02"  # with INFO = 0xFF: the number of packs, M = 2
    + _EXAMPLE_CELLS + _EXAMPLE_TEMPERATURES + "0000" "C725" "FFFF" "04"
    + "FFFF" "0002" "00CA58" "012110"
    + _EXAMPLE_CELLS + _EXAMPLE_TEMPERATURES + "FFD8" "C725" "FFFF" "04"
    + "FFFF" "0003" "00CA58" "012110"
)  # fmt: skip


def _group_reply_frame() -> bytes:
    """Return the master's reply, LENGTH and CHKSUM worked out by the document's rules."""
    lenid = len(GROUP_REPLY_INFO)  # ASCII characters of INFO
    lchksum = -((lenid >> 8) + (lenid >> 4 & 0xF) + (lenid & 0xF)) & 0xF
    body = f"20024600{lchksum:X}{lenid:03X}{GROUP_REPLY_INFO}"
    chksum = -sum(body.encode()) & 0xFFFF
    return f"~{body}{chksum:04X}\r".encode()


def test_group_request_checksum() -> None:
    assert checksum(GROUP_REQUEST[1:-5]) == 0xFD09


def test_group_reply_of_the_document_example() -> None:
    frame = decode_frame(_group_reply_frame())
    assert (frame.adr, frame.cid2) == (2, 0x00)
    master, slave = decode_bank_analog(frame.info, first_address=2)
    assert (master.address, slave.address) == (2, 3)
    for pack in (master, slave):
        assert pack.cell_voltages[:3] == (3.397, 3.396, 3.397)
        assert pack.cell_voltages[-1] == 3.402
        assert len(pack.cell_voltages) == 15
        assert pack.temperatures == (28.0, 28.0, 28.0, 29.0, 29.0)
        assert pack.voltage == 50.981
        # The 24-bit fields win over the 0xFFFF in the 16-bit ones.
        assert (pack.remaining_capacity, pack.full_capacity) == (51.8, 74.0)
        assert pack.soc == 70.0  # 51.8 / 74.0
    assert (master.current, slave.current) == (0.0, -4.0)
    assert (master.cycles, slave.cycles) == (2, 3)


def test_bank_analog_with_unknown_items_cannot_be_split() -> None:
    # Five user-defined items where Pylontech defines four: where the next
    # pack's block begins is unknowable.
    bad = bytearray(BANK_ANALOG)
    bad[2 + 1 + 4 + 1 + 2 + 6] = 5
    with pytest.raises(FrameError, match="next pack's block"):
        decode_bank_analog(bytes(bad), first_address=2)


def test_group_reply_that_runs_on_is_refused() -> None:
    # A third pack's bytes with a count of two: not the reply it claims to be.
    with pytest.raises(FrameError, match="runs 3 bytes past its 2 packs"):
        decode_bank_analog(BANK_ANALOG + bytes.fromhex("0D0505"), first_address=2)
    block = "02000001000000000006000000"
    with pytest.raises(FrameError, match="past its 1 packs"):
        decode_pylontech_bank_alarms(bytes.fromhex("1101" + block + block))


def test_group_alarm_reply_is_not_taken_for_a_group_analog_reply() -> None:
    # The master's 0x44 group answer for two packs of two cells, read as a
    # 0x42 group answer: its bytes do not add up to two analog blocks.
    block = "02000001000000000006000000"
    with pytest.raises(FrameError):
        decode_bank_analog(bytes.fromhex("1102" + block + block), first_address=2)


def test_bank_alarms() -> None:
    block = "02000001000000000006000000"  # FETs on, quiet
    hot = "02000001020000004002000000"  # hot, charge FET on
    states = decode_pylontech_bank_alarms(bytes.fromhex("1102" + block + hot))
    assert [s.protections for s in states] == [
        frozenset(),
        {a.MOSFET_OVERTEMPERATURE, a.CHARGE_OVERTEMPERATURE},
    ]
    assert [(s.charge_enabled, s.discharge_enabled) for s in states] == [
        (True, True),
        (True, False),
    ]


# ---------------------------------------------------------------------------
# PACE (VER 0x25). The document's own 0x42 reply: its explanation calls the
# pack ADR 0 with checksum E265, but the bytes it shows carry ADR 02 and
# command 02, and E261 is the checksum of those bytes (E265 is the checksum
# the same frame would have at ADR 00 and command 00: 2 + 2 less in the sum).

PACE_DOCUMENT_REPLY = (
    b"~25024600F07A0002100D370CE50D080CED0D060CE70D1D0CEB0CF80CFA0CFB0D070CE1"
    b"0CF10CC20D06060BAA0BAC0BA60BA70BA90BB20000CF9406D603138800001388E261\r"
)


def test_pace_document_reply() -> None:
    frame = decode_frame(PACE_DOCUMENT_REPLY)
    assert (frame.ver, frame.adr, frame.cid2) == (0x25, 2, 0)
    reading = decode_analog(frame.info, address=2, profile=PACE, expect_command=2)
    assert reading.cell_voltages[:3] == (3.383, 3.301, 3.336)  # 0D37, 0CE5, 0D08
    assert reading.cell_voltages[-1] == 3.334  # 0D06
    # 0BAA = 2986 -> (2986 - 2730) / 10 = 25.6; 0BAC 25.8; 0BA6 25.2; 0BA7 25.3;
    # MOSFET 0BA9 25.5; environment 0BB2 = 2994 -> 26.4
    assert reading.temperatures == (25.6, 25.8, 25.2, 25.3, 26.4)
    assert reading.mosfet_temperature == 25.5
    assert reading.current == 0.0
    assert reading.voltage == 53.14  # CF94 = 53140 mV
    assert reading.remaining_capacity == 17.5  # 06D6 = 1750 x 10 mAh
    assert reading.full_capacity == 50.0  # 1388 = 5000 x 10 mAh
    assert reading.design_capacity == 50.0
    assert reading.cycles == 0
    assert reading.soc == 35.0  # 17.5 / 50


def test_pace_document_requests() -> None:
    # 0x90 / 0x42 / 0x44 to ADR 2 as the document sends them.
    assert checksum(b"250246900000") == 0xFDA4
    assert checksum(b"25024642E00202") == 0xFD2E
    assert checksum(b"25024644E00202") == 0xFD2C


PACE_ALARMS = bytes.fromhex(
    "00"  # INFOFLAG
    "01"  # command = ADR 1
    "10"
    + "00" * 16  # sixteen cells, all normal
    + "06"
    + "00" * 6  # six temperatures, all normal
    + "000000"  # charge current, voltage, discharge current
    "40"  # protect state 1: bit 6 short circuit
    "11"  # protect state 2: bit 4 MOSFET over temp, bit 0 charge over temp
    "04"  # instructions: bit 2 discharge FET on, bit 1 charge FET off
    "00"  # control state
    "04"  # fault state: bit 2 NTC fault
    "00"
    "80"  # balancing: cell 16
    "02"  # warn state 1: bit 1 cell low voltage
    "81"  # warn state 2: bit 7 low power, bit 0 charge over temperature
)


def test_pace_alarms() -> None:
    state = decode_pace_alarms(PACE_ALARMS, expect_command=1)
    assert state.protections == {
        a.SHORT_CIRCUIT,
        a.MOSFET_OVERTEMPERATURE,
        a.CHARGE_OVERTEMPERATURE,
        a.TEMPERATURE_SENSOR_FAULT,
    }
    assert state.warnings == {a.CELL_UNDERVOLTAGE, a.LOW_CAPACITY, a.CHARGE_OVERTEMPERATURE}
    assert (state.charge_enabled, state.discharge_enabled) == (False, True)
    assert state.balancing is True


def test_pace_alarms_cut_short() -> None:
    with pytest.raises(FrameError, match="state bytes"):
        decode_pace_alarms(PACE_ALARMS[:-1])


# ---------------------------------------------------------------------------
# Seplos V2: 0x42 INFO is 75 bytes, 0x44 INFO 49 (as the document says).

SEPLOS_ANALOG = bytes.fromhex(
    "00"  # DATA FLAG
    "00"  # command group = ADR 0
    "10"
    + "0CE4"
    * 16  # sixteen cells of 3300 mV
    + "06"
    "0BD8"  # 3032 -> (3032 - 2731) / 10 = 30.1 degC (the document's example)
    "0BAA"
    "0BAA"
    "0BAA"  # 2986 -> 25.5 degC
    "0BB4"  # environment: 2996 -> 26.5 degC
    "0BC3"  # power board: 3011 -> 28.0 degC
    "1194"  # 4500 x 10 mA = 45.00 A (the document's example)
    "1518"  # 5400 x 10 mV = 54.00 V (the document's example)
    "12DE"  # 4830 x 10 mAh = 48.30 Ah (the document's example)
    "0A"  # ten user-defined items
    "2710"  # battery capacity 10000 -> 100.00 Ah
    "01E3"  # SoC 483 per mille -> 48.3 %
    "2710"  # rated capacity 100.00 Ah
    "0032"  # 50 cycles
    "03DE"  # SoH 990 per mille -> 99.0 %
    "1518"  # port voltage 54.00 V
    "0000"
    "0000"
    "0000"
    "0000"  # reserved
)


def test_seplos_analog() -> None:
    assert len(SEPLOS_ANALOG) == 75
    reading = decode_analog(SEPLOS_ANALOG, address=0, profile=SEPLOS_V2, expect_command=0)
    assert reading.cell_voltages == (3.3,) * 16
    assert reading.temperatures == (30.1, 25.5, 25.5, 25.5, 26.5)
    assert reading.mosfet_temperature == 28.0
    assert reading.current == 45.0
    assert reading.voltage == 54.0
    assert reading.remaining_capacity == 48.3
    assert reading.full_capacity == 100.0
    assert reading.design_capacity == 100.0
    assert reading.soc == 48.3  # its own, not derived
    assert reading.soh == 99.0
    assert reading.cycles == 50


SEPLOS_ALARMS = bytes.fromhex(
    "00"
    "05"  # flag, command = ADR 5
    "10"
    + "00" * 16  # cells
    + "06"
    + "00" * 6  # temperatures
    + "00"
    "00"  # current, voltage
    "14"  # twenty event bytes
    "04"  # event 1: bit 2 current sensor fault
    "09"  # event 2: bit 0 cell high voltage alarm, bit 3 cell under voltage protection
    "02"  # event 3: bit 1 charge over temperature protection
    "20"  # event 4: bit 5 power high temperature alarm
    "20"  # event 5: bit 5 output short circuit protection
    "04"  # event 6: bit 2 residual capacity alarm
    "02"  # on-off: bit 1 charge switch on, bit 0 discharge off
    "00"
    "00"  # equilibrium: none
    "00"
    "00"
    "00"
    "00"
    "00"  # system, disconnection 1/2, events 7/8
    "000000000000"  # reserved
)


def test_seplos_alarms() -> None:
    assert len(SEPLOS_ALARMS) == 49
    state = decode_seplos_alarms(SEPLOS_ALARMS, expect_command=5)
    assert state.warnings == {a.CELL_OVERVOLTAGE, a.MOSFET_OVERTEMPERATURE, a.LOW_CAPACITY}
    assert state.protections == {
        a.CURRENT_SENSOR_FAULT,
        a.CELL_UNDERVOLTAGE,
        a.CHARGE_OVERTEMPERATURE,
        a.SHORT_CIRCUIT,
    }
    assert (state.charge_enabled, state.discharge_enabled) == (True, False)
    assert state.balancing is False


def test_seplos_short_event_block_leaves_switches_unknown() -> None:
    short = SEPLOS_ALARMS[: 2 + 17 + 7 + 2] + bytes((3, 0, 0x01, 0))  # three event bytes
    state = decode_seplos_alarms(short)
    assert state.warnings == {a.CELL_OVERVOLTAGE}
    assert state.charge_enabled is None
    assert state.balancing is None
