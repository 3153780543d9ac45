"""Serve a simulated bank as PACE Modbus V1.3 packs on an RS485 line.

``pace_modbus.py`` plays the packs behind a protocol-converting gateway
(Modbus TCP). Most PACE banks are wired differently: a
USB RS485 adapter on the packs' own line, or a transparent gateway that
forwards the raw RTU frames. On such a line an address with no pack behind
it is silence, not a gateway's exception, which is what a scan of a real
line has to sit through. So the same register image (``encode_pack``) is
served here through :class:`~simulator.modbus_line.ModbusLine`, which does
the RTU framing, the pseudo-terminal and the TCP ways in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .bank import SimBank
from .modbus_line import ModbusLine
from .pace_modbus import MAX_READ, READ_HOLDING, encode_pack
from .paced import answer_time

ILLEGAL_FUNCTION: Final = 0x01
ILLEGAL_ADDRESS: Final = 0x02
ILLEGAL_VALUE: Final = 0x03


class PaceModbusPacks:
    """What each PACE pack on the line holds, encoded from the bank when asked."""

    def __init__(self, bank: SimBank) -> None:
        """Serve ``bank``; a pack's address is its Modbus unit number."""
        self.bank = bank

    def read(
        self, unit: int, function: int, address: int, count: int
    ) -> list[int] | list[bool] | int | None:
        """Answer a read, as the pack at ``unit`` would (None: nobody there)."""
        if (pack := self.bank.answering(unit)) is None:
            return None
        if function != READ_HOLDING:
            # The BMS reads with 0x03 only (and writes with 0x10, not served here).
            return ILLEGAL_FUNCTION
        if count > MAX_READ:
            return ILLEGAL_VALUE
        image = encode_pack(pack)
        if address + count > len(image):
            return ILLEGAL_ADDRESS
        return image[address : address + count]


def make_line(bank: SimBank) -> ModbusLine:
    """Return the RS485 line of a PACE bank (open it as a pty, or serve it over TCP)."""
    return ModbusLine(PaceModbusPacks(bank))


def open_paced_pty(line: ModbusLine, baudrate: int = 9600) -> str:
    """Open a PACE line on a pty at ``baudrate``, each pack taking its answer time."""
    return line.open_pty(baudrate=baudrate, answer_time=answer_time("pace_modbus"))


async def serve_paced_gateway(line: ModbusLine, baudrate: int = 9600) -> tuple[str, int]:
    """Serve a PACE line as raw RTU over TCP, the line behind it at ``baudrate``."""
    return await line.serve_rtu_tcp(baudrate=baudrate, answer_time=answer_time("pace_modbus"))


@dataclass
class PacePty:
    """A PACE line on a pseudo-terminal; a driver opens ``path`` as its serial port."""

    line: ModbusLine
    path: str

    async def stop(self) -> None:
        """Stop answering and close the pair."""
        await self.line.stop()


async def start_pty(bank: SimBank, *, baudrate: int | None = None) -> PacePty:
    """Serve ``bank`` as PACE Modbus on a pseudo-terminal; unpaced without ``baudrate``."""
    line = make_line(bank)
    return PacePty(line, line.open_pty(baudrate=baudrate, answer_time=answer_time("pace_modbus")))
