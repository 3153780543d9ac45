"""SunSpec discovery and model 802 on register blocks built by hand.

The layout is SunSpec's model 802 (battery base): 62 registers after the
[ID][L] header; the offsets used below are written out next to each value.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, strategies as st
import pytest

from custom_components.rack_battery.protocol.drivers.sunspec import (
    ReadRegisters,
    decode_battery_base,
    find_base,
    int16,
    read_battery,
    scale_factor,
    uint16,
    walk_models,
)
from custom_components.rack_battery.protocol.errors import FrameError


def battery_base() -> list[int]:
    """A 48 V LiFePO4 bank: 200 Ah, 62.5 % charged, discharging 12.3 A."""
    body = [0xFFFF] * 62  # every point unimplemented to start with
    body[0] = 200  # AHRtg 200 x 10^0 Ah
    body[9] = 625  # SoC 625 x 10^-1 = 62.5 %
    body[11] = 98  # SoH 98 x 10^0 %
    body[12], body[13] = 0x0001, 0x0002  # NCyc 0x0001_0002 = 65538 cycles
    body[20] = 3  # State CONNECTED
    # Evt1 = bit 2 (OVER_TEMP_WARNING) + bit 7 (OVER_DISCHARGE_CURRENT_ALARM)
    # = 0x0000_0084, high word first.
    body[24], body[25] = 0x0000, 0x0084
    body[32] = 5321  # V 5321 x 10^-2 = 53.21 V
    body[35] = 3342  # CellVMax 3342 x 10^-3 = 3.342 V
    body[38] = 3301  # CellVMin 3.301 V
    # A = 123 x 10^-1 = 12.3 A leaving the battery (SunSpec counts discharge
    # positive), which a reading shows as -12.3 A.
    body[42] = 123
    body[43] = 100  # AChaMax 100 A
    body[44] = 200  # ADisChaMax 200 A
    body[50] = 0  # AHRtg_SF
    body[54] = 0xFFFF  # SoC_SF = -1
    body[56] = 0  # SoH_SF
    body[57] = 0xFFFE  # V_SF = -2
    body[58] = 0xFFFD  # CellV_SF = -3
    body[59] = 0xFFFF  # A_SF = -1
    body[60] = 0  # AMax_SF
    return body


def device_map(base: int, models: Sequence[tuple[int, list[int]]]) -> dict[int, int]:
    """Lay out "SunS", the model blocks and the end marker from ``base``."""
    registers = [0x5375, 0x6E53]
    for model_id, body in models:
        registers += [model_id, len(body), *body]
    registers += [0xFFFF, 0]
    return {base + offset: value for offset, value in enumerate(registers)}


def reader(image: dict[int, int]) -> ReadRegisters:
    async def read(address: int, count: int) -> list[int]:
        if address not in image:
            raise FrameError(f"Modbus exception 0x02 at {address}")
        return [image.get(address + offset, 0) for offset in range(count)]

    return read


def test_battery_base_decodes_with_its_scale_factors() -> None:
    reading = decode_battery_base(1, battery_base())
    assert reading.voltage == 53.21
    assert reading.current == -12.3
    assert reading.soc == 62.5
    assert reading.soh == 98
    assert reading.cycles == 65538
    assert reading.design_capacity == 200
    assert reading.cell_voltages == (3.301, 3.342)
    assert reading.charge_current_limit == 100
    assert reading.discharge_current_limit == 200
    assert reading.charge_enabled is True
    assert reading.warnings == {"charge_overtemperature"}
    assert reading.protections == {"discharge_overcurrent"}


def test_current_into_the_battery_reads_as_charging() -> None:
    body = battery_base()
    body[42] = 0xFF85  # A = 0xFF85 - 0x10000 = -123 x 10^-1 = -12.3 A: into the battery
    assert decode_battery_base(1, body).current == 12.3


def test_unimplemented_points_are_unknown() -> None:
    body = battery_base()
    body[32] = 0xFFFF  # V unimplemented (uint16)
    body[42] = 0x8000  # A unimplemented (int16)
    body[54] = 0x8000  # SoC_SF unimplemented: SoC cannot be scaled
    reading = decode_battery_base(1, body)
    assert reading.voltage is None
    assert reading.current is None
    assert reading.soc is None


def test_point_helpers() -> None:
    assert scale_factor(0xFFFE) == -2
    assert scale_factor(0x8000) is None
    assert scale_factor(11) is None  # outside -10..10
    assert uint16(5321, -2) == 53.21
    assert uint16(0xFFFF, 0) is None
    assert int16(0xFF85, -1) == -12.3
    assert int16(0x8000, 0) is None


@pytest.mark.parametrize("base", [40000, 0, 50000])
async def test_the_map_is_found_at_each_base_and_walked(base: int) -> None:
    # Model 1 (common, 66 registers) before the battery, as devices do.
    image = device_map(base, [(1, [0] * 66), (802, battery_base())])
    read = reader(image)
    assert await find_base(read) == base
    models = await walk_models(read, base)
    assert [(m.model_id, m.address, m.length) for m in models] == [
        (1, base + 4, 66),  # after "SunS" (2) and the header (2)
        (802, base + 2 + 68 + 2, 62),  # after model 1's header and body
    ]
    reading = await read_battery(read, 1)
    assert reading.voltage == 53.21


async def test_no_marker_is_a_frame_error() -> None:
    with pytest.raises(FrameError):
        await find_base(reader({40000: 0, 40001: 0}))


async def test_a_map_without_802_is_a_frame_error() -> None:
    with pytest.raises(FrameError, match="802"):
        await read_battery(reader(device_map(40000, [(1, [0] * 66)])), 1)


@given(st.lists(st.integers(min_value=0, max_value=0xFFFF), max_size=80))
def test_battery_base_decodes_or_raises_frame_error(registers: list[int]) -> None:
    try:
        reading = decode_battery_base(1, registers)
    except FrameError:
        assert len(registers) < 62
        return
    assert reading.soc is None or 0 <= reading.soc <= 100


@given(st.lists(st.integers(min_value=0, max_value=0xFFFF), min_size=2, max_size=200))
async def test_walking_any_map_ends_or_raises_frame_error(registers: list[int]) -> None:
    image = {40000 + offset: value for offset, value in enumerate([0x5375, 0x6E53, *registers])}

    async def read(address: int, count: int) -> list[int]:
        return [image.get(address + offset, 0xFFFF) for offset in range(count)]

    try:
        models = await walk_models(read, 40000)
    except FrameError:
        return
    assert len(models) <= 64
