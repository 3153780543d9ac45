"""Response timeouts worked out from the wire, and learned from the packs.

The derived figures are checked against numbers worked out by hand from
the vendor documents' figures: 8N1 is ten bits a byte, PACE Modbus gives a
BMS 200 ms, PACE ASCII and Seplos V2 500 ms, the others name nothing (500 ms
assumed); the margin is 1.25 and the host's slack 20 ms.
"""

from __future__ import annotations

import math

from hypothesis import given, strategies as st
import pytest

from custom_components.rack_battery.protocol.drivers.pace_modbus import PaceModbusDriver
from custom_components.rack_battery.protocol.drivers.seplos_v3 import SeplosV3Driver
from custom_components.rack_battery.protocol.modbus import read_request
from custom_components.rack_battery.protocol.pylon.frame import encode_frame
from custom_components.rack_battery.protocol.timing import (
    FAMILY_TIMING,
    GATEWAY_HOP,
    MIN_SAMPLES,
    PYLON_LONGEST,
    RTU_OVERHEAD,
    ReplyTimer,
    derived_timeout,
    family_timing,
    learned_timeout,
    pylon_reply_bytes,
    wire_time,
)
from custom_components.rack_battery.protocol.transport.ascii_tcp import AsciiTcpTransport
from custom_components.rack_battery.protocol.transport.modbus_rtu import (
    ModbusRtuTcpTransport,
    ModbusSerialTransport,
)
from custom_components.rack_battery.protocol.transport.modbus_tcp import ModbusTcpTransport

# (family, request bytes, longest reply bytes) of each family's main read:
# PACE Modbus reads registers 0..36 (8-byte request; unit, function, count,
# 74 data bytes, CRC: 79); Seplos V3 its 0x11-register pack block (39);
# JK-PB a 40-register chunk (85); the ASCII families 0x42 for one pack
# (a 20-character request; 18 framing characters and at most 128 INFO
# bytes as 256 characters: 274); Pylontech 0x42 for its whole group (the
# longest frame the framing allows: 18 + 4095 = 4113).
READS = {
    "pace_modbus": (8, 79),
    "seplos_v3": (8, 39),
    "jk_pb": (8, 85),
    "pace_ascii": (20, 274),
    "seplos_v2": (20, 274),
    "pylontech_rs485": (20, 274),
    "pylontech_group": (20, 4113),
}

# Worked by hand: (request + reply) * 10 / baud, plus the answer time,
# times 1.25, plus 0.02.
HAND_WORKED = [
    # PACE Modbus, 87 bytes, 200 ms: 870/9600 = 0.090625; 0.290625 * 1.25 = 0.36328125.
    ("pace_modbus", 9600, 0.38328125),
    ("pace_modbus", 19200, 0.326640625),  # 0.0453125 + 0.2 -> 0.306640625
    ("pace_modbus", 115200, 0.2794401041666667),  # 0.0075520833 + 0.2
    # Seplos V3, 47 bytes, no figure (500 ms): 470/9600 = 0.0489583.
    ("seplos_v3", 9600, 0.7061979166666667),
    ("seplos_v3", 19200, 0.6755989583333333),
    ("seplos_v3", 115200, 0.6500998263888889),
    # JK-PB, 93 bytes, no figure: 930/9600 = 0.096875; 0.596875 * 1.25 = 0.74609375.
    ("jk_pb", 9600, 0.76609375),
    ("jk_pb", 19200, 0.705546875),
    ("jk_pb", 115200, 0.6550911458333333),
    # The ASCII families, 294 bytes, 500 ms: 2940/9600 = 0.30625; 0.80625 * 1.25.
    ("pace_ascii", 9600, 1.0278125),
    ("pace_ascii", 19200, 0.83640625),
    ("pace_ascii", 115200, 0.6769010416666667),
    ("seplos_v2", 9600, 1.0278125),
    ("seplos_v2", 19200, 0.83640625),
    ("seplos_v2", 115200, 0.6769010416666667),
    ("pylontech_rs485", 9600, 1.0278125),
    ("pylontech_rs485", 19200, 0.83640625),
    ("pylontech_rs485", 115200, 0.6769010416666667),
    # A whole Pylontech group at 9600: 41330/9600 = 4.3052083; a one-second
    # timeout could never have waited for it.
    ("pylontech_group", 9600, 6.026510416666667),
    ("pylontech_group", 19200, 3.3357552083333335),  # 2.1526041667 + 0.5
    ("pylontech_group", 115200, 1.0934592013888889),
]


