"""Encode and decode one Pylon ASCII-hex frame.

On the wire a frame is ``~`` VER ADR CID1 CID2 LENGTH INFO CHKSUM and a
carriage return. Everything between the two markers is a byte written as two
upper-case hex characters, so the line stays printable and a lost or
corrupted byte shows up as a bad character, a length that does not add up
or a checksum that fails.
Pylontech, PACE (VER 0x25) and Seplos V2 all speak this framing; what differs
between them is the meaning of INFO, which lives in :mod:`.profiles` and
:mod:`.analog`, not here.

Every way a frame can be malformed ends as :class:`FrameError` with a message
that names the fault: a corrupted reply is the pack's or the line's problem,
and the layers above only need to know that this one answer is unusable.
"""

from __future__ import annotations

from dataclasses import dataclass
import re
from typing import Final

from ..errors import FrameError, PackNotResponding

SOI: Final = 0x7E  # "~"
EOI: Final = 0x0D  # "\r"
CID1_BATTERY: Final = 0x46

# VER ADR CID1 CID2 (two characters each) and LENGTH (four characters).
_HEADER_CHARS: Final = 12
_CHKSUM_CHARS: Final = 4
# The shortest frame: the markers, the header, no INFO and the checksum.
MIN_FRAME_BYTES: Final = 1 + _HEADER_CHARS + _CHKSUM_CHARS + 1
# LENID has twelve bits: INFO can carry at most 4095 characters.
MAX_INFO_CHARS: Final = 0xFFF
MAX_FRAME_BYTES: Final = MIN_FRAME_BYTES + MAX_INFO_CHARS

_HEX_RUN: Final = re.compile(rb"[0-9A-F]*+")

RTN_OK: Final = 0x00
RTN_VER_ERROR: Final = 0x01
RTN_CHKSUM_ERROR: Final = 0x02
RTN_LCHKSUM_ERROR: Final = 0x03
RTN_CID2_INVALID: Final = 0x04
RTN_FORMAT_ERROR: Final = 0x05
RTN_INVALID_DATA: Final = 0x06
RTN_ADR_ERROR: Final = 0x90
RTN_COMMUNICATION_ERROR: Final = 0x91

RETURN_CODES: Final[dict[int, str]] = {
    RTN_OK: "normal",
    RTN_VER_ERROR: "VER error",
    RTN_CHKSUM_ERROR: "CHKSUM error",
    RTN_LCHKSUM_ERROR: "LCHKSUM error",
    RTN_CID2_INVALID: "CID2 invalid",
    RTN_FORMAT_ERROR: "command format error",
    RTN_INVALID_DATA: "invalid data",
    RTN_ADR_ERROR: "ADR error",
    RTN_COMMUNICATION_ERROR: "internal communication error",
}


