"""The PACE Modbus V1.3 decoders on register values worked out by hand from the document."""

from __future__ import annotations

import pytest

from custom_components.rack_battery.protocol.drivers.pace_modbus import (
    decode_flags,
    decode_identity,
    decode_pack,
    decode_text,
)
from custom_components.rack_battery.protocol.errors import FrameError

# Registers 0..36 of a 16-cell pack at unit 3, discharging at 10 A, written
# out register by register with the document's units.
DISCHARGING_PACK: tuple[int, ...] = (
    0xFC18,  # 0 current INT16 10 mA: 0xFC18 = 64536 - 65536 = -1000 -> -10.00 A
    0x14B4,  # 1 voltage UINT16 10 mV: 0x14B4 = 5300 -> 53.00 V
    0x0050,  # 2 SoC, UINT8 in the low byte: 80 %
    0x0062,  # 3 SoH: 98 %
    0x1F40,  # 4 remaining UINT16 10 mAh: 8000 -> 80.00 Ah
    0x2710,  # 5 full: 10000 -> 100.00 Ah
    0x2904,  # 6 design: 10500 -> 105.00 Ah
    0x0096,  # 7 cycles: 150
    0x0000,  # 8 reserved
    0x8001,  # 9 warning: bit 0 cell overvoltage, bit 15 SoC low
    0x1040,  # 10 protection: bit 6 short circuit, bit 12 MOSFET high temperature
    0x0E00,  # 11 status: bit 9 discharging, bit 10 charge FET on, bit 11 discharge FET on
    0x0005,  # 12 balancing: bits 0 and 2 -> cells 1 and 3
    0x0000,  # 13 reserved
    0x0000,  # 14 reserved
    # 15..30 cells UINT16 mV: 0x0CE4 = 3300 -> 3.300 V, 0x0CDA = 3290 -> 3.290 V,
    # 0x0CF3 = 3315 -> 3.315 V
    *(0x0CE4,) * 14,
    0x0CDA,
    0x0CF3,
    0x00FA,  # 31 cell temperature INT16 0.1 degC: 250 -> 25.0 degC
    0xFF9C,  # 32 0xFF9C = 65436 - 65536 = -100 -> -10.0 degC
    0x0000,  # 33 0 -> 0.0 degC
    0x0123,  # 34 0x0123 = 291 -> 29.1 degC
    0x8000,  # 35 MOSFET: the INT16 filler -> unknown
    0xFFFF,  # 36 environment: the "invalid" fill of a board without the sensor -> unknown
)


def with_registers(**changes: int) -> list[int]:
    """Return the discharging pack with some registers (r<address>=value) changed."""
    registers = list(DISCHARGING_PACK)
    for name, value in changes.items():
        registers[int(name.removeprefix("r"))] = value
    return registers


def test_discharging_pack() -> None:
    reading = decode_pack(3, DISCHARGING_PACK)
    assert reading.address == 3
    assert reading.current == -10.0  # discharging is negative
    assert reading.voltage == 53.0
    assert reading.power == -530.0
    assert reading.soc == 80.0
    assert reading.soh == 98.0
    assert reading.remaining_capacity == 80.0
    assert reading.full_capacity == 100.0
    assert reading.design_capacity == 105.0
    assert reading.cycles == 150
    assert reading.cell_voltages == (3.3,) * 14 + (3.29, 3.315)
    assert reading.cell_delta == pytest.approx(0.025)
    # Four cell sensors, then the environment, in fixed positions.
    assert reading.temperatures == (25.0, -10.0, 0.0, 29.1, None)
    assert reading.mosfet_temperature is None
    assert reading.charge_enabled is True
    assert reading.discharge_enabled is True


def test_charging_current_is_positive() -> None:
    # 0x03E8 = 1000 -> +10.00 A; 0x0001 = 1 -> +0.01 A.
    assert decode_pack(1, with_registers(r0=0x03E8)).current == 10.0
    assert decode_pack(1, with_registers(r0=0x0001)).current == 0.01


