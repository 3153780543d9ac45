"""Turn the INFO of a 0x42 ("analog values, fixed point") reply into a reading.

The layout, in order: a flag byte, the command byte (the pack's address,
echoed), the number of cells M and M cell voltages, the number of
temperatures N and N temperatures, current, pack voltage, remaining
capacity, a count P of user-defined items and those items. The vendor
profile says what one count of each field is worth and what the items are.

A BMS marks a value it does not measure with a sentinel (all ones, or the
most negative number); those become ``None`` so they never reach a graph.
A reply whose counts run past the end of INFO is corrupt and raises
FrameError: the checksum can only vouch that the bytes arrived as sent, not
that the firmware sent a consistent answer.
"""

from __future__ import annotations

from collections.abc import Collection

from ...bank.model import PackReading
from ..errors import FrameError
from .profiles import PYLONTECH, UserItem, VendorProfile

_UNSET_16 = 0xFFFF
_UNSET_24 = 0xFFFFFF
_MIN_S16 = 0x8000  # the most negative 16-bit number, another "not measured"


class InfoReader:
    """Read fixed-width big-endian fields from INFO, naming what ran short."""

    def __init__(self, info: bytes, what: str) -> None:
        """Start at the first byte of ``info``, a reply to ``what``."""
        self._info = info
        self._what = what
        self.position = 0

    @property
    def remaining(self) -> int:
        """Return how many bytes are left."""
        return len(self._info) - self.position

    def take(self, width: int, name: str) -> bytes:
        """Return the next ``width`` bytes, or raise FrameError if INFO ends first."""
        end = self.position + width
        if end > len(self._info):
            raise FrameError(
                f"{self._what} INFO ends inside {name}: needs bytes {self.position}..{end - 1}, "
                f"has {len(self._info)}"
            )
        chunk = self._info[self.position : end]
        self.position = end
        return chunk

    def unsigned(self, width: int, name: str) -> int:
        """Return the next unsigned big-endian number of ``width`` bytes."""
        return int.from_bytes(self.take(width, name), "big")


type Commands = int | Collection[int] | None


def check_command(command: int, expect: Commands, what: str) -> None:
    """Raise FrameError unless a reply's command byte is one the request allows.

    ``expect`` is the byte the request carried, or the bytes a vendor answers
    it with (Seplos V2 at ADR 0 answers with command group 0x01), or None
    when anything goes.
    """
    if expect is None:
        return
    allowed = (expect,) if isinstance(expect, int) else expect
    if command not in allowed:
        asked = "/".join(f"0x{each:02X}" for each in sorted(allowed))
        raise FrameError(f"{what} reply is for command 0x{command:02X}, asked {asked}")


def _signed16(raw: int) -> int:
    return raw - 0x10000 if raw & 0x8000 else raw


def _temperature(raw: int, profile: VendorProfile) -> float | None:
    # Kelvin is never negative, so the sign bit only ever marks a sentinel.
    if raw in (_UNSET_16, _MIN_S16):
        return None
    return round((raw - profile.temperature_offset) / 10.0, 1)


def _cell_voltage(raw: int, profile: VendorProfile) -> float | None:
    if raw in (_UNSET_16, _MIN_S16):
        return None
    return round(_signed16(raw) * profile.cell_voltage_scale, 3)


def _capacity(raw: int, unset: int, profile: VendorProfile) -> float | None:
    if raw == unset:
        return None
    return round(raw * profile.capacity_scale, 3)


def decode_analog(
    info: bytes,
    *,
    address: int,
    profile: VendorProfile = PYLONTECH,
    expect_command: Commands = None,
) -> PackReading:
    """Return the reading in a 0x42 reply's INFO, for the pack at ``address``.

    ``expect_command`` is the command byte the request carried (on Pylontech,
    the pack's own address); a reply that echoes another one answers someone
    else's question and raises FrameError.
    """
    reader = InfoReader(info, "0x42")
    reader.unsigned(1, "the flag byte")
    check_command(reader.unsigned(1, "the command byte"), expect_command, "0x42")
    return analog_block(reader, address=address, profile=profile)


def check_analog_shape(info: bytes, profile: VendorProfile) -> None:
    """Raise FrameError unless ``info`` is shaped as one pack's 0x42 answer in this dialect.

    The checksum vouches for the bytes, not for which question they answer:
    a 0x44 reply to the same pack carries the same address, return code and
    command byte, and its status bytes can be read as cells and
    temperatures that add up. What tells them apart is the shape: the
    vendor sends at least as many user-defined items as its document lists
    (Pylontech 2, PACE 3, Seplos 10), and, where they are all items the
    profile knows, nothing after them.
    """
    reader = InfoReader(info, "0x42")
    reader.take(2, "the flag and command bytes")
    reader.take(2 * reader.unsigned(1, "the cell count"), "the cell voltages")
    reader.take(2 * reader.unsigned(1, "the temperature count"), "the temperatures")
    reader.take(6, "the current, voltage and remaining capacity")
    count = reader.unsigned(1, "the user-defined item count")
    if count < profile.min_user_items:
        raise FrameError(
            f"0x42 reply has {count} user-defined items, {profile.name} sends at least "
            f"{profile.min_user_items}: not an answer to 0x42"
        )
    for item in profile.user_items[:count]:
        reader.take(item.width, f"user-defined item {item.field}")
    if count <= len(profile.user_items) and reader.remaining:
        raise FrameError(
            f"0x42 reply runs {reader.remaining} bytes past its last user-defined item"
        )