@pytest.mark.parametrize(("read", "baudrate", "expected"), HAND_WORKED)
def test_derived_timeout_matches_the_hand_worked_figure(
    read: str, baudrate: int, expected: float
) -> None:
    request, reply = READS[read]
    family = "pylontech_rs485" if read == "pylontech_group" else read
    timeout = derived_timeout(
        baudrate=baudrate,
        request_bytes=request,
        reply_bytes=reply,
        timing=family_timing(family),
    )
    assert timeout == pytest.approx(expected, rel=1e-9)


def test_the_sizes_come_from_the_requests_themselves() -> None:
    """The transports size replies from the request: check them against the table above."""
    pace = read_request(1, 0x03, 0, 37)
    assert len(pace.pdu) + RTU_OVERHEAD == READS["pace_modbus"][0]
    assert pace.reply_length + RTU_OVERHEAD == READS["pace_modbus"][1]
    # The documents' own request vectors (README: 0x42 to ADR 2, PACE to ADR 1).
    pylontech = b"~20024642E00202FD33\r"
    assert encode_frame(0x20, 2, 0x46, 0x42, b"\x02") == pylontech
    assert (len(pylontech), pylon_reply_bytes(pylontech)) == READS["pylontech_rs485"]
    assert pylon_reply_bytes(b"~25014642E00201FD30\r") == READS["pace_ascii"][1]
    group = encode_frame(0x20, 2, 0x46, 0x42, b"\xff")
    assert pylon_reply_bytes(group) == PYLON_LONGEST == READS["pylontech_group"][1]
    # PACE's presence probe is answered with one INFO byte.
    assert pylon_reply_bytes(encode_frame(0x25, 3, 0x46, 0x90, b"")) == 20


def test_without_a_baud_rate_the_configured_timeout_stands() -> None:
    """A TCP gateway whose serial speed is not known keeps the flat timeout."""
    timing = family_timing("pace_modbus")
    assert derived_timeout(baudrate=None, request_bytes=8, reply_bytes=79, timing=timing) == 1.0
    fast = [0.01] * 10
    assert (
        learned_timeout(fast, baudrate=None, request_bytes=8, reply_bytes=79, timing=timing) == 1.0
    )


def test_a_fast_pack_of_an_undocumented_family_is_given_up_on_sooner() -> None:
    timer = ReplyTimer(baudrate=19200, timing=family_timing("seplos_v3"))
    sizes = {"request_bytes": 8, "reply_bytes": 39}
    before = timer.timeout(0, **sizes)
    for _ in range(MIN_SAMPLES):
        timer.answered(0, wire_time(47, 19200) + 0.03, **sizes)
    after = timer.timeout(0, **sizes)
    # 0.03 s answer time: twice that is below the 0.1 s floor.
    assert after == pytest.approx(wire_time(47, 19200) + 0.1 + 0.02)
    assert after < before / 4
    # An address that never answered borrows what the line has learned.
    assert timer.timeout(5, **sizes) == pytest.approx(after)


def test_a_documented_answer_time_is_always_waited_for() -> None:
    timing = family_timing("pace_modbus")
    timer = ReplyTimer(baudrate=9600, timing=timing)
    sizes = {"request_bytes": 8, "reply_bytes": 79}
    for _ in range(20):
        timer.answered(1, wire_time(87, 9600) + 0.005, **sizes)
    assert timer.timeout(1, **sizes) == pytest.approx(wire_time(87, 9600) + 0.2 + 0.02)


def test_misses_widen_a_learned_timeout_up_to_the_derived_one() -> None:
    timer = ReplyTimer(baudrate=115200, timing=family_timing("jk_pb"))
    sizes = {"request_bytes": 8, "reply_bytes": 85}
    for _ in range(MIN_SAMPLES):
        timer.answered(1, 0.02, **sizes)
    widths = [timer.timeout(1, **sizes)]
    for _ in range(8):
        timer.missed(1, widths[-1], **sizes)
        widths.append(timer.timeout(1, **sizes))
    assert widths == sorted(widths)
    assert widths[-1] > widths[0] * 4
    assert widths[-1] == pytest.approx(
        derived_timeout(baudrate=115200, timing=family_timing("jk_pb"), **sizes)
    )
    # An empty address learns nothing from its silence.
    timer.missed(9, 5.0, **sizes)
    assert timer.latencies(9) == ()