def test_minus_ten_milliamps_is_a_reading_not_a_filler() -> None:
    # 0xFFFF as INT16 is -1 -> -0.01 A: a pack at rest reads that.
    assert decode_pack(1, with_registers(r0=0xFFFF)).current == -0.01


@pytest.mark.parametrize(
    ("status", "charge", "discharge"),
    [
        (0x0000, False, False),  # isolated: both FETs off
        (0x0400, True, False),  # bit 10 only: may charge, may not discharge
        (0x0800, False, True),  # bit 11 only
        (0x0C00, True, True),
        (0xF3FF, False, False),  # every other bit set, both FET bits clear
    ],
)
def test_fet_bits(status: int, charge: bool, discharge: bool) -> None:
    reading = decode_pack(1, with_registers(r11=status))
    assert reading.charge_enabled is charge
    assert reading.discharge_enabled is discharge


def test_unimplemented_fillers_become_unknown() -> None:
    reading = decode_pack(
        1,
        with_registers(
            r0=0x8000,  # INT16 filler
            r1=0xFFFF,
            r2=0xFFFF,
            r3=0x00FF,  # UINT8 filler in the low byte
            r4=0xFFFF,
            r5=0xFFFF,
            r6=0xFFFF,
            r7=0xFFFF,
            r31=0x7FFF,
            r32=0x8000,
            r33=0xFFFF,
            r34=0x0FA0,  # 4000 -> 400.0 degC: no pack that hot still talks
        ),
    )
    assert reading.current is None
    assert reading.voltage is None
    assert reading.power is None
    assert reading.soc is None
    assert reading.soh is None
    assert reading.remaining_capacity is None
    assert reading.full_capacity is None
    assert reading.design_capacity is None
    assert reading.cycles is None
    assert reading.temperatures == (None, None, None, None, None)
    assert reading.temperature_max is None


def test_percentages_past_one_hundred_are_unknown() -> None:
    # 0x0064 = 100 is full; 0x0065 = 101 is no percentage.
    assert decode_pack(1, with_registers(r2=0x0064)).soc == 100.0
    assert decode_pack(1, with_registers(r2=0x0065)).soc is None
    assert decode_pack(1, with_registers(r2=0x0000)).soc == 0.0


def test_fifteen_cell_pack_drops_the_empty_input() -> None:
    # A 15S pack on a 16-input board: register 30 reads 0.
    reading = decode_pack(1, with_registers(r30=0x0000))
    assert len(reading.cell_voltages) == 15
    assert reading.cell_voltages[-1] == 3.29


def test_unreadable_cell_between_fitted_ones_is_unknown() -> None:
    reading = decode_pack(1, with_registers(r17=0xFFFF))
    assert len(reading.cell_voltages) == 16
    assert reading.cell_voltages[2] is None
    assert reading.cell_min == 3.29


def test_flags_by_name() -> None:
    flags = decode_flags(3, DISCHARGING_PACK)
    assert flags.warnings == {"cell_overvoltage", "low_capacity"}
    assert flags.protections == {"short_circuit", "mosfet_overtemperature"}
    assert flags.status == {"discharging", "charge_mosfet_on", "discharge_mosfet_on"}
    assert flags.balancing_cells == (1, 3)


def test_reading_carries_the_alarms_by_their_shared_names() -> None:
    # The same bits as above, as a user sees them on the pack's reading.
    reading = decode_pack(3, DISCHARGING_PACK)
    assert reading.warnings == {"cell_overvoltage", "low_capacity"}
    assert reading.protections == {"short_circuit", "mosfet_overtemperature"}
    assert reading.balancing is True


def test_status_faults_join_the_protections() -> None:
    # Status 0x0C01: bit 0 charge MOSFET fault, FETs on (bits 10 and 11).
    reading = decode_pack(1, with_registers(r9=0, r10=0, r11=0x0C01, r12=0))
    assert reading.protections == {"charge_mosfet_fault"}
    assert reading.warnings == frozenset()
    assert reading.balancing is False
    assert reading.charge_enabled is True