class ReturnCodeError(FrameError):
    """The BMS answered, but refused the request with a return code.

    The frame itself was sound, so this is a ``FrameError`` only in the sense
    that the answer carries no data; ``code`` says which refusal it was, so a
    caller can, for instance, treat "CID2 invalid" from an older firmware as
    "this command is not supported" rather than as a fault.
    """

    def __init__(self, code: int, message: str) -> None:
        """Keep the return code next to the message."""
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame, with INFO already turned from hex characters into bytes.

    In a request CID2 is the command; in a reply the same position carries
    the return code (RTN), which :func:`check_return_code` interprets.
    """

    ver: int
    adr: int
    cid1: int
    cid2: int
    info: bytes = b""

    def encode(self) -> bytes:
        """Return the frame as it goes on the wire."""
        return encode_frame(self.ver, self.adr, self.cid1, self.cid2, self.info)


def length_field(lenid: int) -> int:
    """Return the 16-bit LENGTH field for an INFO of ``lenid`` characters.

    The top nibble, LCHKSUM, is the two's complement of the sum of the three
    LENID nibbles, so that all four nibbles add up to 0 modulo 16.
    """
    if not 0 <= lenid <= MAX_INFO_CHARS:
        raise ValueError(f"INFO of {lenid} characters does not fit LENID's 12 bits")
    nibble_sum = (lenid >> 8) + ((lenid >> 4) & 0xF) + (lenid & 0xF)
    lchksum = -nibble_sum & 0xF
    return (lchksum << 12) | lenid


def checksum(body: bytes) -> int:
    """Return CHKSUM for the characters between ``~`` and the checksum.

    It is the two's complement of the sum of their ASCII codes, modulo 65536.
    """
    return -sum(body) & 0xFFFF


def encode_frame(ver: int, adr: int, cid1: int, cid2: int, info: bytes = b"") -> bytes:
    """Return a request or reply as it goes on the wire.

    Raises ValueError for values that cannot be framed at all (a field that
    is not one byte, INFO longer than LENID can count); that is a bug in the
    caller, not a fault on the line.
    """
    for name, value in (("VER", ver), ("ADR", adr), ("CID1", cid1), ("CID2", cid2)):
        if not 0 <= value <= 0xFF:
            raise ValueError(f"{name} {value} is not one byte")
    info_hex = info.hex().upper()
    length = length_field(len(info_hex))
    body = f"{ver:02X}{adr:02X}{cid1:02X}{cid2:02X}{length:04X}{info_hex}".encode("ascii")
    return b"~" + body + f"{checksum(body):04X}".encode("ascii") + b"\r"


def decode_frame(data: bytes) -> Frame:
    """Return the frame in ``data``, which must hold exactly one frame.

    Raises FrameError naming the fault for anything else: missing markers, a
    length that is odd or too short, characters that are not upper-case hex,
    a LENGTH whose own checksum fails, a LENID that disagrees with the INFO
    that arrived, or a CHKSUM that does not match.
    """
    if len(data) < MIN_FRAME_BYTES:
        raise FrameError(f"frame too short: {len(data)} bytes, at least {MIN_FRAME_BYTES} needed")
    if data[0] != SOI:
        raise FrameError(f"frame does not start with '~' (got 0x{data[0]:02X})")
    if data[-1] != EOI:
        raise FrameError(f"frame does not end with carriage return (got 0x{data[-1]:02X})")
    body = data[1:-1]
    if len(body) % 2:
        raise FrameError(f"odd number of characters between the markers ({len(body)})")
    hex_run = _HEX_RUN.match(body)
    if hex_run is not None and hex_run.end() < len(body):
        position = hex_run.end()
        raise FrameError(
            f"byte 0x{body[position]:02X} at position {position + 1} is not upper-case hex"
        )

    payload, chksum_text = body[:-_CHKSUM_CHARS], body[-_CHKSUM_CHARS:]
    length = int(payload[8:12], 16)
    lenid = length & 0xFFF
    if length_field(lenid) != length:
        raise FrameError(
            f"LENGTH {length:04X} fails its LCHKSUM nibble (expected {length_field(lenid):04X})"
        )
    info_text = payload[_HEADER_CHARS:]
    if lenid != len(info_text):
        raise FrameError(f"LENID says {lenid} INFO characters, frame carries {len(info_text)}")
    received = int(chksum_text, 16)
    expected = checksum(payload)
    if received != expected:
        raise FrameError(
            f"CHKSUM {received:04X} does not match the frame (expected {expected:04X})"
        )

    return Frame(
        ver=int(payload[0:2], 16),
        adr=int(payload[2:4], 16),
        cid1=int(payload[4:6], 16),
        cid2=int(payload[6:8], 16),
        info=bytes.fromhex(info_text.decode("ascii")),
    )


def check_return_code(frame: Frame) -> None:
    """Raise unless a reply's return code (CID2 position) says "normal".

    0x90 (ADR error) and 0x91 (the master could not reach that slave over the
    internal link) mean one pack is not answering while the bus works:
    PackNotResponding. Every other code is a refusal of this request:
    ReturnCodeError, a FrameError that names the code.
    """
    code = frame.cid2
    if code == RTN_OK:
        return
    name = RETURN_CODES.get(code, "unknown return code")
    message = f"pack at ADR {frame.adr} answered RTN 0x{code:02X} ({name})"
    if code in (RTN_ADR_ERROR, RTN_COMMUNICATION_ERROR):
        raise PackNotResponding(message)
    raise ReturnCodeError(code, message)
