"""The Modbus client on real wires, fed byte by byte what a hostile line sends.

The line is a loopback TCP port (a transparent RTU gateway, or a Modbus TCP
gateway) or a pseudo-terminal (a USB RS485 adapter), played by the test.
Every frame is written out here by hand; RTU CRCs come from a bitwise
CRC-16 written here too, checked first against the Modbus specification's
own example.
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
import json
from pathlib import Path

import pytest

from custom_components.rack_battery.protocol.errors import BusUnavailable, PackNotResponding
from custom_components.rack_battery.protocol.transport.modbus_rtu import (
    ModbusRtuTcpTransport,
    ModbusSerialTransport,
)
from custom_components.rack_battery.protocol.transport.modbus_tcp import (
    ModbusExceptionError,
    ModbusTcpTransport,
    ModbusTransport,
)

from .scripted_line import ScriptedPty, ScriptedTcpLine

pytestmark = pytest.mark.usefixtures("socket_enabled")

# Generous: a reply that comes is written at once; only silence waits this out.
TIMEOUT = 5.0
SILENCE = 0.3


def crc(data: bytes) -> bytes:
    """CRC-16/Modbus bit by bit (reflected 0xA001, from 0xFFFF), low byte first."""
    value = 0xFFFF
    for byte in data:
        value ^= byte
        for _ in range(8):
            value = (value >> 1) ^ 0xA001 if value & 1 else value >> 1
    return value.to_bytes(2, "little")


def rtu(hex_body: str) -> bytes:
    body = bytes.fromhex(hex_body)
    return body + crc(body)


def test_the_crc_of_the_specification_example() -> None:
    # Read 10 holding registers of unit 1 from 0: CRC 0xCDC5, sent C5 CD.
    assert rtu("01 03 0000 000A") == bytes.fromhex("01 03 0000 000A C5CD")


# Unit 1, read one holding register at 0x0010, and its answer 0x1234.
ASK = rtu("01 03 0010 0001")
ANSWER = rtu("01 03 02 1234")


@dataclass
class Rig:
    transport: ModbusTransport
    line: ScriptedTcpLine | ScriptedPty

    async def ask(self, call: Awaitable[object], *replies: bytes, size: int = 8) -> object:
        """Run ``call``; on its request, write ``replies`` in turn; return what it returned."""
        task = asyncio.ensure_future(call)
        request = await self.line.request(size)
        self.requests.append(request)
        for reply in replies:
            await self.line.send(reply)
        return await task

    def __post_init__(self) -> None:
        self.requests: list[bytes] = []


@pytest.fixture(params=["rtu_tcp", "pty"])
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    """RTU through a transparent gateway, and on a serial port."""
    line: ScriptedTcpLine | ScriptedPty
    transport: ModbusTransport
    if request.param == "pty":
        line = ScriptedPty()
        transport = ModbusSerialTransport(line.name, baudrate=9600, timeout=TIMEOUT)
    else:
        line = await ScriptedTcpLine().start()
        transport = ModbusRtuTcpTransport(line.host, line.port, timeout=TIMEOUT)
    await transport.connect()
    yield Rig(transport, line)
    await transport.close()
    if isinstance(line, ScriptedPty):
        line.close()
    else:
        await line.stop()


def read(rig: Rig, unit: int = 1, address: int = 0x10, count: int = 1) -> Awaitable[list[int]]:
    return rig.transport.read_holding_registers(unit, address, count)


async def test_the_specification_request_and_its_reply(rig: Rig) -> None:
    words = "".join(f"{n:04X}" for n in range(1, 11))
    values = await rig.ask(read(rig, address=0, count=10), rtu("01 03 14" + words))
    assert rig.requests == [bytes.fromhex("01 03 0000 000A C5CD")]
    assert values == list(range(1, 11))
    stats = rig.transport.stats
    assert stats.pack(1).as_dict() == {
        "requests": 1,
        "replies": 1,
        "timeouts": 0,
        "discarded": 0,
        "suspect": 0,
    }
    assert (stats.noise_bytes, stats.stray_frames) == (0, 0)


async def test_a_late_reply_to_an_earlier_request_is_discarded(rig: Rig) -> None:
    rig.transport.timeout = SILENCE
    # Two registers asked, and the pack stays silent past the timeout.
    with pytest.raises(PackNotResponding):
        await rig.ask(read(rig, address=0x20, count=2))
    rig.transport.timeout = TIMEOUT
    # Its reply comes late, after the next request went out, then the right one.
    late = rtu("01 03 04 AAAA BBBB")
    assert await rig.ask(read(rig), late, ANSWER) == [0x1234]
    assert rig.requests == [rtu("01 03 0020 0002"), ASK]
    pack = rig.transport.stats.pack(1)
    assert (pack.requests, pack.replies, pack.timeouts, pack.discarded) == (2, 1, 1, 1)


async def test_an_echo_of_the_request_is_not_its_answer(rig: Rig) -> None:
    # An RS485 adapter that hears itself sends our request straight back.
    assert await rig.ask(read(rig), ASK, ANSWER) == [0x1234]
    assert rig.transport.stats.pack(1).discarded == 1
    assert rig.transport.stats.noise_bytes == 0


async def test_a_frame_for_another_unit_is_discarded(rig: Rig) -> None:
    assert await rig.ask(read(rig), rtu("02 03 02 9999"), ANSWER) == [0x1234]
    assert rig.transport.stats.pack(1).discarded == 1
    assert rig.transport.stats.pack(1).replies == 1


async def test_a_wrong_function_code_is_discarded(rig: Rig) -> None:
    assert await rig.ask(read(rig), rtu("01 04 02 9999"), ANSWER) == [0x1234]
    assert rig.transport.stats.pack(1).discarded == 1


async def test_a_wrong_byte_count_is_discarded(rig: Rig) -> None:
    # One register asked; a reply with two is somebody else's.
    assert await rig.ask(read(rig), rtu("01 03 04 9999 8888"), ANSWER) == [0x1234]
    assert rig.transport.stats.pack(1).discarded == 1


async def test_exception_replies(rig: Rig) -> None:
    with pytest.raises(ModbusExceptionError, match=r"0x02 \(illegal data address\)") as err:
        await rig.ask(read(rig), rtu("01 83 02"))
    assert err.value.code == 0x02
    # A gateway's "target did not answer" is the pack not responding.
    with pytest.raises(PackNotResponding, match="0x0B"):
        await rig.ask(read(rig), rtu("01 83 0B"))
    pack = rig.transport.stats.pack(1)
    assert (pack.requests, pack.replies, pack.timeouts, pack.discarded) == (2, 2, 0, 0)


async def test_noise_before_the_reply_is_dropped_and_counted(rig: Rig) -> None:
    noise = bytes.fromhex("00 FF 5A A5 13 03")
    assert await rig.ask(read(rig), noise + ANSWER) == [0x1234]
    assert rig.transport.stats.noise_bytes == len(noise)
    assert rig.transport.stats.pack(1).discarded == 0


async def test_junk_after_a_frame_is_thrown_away_before_the_next_request(rig: Rig) -> None:
    junk = bytes.fromhex("DE AD BE")
    assert await rig.ask(read(rig), ANSWER + junk) == [0x1234]
    answer = rtu("01 03 02 0042")
    assert await rig.ask(read(rig), answer) == [0x42]
    assert rig.transport.stats.noise_bytes == len(junk)
    assert rig.transport.stats.pack(1).replies == 2


async def test_half_a_frame_then_silence_is_a_timeout(rig: Rig) -> None:
    rig.transport.timeout = SILENCE
    with pytest.raises(PackNotResponding, match="did not answer"):
        await rig.ask(read(rig), ANSWER[:4])
    rig.transport.timeout = TIMEOUT
    stats = rig.transport.stats
    assert stats.pack(1).timeouts == 1
    assert stats.noise_bytes == 4
    # The rest of the cut-off frame never confuses the next transaction.
    assert await rig.ask(read(rig), ANSWER[4:] + rtu("01 03 02 0007")) == [7]
    assert stats.noise_bytes == 4 + len(ANSWER[4:])


async def test_writes_are_accepted_only_with_their_echo(rig: Rig) -> None:
    # 0x10: write 0x0102, 0x0304 from 0x003C; the reply echoes address and count.
    request = rtu("01 10 003C 0002 04 0102 0304")
    wrong = rtu("01 10 003C 0001")
    await rig.ask(
        rig.transport.write_registers(1, 0x3C, [0x0102, 0x0304]),
        request,  # the adapter's echo
        wrong,
        rtu("01 10 003C 0002"),
        size=len(request),
    )
    assert rig.requests == [request]
    assert rig.transport.stats.pack(1).discarded == 2
    # 0x06: the reply is the request itself.
    single = rtu("01 06 003C E100")
    await rig.ask(rig.transport.write_register(1, 0x3C, 0xE100), single)
    assert rig.requests[-1] == single
    assert rig.transport.stats.pack(1).replies == 2


async def test_coils_come_in_whole_bytes(rig: Rig) -> None:
    # Ten coils from 0x1100 of unit 1: two bytes, the last six bits padding.
    bits = await rig.ask(
        rig.transport.read_coils(1, 0x1100, 10), rtu("01 01 03 CD 01 00"), rtu("01 01 02 CD 01")
    )
    assert bits == [True, False, True, True, False, False, True, True, True, False]
    assert rig.transport.stats.pack(1).discarded == 1  # three bytes for ten coils


# Only TCP can be reset or restarted.


@pytest.fixture(params=["rtu_tcp", "modbus_tcp"])
async def tcp(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    line = await ScriptedTcpLine().start()
    kind = ModbusRtuTcpTransport if request.param == "rtu_tcp" else ModbusTcpTransport
    transport = kind(line.host, line.port, timeout=TIMEOUT)
    yield Rig(transport, line)
    await transport.close()
    await line.stop()


def framed(rig: Rig, transaction: int, rtu_frame: bytes) -> bytes:
    """Return an RTU frame as the rig's wire carries it (MBAP on Modbus TCP)."""
    if isinstance(rig.transport, ModbusRtuTcpTransport):
        return rtu_frame
    body = rtu_frame[:-2]
    header = transaction.to_bytes(2, "big") + b"\x00\x00" + len(body).to_bytes(2, "big")
    return header + body


