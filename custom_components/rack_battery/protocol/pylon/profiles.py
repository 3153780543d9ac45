"""What each vendor means by the same Pylon-framed 0x42 answer.

Pylontech, PACE and Seplos V2 share the framing and the order of the 0x42
fields (flag, command, cells, temperatures, current, voltage, remaining
capacity, a count of "user-defined" items and those items), but each picked
its own units and its own user-defined items. A driver is therefore the
shared framing plus one of these profiles rather than three copies of a
parser.

Only the Pylontech profile is complete and verified against a worked
example; the PACE and Seplos V2 profiles record the units their documents
state, so that their drivers can start from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class UserItem(Enum):
    """One user-defined item after the count, and how wide it is on the wire."""

    FULL_CAPACITY = ("full_capacity", 2)
    FULL_CAPACITY_24 = ("full_capacity", 3)
    REMAINING_CAPACITY_24 = ("remaining_capacity", 3)
    DESIGN_CAPACITY = ("design_capacity", 2)
    CYCLES = ("cycles", 2)
    SOC_PERMILLE = ("soc", 2)
    SOH_PERMILLE = ("soh", 2)
    PORT_VOLTAGE = ("port_voltage", 2)
    RESERVED = ("reserved", 2)

    @property
    def field(self) -> str:
        """Return what the item measures."""
        return self.value[0]

    @property
    def width(self) -> int:
        """Return its size in bytes."""
        return self.value[1]


@dataclass(frozen=True, kw_only=True, slots=True)
class VendorProfile:
    """The units and layout one vendor uses inside the shared framing."""

    name: str
    ver: int  # VER byte this vendor sends and expects
    current_scale: float  # A per count, signed
    voltage_scale: float  # V per count, pack voltage
    capacity_scale: float  # Ah per count
    cell_voltage_scale: float = 0.001  # V per count
    temperature_offset: int = 2731  # 0.1 K counts that mean 0 degC
    # The user-defined items in the order they follow the count. A pack
    # sends the first ``count`` of them; anything past this list is ignored.
    user_items: tuple[UserItem, ...] = ()
    # The fewest user-defined items the vendor's document says a pack sends:
    # a 0x42 reply with fewer is something else (a late 0x44 reply).
    min_user_items: int = 0
    # Which temperature, counted from 0, is the MOSFET's (when sent at all).
    mosfet_temperature_index: int | None = None


PYLONTECH = VendorProfile(
    name="pylontech",
    ver=0x20,
    # The specification's note says "mA", but its own example sends -4000 mA
    # as 0xFFD8 (= -40): one count is 100 mA.
    current_scale=0.1,
    voltage_scale=0.001,
    capacity_scale=0.001,  # mAh
    temperature_offset=2731,
    # Count 2 for packs up to 65 Ah; count 4 for larger ones, which put
    # 0xFFFF in both 16-bit capacity fields and send 24-bit values after.
    user_items=(
        UserItem.FULL_CAPACITY,
        UserItem.CYCLES,
        UserItem.REMAINING_CAPACITY_24,
        UserItem.FULL_CAPACITY_24,
    ),
    min_user_items=2,
    # Board, four cell groups, then the MOSFET on the packs that send six.
    mosfet_temperature_index=5,
)

PACE = VendorProfile(
    name="pace",
    ver=0x25,
    current_scale=0.01,
    voltage_scale=0.001,
    capacity_scale=0.01,  # 10 mAh
    temperature_offset=2730,
    user_items=(UserItem.FULL_CAPACITY, UserItem.CYCLES, UserItem.DESIGN_CAPACITY),
    min_user_items=3,
    # Four cell sensors, MOSFET, environment.
    mosfet_temperature_index=4,
)

SEPLOS_V2 = VendorProfile(
    name="seplos_v2",
    ver=0x20,
    current_scale=0.01,
    voltage_scale=0.01,
    capacity_scale=0.01,
    temperature_offset=2731,
    user_items=(
        UserItem.FULL_CAPACITY,
        UserItem.SOC_PERMILLE,
        UserItem.DESIGN_CAPACITY,
        UserItem.CYCLES,
        UserItem.SOH_PERMILLE,
        UserItem.PORT_VOLTAGE,
        UserItem.RESERVED,
        UserItem.RESERVED,
        UserItem.RESERVED,
        UserItem.RESERVED,
    ),
    min_user_items=10,
    # Four cell sensors, environment, power (MOSFET) board.
    mosfet_temperature_index=5,
)