def test_environment_and_mosfet_bits_differ_between_warning_and_protection() -> None:
    # Bit 12 is the environment in the warning register, the MOSFET in the
    # protection register.
    flags = decode_flags(1, with_registers(r9=0x1000, r10=0x1000))
    assert flags.warnings == {"environment_overtemperature"}
    assert flags.protections == {"mosfet_overtemperature"}


@pytest.mark.parametrize("count", [0, 36, 38, 125])
def test_wrong_register_count_is_a_frame_error(count: int) -> None:
    registers = (list(DISCHARGING_PACK) * 4)[:count]
    with pytest.raises(FrameError, match=f"expected 37 registers, got {count}"):
        decode_pack(1, registers)


def test_register_outside_sixteen_bits_is_a_frame_error() -> None:
    with pytest.raises(FrameError, match="not a 16-bit register value"):
        decode_pack(1, with_registers(r1=0x10000))


# Registers 150..179, two ASCII characters each, high byte first.
IDENTITY: tuple[int, ...] = (
    # 150..159 version "PACE V2.07", NUL padded
    0x5041,  # "PA"
    0x4345,  # "CE"
    0x2056,  # " V"
    0x322E,  # "2."
    0x3037,  # "07"
    *(0x0000,) * 5,
    # 160..169 "Model SN" "P16S100A", space padded
    0x5031,  # "P1"
    0x3653,  # "6S"
    0x3130,  # "10"
    0x3041,  # "0A"
    *(0x2020,) * 6,
    # 170..179 pack SN "RBB2024000017": thirteen characters, so the last
    # register holds "7" in its high byte and a NUL in its low byte
    0x5242,  # "RB"
    0x4232,  # "B2"
    0x3032,  # "02"
    0x3430,  # "40"
    0x3030,  # "00"
    0x3031,  # "01"
    0x3700,  # "7\0"
    *(0x0000,) * 3,
)


def test_identity() -> None:
    reading = decode_pack(3, DISCHARGING_PACK)
    identity = decode_identity(3, IDENTITY, reading=reading)
    assert identity.address == 3
    assert identity.family == "pace_modbus"
    assert identity.firmware == "PACE V2.07"
    assert identity.model == "P16S100A"
    assert identity.serial == "RBB2024000017"
    assert identity.key == "RBB2024000017"
    assert identity.cell_count == 16
    assert identity.design_capacity == 105.0


def test_identity_before_v13_has_no_pack_serial() -> None:
    # Firmware before V1.3 ends the map at 169: twenty registers.
    identity = decode_identity(3, IDENTITY[:20])
    assert identity.firmware == "PACE V2.07"
    assert identity.model == "P16S100A"
    assert identity.serial is None
    assert identity.key == "slot_3"
    assert identity.cell_count == 16  # the board's inputs, without a reading
    assert identity.design_capacity is None


def test_identity_takes_the_cell_count_from_the_reading() -> None:
    reading = decode_pack(3, with_registers(r30=0x0000))
    assert decode_identity(3, IDENTITY, reading=reading).cell_count == 15


def test_blank_pack_serial_names_the_slot() -> None:
    blank = list(IDENTITY[:20]) + [0xFFFF] * 10
    identity = decode_identity(7, blank)
    assert identity.serial is None
    assert identity.key == "slot_7"


def test_text_with_control_characters_is_unknown() -> None:
    # 0x0107: bytes 0x01 and 0x07 are not printable.
    assert decode_text([0x5041, 0x0107, 0x4345]) is None
    assert decode_text([0x2020, 0x4142, 0x2000]) == "AB"


@pytest.mark.parametrize("count", [0, 10, 21, 29, 31])
def test_identity_of_the_wrong_size_is_a_frame_error(count: int) -> None:
    with pytest.raises(FrameError, match=f"got {count}"):
        decode_identity(3, (list(IDENTITY) * 2)[:count])