samples = st.lists(
    st.floats(allow_nan=True, allow_infinity=True, min_value=None, max_value=None), max_size=40
)


@given(
    history=samples,
    family=st.sampled_from(sorted(FAMILY_TIMING)),
    baudrate=st.sampled_from([1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 921600]),
    request=st.integers(min_value=1, max_value=300),
    reply=st.integers(min_value=1, max_value=PYLON_LONGEST),
)
def test_a_learned_timeout_never_drops_below_the_longest_replys_wire_time(
    history: list[float], family: str, baudrate: int, request: int, reply: int
) -> None:
    timing = family_timing(family)
    timeout = learned_timeout(
        history, baudrate=baudrate, request_bytes=request, reply_bytes=reply, timing=timing
    )
    wire = wire_time(request + reply, baudrate)
    assert math.isfinite(timeout)
    assert timeout >= wire + (timing.latency if timing.documented else 0.1)
    derived = derived_timeout(
        baudrate=baudrate, request_bytes=request, reply_bytes=reply, timing=timing
    )
    assert timeout <= derived


@given(
    elapsed=samples,
    missed=st.lists(st.floats(min_value=0.0, max_value=1e6), max_size=10),
    baudrate=st.sampled_from([9600, 19200, 115200]),
    reply=st.integers(min_value=5, max_value=PYLON_LONGEST),
)
def test_whatever_a_pack_did_its_timeout_covers_the_wire(
    elapsed: list[float], missed: list[float], baudrate: int, reply: int
) -> None:
    """Replies measured in any order, however odd (a clock step, a reply in no time)."""
    timer = ReplyTimer(baudrate=baudrate, timing=family_timing("jk_pb"))
    for seconds in elapsed:
        timer.answered(1, seconds, request_bytes=8, reply_bytes=reply)
    for seconds in missed:
        timer.missed(1, seconds, request_bytes=8, reply_bytes=reply)
    timeout = timer.timeout(1, request_bytes=8, reply_bytes=reply)
    assert timeout >= wire_time(8 + reply, baudrate) + 0.1


def test_a_scan_for_another_family_keeps_the_pace_gap_on_a_shared_line() -> None:
    """A PACE bank polled on a line where a scan then tries Seplos V3 keeps its 100 ms."""
    transport = ModbusSerialTransport("/dev/ttyUSB9", baudrate=9600, wire_timed=True)
    PaceModbusDriver(transport)
    assert transport.frame_gap == 0.1
    SeplosV3Driver(transport)
    assert transport.frame_gap == 0.1
    assert transport.timer.timing == family_timing("seplos_v3")
    # Without the line's speed nothing is worked out: no gap, the flat timeout.
    gateway = ModbusTcpTransport("192.0.2.1", 502, timeout=1.0, wire_timed=True)
    PaceModbusDriver(gateway)
    assert gateway.frame_gap == 0.0
    assert gateway.timer.timeout(1, request_bytes=8, reply_bytes=79) == 1.0


def test_a_gateway_adds_its_hop_to_the_wire_and_the_family() -> None:
    """PACE at 9600 behind a gateway: 0.38328125 s on a serial port, 50 ms more through TCP.

    Learned from fast replies it never drops below the wire time (0.090625 s)
    plus PACE's 200 ms plus the host's 20 ms plus the gateway's 50 ms.
    """
    sizes = {"request_bytes": 8, "reply_bytes": 79}
    gateway = ModbusRtuTcpTransport("192.0.2.1", 8899, baudrate=9600, wire_timed=True)
    PaceModbusDriver(gateway)
    assert gateway.timer.hop == GATEWAY_HOP == 0.05
    assert gateway.timer.timeout(1, **sizes) == pytest.approx(0.38328125 + 0.05)
    for _ in range(MIN_SAMPLES):
        gateway.timer.answered(1, wire_time(87, 9600) + 0.004, **sizes)
    assert gateway.timer.timeout(1, **sizes) == pytest.approx(0.090625 + 0.2 + 0.02 + 0.05)
    # The same line through a Pylon gateway, and the flat second without a speed.
    ascii_gateway = AsciiTcpTransport("192.0.2.1", 8899, baudrate=115200, wire_timed=True)
    assert ascii_gateway.timer.hop == GATEWAY_HOP
    unknown = AsciiTcpTransport("192.0.2.1", 8899, timeout=1.0, wire_timed=True)
    assert unknown.timer.timeout(2, request_bytes=20, reply_bytes=274) == 1.0