def request_size(rig: Rig) -> int:
    return 8 if isinstance(rig.transport, ModbusRtuTcpTransport) else 12


async def test_a_connection_reset_is_a_bus_down_then_the_next_request_reconnects(
    tcp: Rig,
) -> None:
    size = request_size(tcp)
    task = asyncio.ensure_future(read(tcp))
    await tcp.line.request(size)
    assert isinstance(tcp.line, ScriptedTcpLine)
    tcp.line.reset()
    with pytest.raises(BusUnavailable, match="lost the connection"):
        await task
    assert not tcp.transport.connected
    assert await tcp.ask(read(tcp), framed(tcp, 1, ANSWER), size=size) == [0x1234]
    assert tcp.line.connections == 2


async def test_a_gateway_that_restarts(tcp: Rig) -> None:
    size = request_size(tcp)
    assert isinstance(tcp.line, ScriptedTcpLine)
    assert await tcp.ask(read(tcp), framed(tcp, 1, ANSWER), size=size) == [0x1234]
    await tcp.line.stop()
    # While it is down: the bus is unavailable, and nothing hangs.
    with pytest.raises(BusUnavailable):
        await read(tcp)
    with pytest.raises(BusUnavailable, match="cannot connect"):
        await read(tcp)
    await tcp.line.start()
    answer = framed(tcp, 1, rtu("01 03 02 0055"))
    assert await tcp.ask(read(tcp), answer, size=size) == [0x55]
    assert tcp.line.connections == 2


