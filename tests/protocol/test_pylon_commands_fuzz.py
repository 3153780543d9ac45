"""Whatever INFO arrives, the newer Pylon decoders raise FrameError or succeed.

A confused firmware sends counts that run past the end of INFO, a bank
reply with more packs than bytes, and lengths nobody documented; anything
but FrameError would escape the driver's handling and end the whole poll.
"""

from __future__ import annotations

from collections.abc import Callable
import contextlib

from hypothesis import given, strategies as st

from custom_components.rack_battery.protocol.errors import FrameError
from custom_components.rack_battery.protocol.pylon.alarms import (
    decode_pace_alarms,
    decode_pylontech_alarms,
    decode_pylontech_bank_alarms,
    decode_seplos_alarms,
)
from custom_components.rack_battery.protocol.pylon.analog import decode_bank_analog
from custom_components.rack_battery.protocol.pylon.management import (
    decode_charge_management,
    decode_firmware,
    decode_system_parameters,
)
from custom_components.rack_battery.protocol.pylon.profiles import PACE, PYLONTECH, SEPLOS_V2

from .test_pylon_commands_decode import (
    BANK_ANALOG,
    CHARGE_MANAGEMENT,
    PACE_ALARMS,
    PYLONTECH_ALARMS,
    SEPLOS_ALARMS,
    SYSTEM_PARAMETERS,
)

DECODERS: dict[str, tuple[Callable[[bytes], object], bytes]] = {
    "pylontech 0x44": (
        lambda info: decode_pylontech_alarms(info, expect_command=3),
        PYLONTECH_ALARMS,
    ),
    "pylontech 0x44 bank": (decode_pylontech_bank_alarms, PYLONTECH_ALARMS),
    "pace 0x44": (lambda info: decode_pace_alarms(info, expect_command=1), PACE_ALARMS),
    "seplos 0x44": (lambda info: decode_seplos_alarms(info, expect_command=5), SEPLOS_ALARMS),
    "0x47": (lambda info: decode_system_parameters(info, profile=PACE), SYSTEM_PARAMETERS),
    "0x92": (lambda info: decode_charge_management(info, expect_command=2), CHARGE_MANAGEMENT),
    "0x96": (decode_firmware, bytes.fromhex("0201050203 04".replace(" ", ""))),
    "0x42 bank pylontech": (
        lambda info: decode_bank_analog(info, first_address=2, profile=PYLONTECH),
        BANK_ANALOG,
    ),
    "0x42 bank seplos": (
        lambda info: decode_bank_analog(info, first_address=0, profile=SEPLOS_V2),
        BANK_ANALOG,
    ),
}
names = st.sampled_from(sorted(DECODERS))


def _run(name: str, info: bytes) -> None:
    decode, _ = DECODERS[name]
    with contextlib.suppress(FrameError):
        decode(info)


@given(names, st.binary(max_size=400))
def test_arbitrary_info(name: str, info: bytes) -> None:
    _run(name, info)


@given(names, st.data())
def test_truncated_known_info(name: str, data: st.DataObject) -> None:
    _, known = DECODERS[name]
    _run(name, known[: data.draw(st.integers(0, len(known)))])


@given(names, st.data())
def test_one_byte_changed_in_known_info(name: str, data: st.DataObject) -> None:
    # A count byte turned into 0xFF or 0x00 moves every field after it.
    _, known = DECODERS[name]
    index = data.draw(st.integers(0, len(known) - 1))
    value = data.draw(st.integers(0, 0xFF))
    _run(name, known[:index] + bytes((value,)) + known[index + 1 :])