def is_analog_shaped(info: bytes, profile: VendorProfile) -> bool:
    """Return whether ``info`` would pass as a 0x42 answer (a late one, when 0x42 was not asked)."""
    try:
        check_analog_shape(info, profile)
    except FrameError:
        return False
    return True


def decode_bank_analog(
    info: bytes, *, first_address: int, profile: VendorProfile = PYLONTECH
) -> list[PackReading]:
    """Return every pack's reading from the master's 0x42 reply to INFO = 0xFF.

    Where a single pack's reply has its command byte, this one has the
    number of packs, then one block per pack with no address of its own:
    the blocks are the master and its slaves in address order, so the
    n-th block is taken to be the pack at ``first_address + n``.

    The blocks carry no address to check, so their shape is: each has at
    least the user-defined items the vendor sends, and nothing follows the
    last. Another reply read as this one (a group 0x44 answer) fails there.
    """
    reader = InfoReader(info, "0x42 bank")
    reader.unsigned(1, "the flag byte")
    count = reader.unsigned(1, "the pack count")
    readings = [
        analog_block(reader, address=first_address + index, profile=profile, more_blocks=True)
        for index in range(count)
    ]
    if reader.remaining:
        raise FrameError(f"0x42 bank reply runs {reader.remaining} bytes past its {count} packs")
    return readings


def _check_block_items(item_count: int, profile: VendorProfile) -> None:
    """Raise FrameError unless a group reply's block has a count of items it can have.

    Items past the profile's list have no known width: in a single pack's
    reply they are skipped with the rest of INFO rather than guessed at,
    but in a group reply another pack's block follows, and where it starts
    can no longer be known. Fewer items than the vendor sends is no 0x42
    block at all.
    """
    if item_count > len(profile.user_items):
        raise FrameError(
            f"{item_count} user-defined items, {len(profile.user_items)} known: "
            "the next pack's block cannot be found"
        )
    if item_count < profile.min_user_items:
        raise FrameError(
            f"a block with {item_count} user-defined items, {profile.name} sends at least "
            f"{profile.min_user_items}: not a 0x42 bank reply"
        )


def analog_block(
    reader: InfoReader, *, address: int, profile: VendorProfile, more_blocks: bool = False
) -> PackReading:
    """Read one pack's values, from its cell count to its last user-defined item."""
    cell_count = reader.unsigned(1, "the cell count")
    cells = tuple(
        _cell_voltage(reader.unsigned(2, f"cell {index + 1} voltage"), profile)
        for index in range(cell_count)
    )
    temperature_count = reader.unsigned(1, "the temperature count")
    temperatures = [
        _temperature(reader.unsigned(2, f"temperature {index + 1}"), profile)
        for index in range(temperature_count)
    ]

    raw_current = reader.unsigned(2, "the current")
    current = (
        None
        if raw_current == _MIN_S16
        else round(_signed16(raw_current) * profile.current_scale, 3)
    )
    raw_voltage = reader.unsigned(2, "the pack voltage")
    voltage = None if raw_voltage == _UNSET_16 else round(raw_voltage * profile.voltage_scale, 3)
    remaining = _capacity(reader.unsigned(2, "the remaining capacity"), _UNSET_16, profile)

    full: float | None = None
    design: float | None = None
    cycles: int | None = None
    soc: float | None = None
    soh: float | None = None
    item_count = reader.unsigned(1, "the user-defined item count")
    if more_blocks:
        _check_block_items(item_count, profile)
    for item in profile.user_items[:item_count]:
        raw = reader.unsigned(item.width, f"user-defined item {item.field}")
        unset = _UNSET_24 if item.width == 3 else _UNSET_16
        if item in (UserItem.FULL_CAPACITY, UserItem.FULL_CAPACITY_24):
            # A larger pack puts 0xFFFF in the 16-bit field and sends the
            # real value in a 24-bit one later: keep whichever is known,
            # the wider one winning.
            if raw != unset:
                full = _capacity(raw, unset, profile)
        elif item is UserItem.REMAINING_CAPACITY_24:
            if raw != unset:
                remaining = _capacity(raw, unset, profile)
        elif item is UserItem.DESIGN_CAPACITY:
            design = _capacity(raw, unset, profile)
        elif item is UserItem.CYCLES:
            cycles = None if raw == unset else raw
        elif item is UserItem.SOC_PERMILLE:
            soc = None if raw == unset else raw / 10.0
        elif item is UserItem.SOH_PERMILLE:
            soh = None if raw == unset else raw / 10.0

    if soc is None and remaining is not None and full:
        # Pylontech sends no state of charge: derive it, and keep a glitch
        # where remaining briefly exceeds full from claiming over 100 %.
        soc = round(min(max(100.0 * remaining / full, 0.0), 100.0), 1)

    mosfet: float | None = None
    index = profile.mosfet_temperature_index
    if index is not None and index < len(temperatures):
        mosfet = temperatures.pop(index)

    return PackReading(
        address=address,
        voltage=voltage,
        current=current,
        soc=soc,
        soh=soh,
        remaining_capacity=remaining,
        full_capacity=full,
        design_capacity=design,
        cycles=cycles,
        cell_voltages=cells,
        temperatures=tuple(temperatures),
        mosfet_temperature=mosfet,
    )
