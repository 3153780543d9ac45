"""Figures for the stream framers of the Pylon ASCII wire and socketcand.

For each framer: how many inputs were tried, random and mutated from valid
frames; the worst cost per KB of framing and decoding any of them (the
framer's step, then the codec on each candidate); and the CPU time that
64 KB of random noise costs. Reported only: nothing here asserts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
import contextlib
import random
import time

from custom_components.rack_battery.protocol.errors import FrameError
from custom_components.rack_battery.protocol.linkstats import LinkStats
from custom_components.rack_battery.protocol.pylon.frame import decode_frame, encode_frame
from custom_components.rack_battery.protocol.transport.ascii_stream import AsciiFramer
from custom_components.rack_battery.protocol.transport.ascii_tcp import AsciiTcpTransport
from custom_components.rack_battery.protocol.transport.can import (
    SOCKETCAND_LONGEST,
    parse_socketcand_frame,
)
from custom_components.rack_battery.protocol.transport.framing import DelimitedFramer
from simulator import seplos_v2
from simulator.bank import make_bank

SIXTY_FOUR_KB = 64 * 1024
READ = 4096  # what one read hands the framer
INPUTS = 300  # of each kind


def _figure(label: str, value: float, unit: str) -> None:
    print(f"{label:52s} {value:10.2f} {unit}")


def _pylon_step(data: bytes) -> None:
    framer = AsciiFramer(LinkStats())
    for start in range(0, len(data), READ):
        for frame in framer.feed(data[start : start + READ]):
            with contextlib.suppress(FrameError):
                decode_frame(frame)


def _socketcand_framer() -> DelimitedFramer:
    return DelimitedFramer(
        LinkStats(),
        start=b"<",
        body=rb"\x20-\x3b\x3d\x3f-\x7e",
        end=b">",
        longest=SOCKETCAND_LONGEST,
    )


def _socketcand_step(data: bytes) -> None:
    framer = _socketcand_framer()
    for start in range(0, len(data), READ):
        for token in framer.feed(data[start : start + READ]):
            parse_socketcand_frame(token)


def _mutate(rng: random.Random, stream: bytes, alphabet: bytes) -> bytes:
    mutated = bytearray(stream)
    for _ in range(rng.randint(1, 12)):
        index = rng.randrange(len(mutated) + 1)
        action = rng.choice(("replace", "insert", "delete", "repeat", "noise"))
        if action == "replace" and index < len(mutated):
            mutated[index] = rng.choice(alphabet)
        elif action == "insert":
            mutated.insert(index, rng.choice(alphabet))
        elif action == "delete" and index < len(mutated):
            del mutated[index]
        elif action == "repeat":
            mutated[index:index] = mutated[index : index + 300] * rng.randint(1, 100)
        else:
            mutated[index:index] = rng.randbytes(rng.randint(1, 8192))
    return bytes(mutated[:SIXTY_FOUR_KB])


def _worst_per_kb(step: Callable[[bytes], None], inputs: Sequence[bytes]) -> float:
    # Each input's cost is the best of three runs, so that another process
    # taking the core for a moment is not reported as the framer's cost.
    worst = 0.0
    for data in inputs:
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            step(data)
            runs.append(time.perf_counter() - start)
        worst = max(worst, min(runs) * 1e6 / (len(data) / 1024))
    return worst


def _cpu_ms(step: Callable[[bytes], None], data: bytes, rounds: int = 20) -> float:
    samples = []
    for _ in range(rounds):
        start = time.process_time()
        step(data)
        samples.append(time.process_time() - start)
    return sorted(samples)[len(samples) // 2] * 1e3


def _report(
    name: str, step: Callable[[bytes], None], valid: Sequence[bytes], alphabet: bytes
) -> None:
    rng = random.Random(11)
    # At least a KB each: a cost per KB of a few bytes measures the call.
    random_inputs = [rng.randbytes(rng.randint(1024, SIXTY_FOUR_KB)) for _ in range(INPUTS)]
    mutated_inputs = [
        _mutate(rng, b"".join(rng.choices(valid, k=rng.randint(10, 400))), alphabet)
        for _ in range(INPUTS)
    ]
    # A start marker on every byte, and a body run without an end: the
    # inputs that cost a framer that rescans the most.
    marker = valid[0][:1]
    hostile = [
        (marker * SIXTY_FOUR_KB),
        (marker + valid[0][1:-1] * SIXTY_FOUR_KB)[:SIXTY_FOUR_KB],
        (valid[0][:-1] * SIXTY_FOUR_KB)[:SIXTY_FOUR_KB],
    ]
    tried = len(random_inputs) + len(mutated_inputs) + len(hostile)
    _figure(f"{name}: inputs tried (random, mutated, hostile)", tried, "inputs")
    _figure(
        f"{name}: worst framing + decoding, random", _worst_per_kb(step, random_inputs), "us/KB"
    )
    _figure(
        f"{name}: worst framing + decoding, mutated", _worst_per_kb(step, mutated_inputs), "us/KB"
    )
    _figure(f"{name}: worst framing + decoding, hostile", _worst_per_kb(step, hostile), "us/KB")
    noise = random.Random(3).randbytes(SIXTY_FOUR_KB)
    _figure(f"{name}: CPU time of 64 KB of random noise", _cpu_ms(step, noise), "ms")
    # The longest one read keeps the loop: the worst over all reads of a
    # sweep, the best of three sweeps (so a preempted read is not counted).
    sweeps = []
    for _ in range(3):
        worst_read = 0.0
        for data in [*hostile, noise, *mutated_inputs[:20]]:
            framer = AsciiFramer(LinkStats()) if marker == b"~" else _socketcand_framer()
            for start in range(0, len(data), READ):
                began = time.perf_counter()
                framer.feed(data[start : start + READ])
                worst_read = max(worst_read, time.perf_counter() - began)
        sweeps.append(worst_read)
    _figure(f"{name}: longest single {READ} B read", min(sweeps) * 1e3, "ms")


def _framers() -> None:
    bank = make_bank(4, first_address=0)
    pylon = [
        encode_frame(0x20, pack.address, 0x46, 0, builder(pack))
        for pack in bank.packs
        for builder in (seplos_v2.analog_info, seplos_v2.alarm_info)
    ]
    _report("pylon ascii", _pylon_step, pylon, b"0123456789ABCDEF~\r\x00G")
    socketcand = [
        b"< frame 356 1700000000.000000 1E14000064000000 >",
        b"< frame 355 1700000000.000100 5A006400 >",
        b"< frame 35E 1700000000.000200 50594C4F4E202020 >",
    ]
    _report("socketcand", _socketcand_step, socketcand, b"<> frame0123456789ABCDEF.z")


async def _noisy_transaction() -> None:
    """CPU of whole transactions over loopback, each reply behind 64 KB of noise."""
    noise = random.Random(3).randbytes(SIXTY_FOUR_KB)
    reply = encode_frame(0x20, 2, 0x46, 0x91)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await reader.readuntil(b"\r")
                writer.write(noise + reply)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    transport = AsciiTcpTransport("127.0.0.1", port, timeout=5.0)
    request = encode_frame(0x20, 2, 0x46, 0x42, b"\x02")
    await transport.transact(request)  # connected, and warm
    rounds = 50
    start = time.process_time()
    for _ in range(rounds):
        await transport.transact(request)
    cpu = (time.process_time() - start) / rounds
    await transport.close()
    server.close()
    await server.wait_closed()
    _figure("pylon ascii tcp: transaction behind 64 KB of noise", cpu * 1e3, "ms CPU")


def framers() -> None:
    """Print the framers' figures, and a noisy transaction's over loopback."""
    _framers()
    asyncio.run(_noisy_transaction())


if __name__ == "__main__":
    framers()