# Modbus TCP: the transaction id tells a late reply of the same shape apart.


async def test_modbus_tcp_request_and_a_late_reply_of_the_same_shape() -> None:
    line = await ScriptedTcpLine().start()
    transport = ModbusTcpTransport(line.host, line.port, timeout=SILENCE)
    rig = Rig(transport, line)
    try:
        with pytest.raises(PackNotResponding):
            await rig.ask(read(rig), size=12)
        transport.timeout = TIMEOUT
        late = bytes.fromhex("0001 0000 0005 01 03 02 AAAA")
        foreign = bytes.fromhex("0002 0000 0005 02 03 02 BBBB")
        not_modbus = bytes.fromhex("0002 0001 0005 01 03 02 CCCC")
        right = bytes.fromhex("0002 0000 0005 01 03 02 1234")
        assert await rig.ask(read(rig), late, foreign, not_modbus, right, size=12) == [0x1234]
        assert rig.requests == [
            bytes.fromhex("0001 0000 0006 01 03 0010 0001"),
            bytes.fromhex("0002 0000 0006 01 03 0010 0001"),
        ]
        pack = transport.stats.pack(1)
        assert (pack.requests, pack.replies, pack.timeouts, pack.discarded) == (2, 1, 1, 2)
        # A header with protocol id 1 is not Modbus: out of step, dropped as noise.
        assert transport.stats.noise_bytes == len(not_modbus)
        with pytest.raises(PackNotResponding, match="0x0B"):
            await rig.ask(read(rig), bytes.fromhex("0003 0000 0003 01 83 0B"), size=12)
    finally:
        await transport.close()
        await line.stop()


def test_the_integration_needs_no_pymodbus_at_run_time() -> None:
    # Home Assistant's own modbus integration pins its pymodbus; ours must
    # not ask for another, nor import it.
    root = Path(__file__).parents[2] / "custom_components" / "rack_battery"
    manifest = json.loads((root / "manifest.json").read_text())
    assert not [r for r in manifest["requirements"] if r.lower().startswith("pymodbus")]
    assert "pymodbus" not in manifest["loggers"]
    for source in root.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not [n for n in names if n.split(".")[0] == "pymodbus"], source
