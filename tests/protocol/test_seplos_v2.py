"""Seplos V2 at ADR 0, and a late reply that must not pass for the one asked.

The frames are worked by hand from the Seplos V2.0 document: the requests
are its tables 7 and 10 (address 00), the replies follow its tables 8 and
11 with the values of its own conversion examples (3032 is 30.1 degC, 4500
is 45.00 A, 5400 is 54.00 V, 4830 is 48.30 Ah). A real pack at ADR 0 puts
0x01 in the "command group" byte of its replies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from custom_components.rack_battery.protocol.drivers.seplos_v2 import SeplosV2Driver
from custom_components.rack_battery.protocol.errors import FrameError, PackNotResponding
from custom_components.rack_battery.protocol.pylon.frame import decode_frame
from custom_components.rack_battery.protocol.transport.ascii_tcp import AsciiTcpTransport

from .raw_line import RawLine, Reply, open_line

pytestmark = pytest.mark.usefixtures("socket_enabled")

# Table 7 and table 10, address 00.
ASK_ANALOG_ADR0 = b"~20004642E00200FD37\r"
ASK_ALARMS_ADR0 = b"~20004644E00200FD35\r"

# 0x42 reply, 75 bytes of INFO (LENID 150 = 0x096, LCHKSUM 1):
ANALOG_ADR0 = (
    b"~200046001096"
    b"00"  # data flag
    b"01"  # command group 1, from the pack at ADR 0
    b"10"
    + b"0CE4" * 16  # sixteen cells at 3300 mV
    + b"06"
    + b"0BD8" * 6  # six temperatures at 3032 = 30.1 degC
    + b"1194"  # 4500 = 45.00 A, charging
    b"1518"  # 5400 = 54.00 V
    b"12DE"  # residual 4830 = 48.30 Ah
    b"0A"  # ten custom items
    b"1388"  # battery capacity 50.00 Ah
    b"0398"  # SoC 920 per mille
    b"1388"  # rated capacity 50.00 Ah
    b"0064"  # 100 cycles
    b"03E8"  # SoH 1000 per mille
    b"1518"  # port voltage 54.00 V
    b"0000"
    b"0000"
    b"0000"
    b"0000"  # reserved
    b"DCD8\r"
)
# 0x44 reply, 49 bytes of INFO (LENID 98 = 0x062, LCHKSUM 8): nothing in
# alarm, on-off state 0x03 (discharge and charge switches on).
ALARMS_ADR0 = (
    b"~200046008062"
    b"0001"  # data flag, command group 1
    b"10"
    + b"00" * 16  # sixteen cells, no alarm
    + b"06"
    + b"00" * 6  # six temperatures, no alarm
    + b"0000"  # current, total voltage
    b"14"  # twenty event bytes
    b"000000000000"  # alarm events 1-6
    b"03"  # on-off state
    + b"00" * 13  # equilibrium, system, disconnection, events 7-8, reserved
    + b"EB34\r"
)


def test_the_hand_worked_frames_are_sound() -> None:
    analog = decode_frame(ANALOG_ADR0)
    assert (analog.ver, analog.adr, analog.cid1, analog.cid2, len(analog.info)) == (
        0x20,
        0,
        0x46,
        0,
        75,
    )
    assert len(decode_frame(ALARMS_ADR0).info) == 49


@pytest.fixture
async def lines() -> AsyncIterator[list[RawLine]]:
    opened: list[RawLine] = []
    yield opened
    for line in opened:
        await line.close()


async def _driver(lines: list[RawLine], answers: dict[bytes, bytes]) -> SeplosV2Driver:
    def respond(request: bytes) -> Reply:
        return answers.get(request)

    line = await open_line(respond)
    lines.append(line)
    return SeplosV2Driver(AsciiTcpTransport(line.host, line.port, timeout=0.5))


async def test_a_pack_at_adr_0_is_read(lines: list[RawLine]) -> None:
    driver = await _driver(lines, {ASK_ANALOG_ADR0: ANALOG_ADR0, ASK_ALARMS_ADR0: ALARMS_ADR0})
    try:
        reading = await driver.read_pack(0)
    finally:
        await driver.close()
    assert lines[0].requests == [ASK_ANALOG_ADR0, ASK_ALARMS_ADR0]
    assert reading.cell_voltages == (3.3,) * 16
    assert reading.temperatures == (30.1,) * 5
    assert reading.mosfet_temperature == 30.1
    assert (reading.current, reading.voltage) == (45.0, 54.0)
    assert (reading.remaining_capacity, reading.full_capacity) == (48.3, 50.0)
    assert (reading.soc, reading.soh, reading.cycles) == (92.0, 100.0, 100)
    assert (reading.charge_enabled, reading.discharge_enabled) == (True, True)


async def test_a_late_alarm_reply_is_not_taken_for_the_values(lines: list[RawLine]) -> None:
    # The pack's 0x44 answer to a request that timed out arrives just after
    # the next 0x42 went out, then the 0x42 answer: same ADR, same return
    # code, same command group. Read as 0x42 it would say 0 V, cells at
    # 0 V and -273.1 degC.
    driver = await _driver(
        lines,
        {ASK_ANALOG_ADR0: ALARMS_ADR0 + ANALOG_ADR0, ASK_ALARMS_ADR0: ALARMS_ADR0},
    )
    try:
        reading = await driver.read_pack(0)
    finally:
        await driver.close()
    assert reading.voltage == 54.0
    assert reading.cell_voltages == (3.3,) * 16
    assert driver.transport.stats.pack(0).discarded == 1


async def test_a_late_reply_alone_is_no_reading(lines: list[RawLine]) -> None:
    driver = await _driver(lines, {ASK_ANALOG_ADR0: ALARMS_ADR0})
    try:
        with pytest.raises(FrameError, match="0x42 reply has 0 user-defined items"):
            await driver.read_pack(0)
    finally:
        await driver.close()
    stats = driver.transport.stats.pack(0)
    assert (stats.requests, stats.replies, stats.timeouts, stats.discarded) == (1, 0, 1, 1)


async def test_a_reply_for_another_group_is_not_taken(lines: list[RawLine]) -> None:
    # Command group 0x02 is pack 2's: hex "0001" -> "0002" adds one to the
    # character sum, so the checksum drops by one.
    other = ANALOG_ADR0.replace(b"10960001", b"10960002", 1).replace(b"DCD8\r", b"DCD7\r")
    driver = await _driver(lines, {ASK_ANALOG_ADR0: other})
    try:
        with pytest.raises(FrameError, match="command 0x02, asked 0x00/0x01"):
            await driver.read_pack(0)
    finally:
        await driver.close()


async def test_silence_at_adr_0_is_a_pack_not_responding(lines: list[RawLine]) -> None:
    driver = await _driver(lines, {})
    try:
        with pytest.raises(PackNotResponding):
            await driver.read_pack(0)
    finally:
        await driver.close()


async def test_a_pack_voltage_of_0_v_is_unknown_and_the_reply_suspect(
    lines: list[RawLine],
) -> None:
    # The same reply with the total voltage 0000: the characters "1518"
    # add up to 0xCF, "0000" to 0xC0, so the checksum rises by 0x0F.
    zero_volts = ANALOG_ADR0.replace(b"11941518", b"11940000", 1).replace(b"DCD8\r", b"DCE7\r")
    driver = await _driver(lines, {ASK_ANALOG_ADR0: zero_volts, ASK_ALARMS_ADR0: ALARMS_ADR0})
    try:
        report = await driver.poll([0])
    finally:
        await driver.close()
    reading = report.readings[0]
    assert reading.voltage is None  # 0 V while sixteen cells read 3.3 V
    assert reading.power is None
    assert reading.cell_voltages == (3.3,) * 16  # the rest of the reply stands
    assert reading.current == 45.0
    stats = driver.transport.stats.pack(0)
    assert (stats.replies, stats.suspect) == (2, 1)


async def test_an_adapter_hearing_its_own_requests_is_read_through(
    lines: list[RawLine],
) -> None:
    # The RS485 adapter echoes each request before the pack answers it.
    driver = await _driver(
        lines,
        {
            ASK_ANALOG_ADR0: ASK_ANALOG_ADR0 + ANALOG_ADR0,
            ASK_ALARMS_ADR0: ASK_ALARMS_ADR0 + ALARMS_ADR0,
        },
    )
    try:
        reading = await driver.read_pack(0)
    finally:
        await driver.close()
    assert reading.voltage == 54.0
    assert reading.charge_enabled is True
    stats = driver.transport.stats.pack(0)
    assert (stats.requests, stats.replies, stats.discarded) == (2, 2, 2)


async def test_a_reply_from_another_family_is_not_taken(lines: list[RawLine]) -> None:
    # A Pylontech-shaped 0x42 answer (two user-defined items) at ADR 0, VER
    # 0x20 as Seplos: too few items for a Seplos pack, so not its answer.
    info = "0001010CE40000000CE4C35002C3500190"
    body = f"20004600{_length(len(info))}{info}".encode()
    pylontech = b"~" + body + f"{-sum(body) & 0xFFFF:04X}".encode() + b"\r"
    driver = await _driver(lines, {ASK_ANALOG_ADR0: pylontech})
    try:
        with pytest.raises(FrameError, match="seplos_v2 sends at least 10"):
            await driver.read_pack(0)
    finally:
        await driver.close()


def _length(lenid: int) -> str:
    lchksum = -((lenid >> 8) + (lenid >> 4 & 0xF) + (lenid & 0xF)) & 0xF
    return f"{lchksum:X}{lenid:03X}"
