"""SunSpec models 1, 803, 804 and 805 on register blocks built by hand.

Offsets are those of SunSpec's model files (model_1.json, model_803.json,
model_804.json, model_805.json), counted from the first register after the
[ID][L] header; each value below says where it sits and what it is worth.
SunSpec counts current leaving the battery as positive: a reading shows the
opposite sign (positive while charging).
"""

from __future__ import annotations

from hypothesis import given, strategies as st
import pytest

from custom_components.rack_battery.protocol.drivers.sunspec import (
    LithiumModule,
    LithiumString,
    decode_common,
    decode_lithium_bank,
    decode_lithium_module,
    decode_lithium_string,
)
from custom_components.rack_battery.protocol.errors import FrameError

REGISTERS = st.lists(st.integers(min_value=0, max_value=0xFFFF), max_size=160)


def text(value: str, registers: int) -> list[int]:
    """Two characters a register, high byte first, NUL padded: "MO" is 0x4D4F."""
    raw = value.encode().ljust(2 * registers, b"\0")
    return [raw[i] << 8 | raw[i + 1] for i in range(0, 2 * registers, 2)]


def common() -> list[int]:
    body = [0] * 66
    body[0:16] = text("Acme Storage", 16)  # Mn at 0..15
    body[16:32] = text("RackBank 48", 16)  # Md at 16..31
    body[40:48] = text("2.1.0", 8)  # Vr at 40..47
    body[48:64] = text("SN-778", 16)  # SN at 48..63
    return body


def lithium_bank() -> list[int]:
    """Model 803: two strings; 26 fixed registers, then two groups of 32."""
    body = [0xFFFF] * (26 + 2 * 32)
    body[0] = 2  # NStr
    body[1] = 1  # NStrCon
    body[20] = 0xFFFD  # CellV_SF = -3
    body[21] = 0xFFFF  # ModTmp_SF = -1
    body[22] = 0xFFFF  # A_SF = -1
    body[23] = 0xFFFF  # SoH_SF = -1
    body[24] = 0  # SoC_SF = 0
    body[25] = 0xFFFE  # V_SF = -2
    # String 1, group at 26.
    body[26 + 0] = 1  # StrNMod
    body[26 + 1], body[26 + 2] = 0x0000, 0x0003  # StrSt: bit 0 enabled, bit 1 contactor closed
    body[26 + 4] = 63  # StrSoC 63 x 10^0 = 63 %
    body[26 + 5] = 975  # StrSoH 975 x 10^-1 = 97.5 %
    body[26 + 6] = 100  # StrA 100 x 10^-1 = 10.0 A out: a reading of -10.0 A
    body[26 + 7] = 3345  # StrCellVMax 3.345 V
    body[26 + 9] = 3301  # StrCellVMin 3.301 V
    body[26 + 12] = 250  # StrModTmpMax 25.0 degC
    body[26 + 14] = 0xFFEC  # StrModTmpMin 0xFFEC - 0x10000 = -20 x 10^-1 = -2.0 degC
    body[26 + 20], body[26 + 21] = 0x0000, 0x0400  # StrEvt1 bit 10: OVER_VOLT_WARNING
    # String 2, group at 58: its contactor open, charging 20 A, nothing else known.
    body[58 + 0] = 1
    body[58 + 1], body[58 + 2] = 0x0000, 0x0001  # enabled, contactor open
    body[58 + 6] = 0xFF38  # StrA = 0xFF38 - 0x10000 = -200 x 10^-1 = -20.0 A: into the string
    return body


def lithium_string() -> list[int]:
    """Model 804: string 2 of two modules; 46 fixed registers, then two groups of 16."""
    body = [0xFFFF] * (46 + 2 * 16)
    body[0] = 2  # Idx
    body[1] = 2  # NMod
    body[2], body[3] = 0x0000, 0x0003  # St: enabled, contactor closed
    body[5] = 0  # NCellBal: nothing balancing
    body[6] = 5321  # SoC 5321 x 10^-2 = 53.21 %
    body[8], body[9] = 0x0001, 0x86A0  # NCyc 0x000186A0 = 100000
    body[10] = 99  # SoH 99 x 10^0 %
    body[11] = 0xFF85  # A = -123 x 10^-1 = -12.3 A into the string: charging 12.3 A
    body[12] = 5312  # V 5312 x 10^-2 = 53.12 V
    body[13] = 3344  # CellVMax 3.344 V
    body[15] = 3310  # CellVMin 3.310 V
    body[18] = 287  # ModTmpMax 28.7 degC
    body[20] = 0xFFFB  # ModTmpMin -5 x 10^-1 = -0.5 degC
    # Evt1 = 0x0010_0002, high word first: bit 20 CONTACTOR_ERROR + bit 1 OVER_TEMP_ALARM.
    body[26], body[27] = 0x0010, 0x0002
    body[36] = 0xFFFE  # SoC_SF -2
    body[37] = 0  # SoH_SF 0
    body[39] = 0xFFFF  # A_SF -1
    body[40] = 0xFFFE  # V_SF -2
    body[41] = 0xFFFD  # CellV_SF -3
    body[42] = 0xFFFF  # ModTmp_SF -1
    # Module 1, group at 46.
    body[46 + 0] = 16  # ModNCell
    body[46 + 1] = 5400  # ModSoC 54.00 %
    body[46 + 2] = 100  # ModSoH 100 %
    body[46 + 3] = 3344  # ModCellVMax
    body[46 + 4] = 3  # ModCellVMaxCell (a cell number)
    body[46 + 5] = 3320  # ModCellVMin
    body[46 + 6] = 7  # ModCellVMinCell (a cell number, whatever its listed unit)
    body[46 + 8] = 287  # ModCellTmpMax 28.7 degC
    body[46 + 10] = 250  # ModCellTmpMin 25.0 degC
    # Module 2, group at 62: 15 cells, nothing measured.
    body[62 + 0] = 15
    return body


def lithium_module() -> list[int]:
    """Model 805: module 2 of string 1, three cells; 42 fixed registers, then 3 groups of 4."""
    body = [0xFFFF] * (42 + 3 * 4)
    body[0] = 1  # StrIdx
    body[1] = 2  # ModIdx
    body[2] = 3  # NCell
    body[3] = 805  # SoC 805 x 10^-1 = 80.5 %
    body[5] = 0xFFFF  # SoH unimplemented
    body[6], body[7] = 0x0000, 42  # NCyc 42
    body[8] = 1002  # V 1002 x 10^-2 = 10.02 V (3.345 + 3.337 + 3.320 = 10.002)
    body[9] = 3345  # CellVMax
    body[11] = 3320  # CellVMin
    body[19] = 1  # NCellBal: one cell balancing
    body[20:36] = text("MOD-0001", 16)  # SN: 0x4D4F 0x442D 0x3030 0x3031, then NULs
    body[36] = 0xFFFF  # SoC_SF -1
    body[37] = 0  # SoH_SF 0
    body[38] = 0x8000  # DoD_SF unimplemented
    body[39] = 0xFFFE  # V_SF -2
    body[40] = 0xFFFD  # CellV_SF -3
    body[41] = 0xFFFF  # Tmp_SF -1
    body[42:46] = [3345, 253, 0, 0]  # cell 1: 3.345 V, 25.3 degC, status clear
    body[46:50] = [3337, 0xFFF6, 0, 1]  # cell 2: 3.337 V, -10 x 10^-1 = -1.0 degC, balancing
    body[50:54] = [3320, 0x8000, 0xFFFF, 0xFFFF]  # cell 3: 3.320 V, temperature and status unset
    return body


def test_common_names_the_device() -> None:
    info = decode_common(common())
    assert info.manufacturer == "Acme Storage"
    assert info.model == "RackBank 48"
    assert info.version == "2.1.0"
    assert info.serial == "SN-778"


def test_bank_decodes_one_reading_per_string() -> None:
    first, second = decode_lithium_bank(lithium_bank())
    assert first.index == 1
    assert first.reading.current == -10.0  # discharging
    assert first.reading.soc == 63
    assert first.reading.soh == 97.5
    assert first.reading.cell_voltages == (3.301, 3.345)
    assert first.reading.temperatures == (-2.0, 25.0)
    assert first.reading.charge_enabled is True
    assert first.reading.warnings == {"pack_overvoltage"}
    assert second.index == 2
    assert second.reading.current == 20.0  # charging
    assert second.reading.charge_enabled is False
    assert second.reading.soc is None
    assert second.reading.cell_voltages == ()
    assert second.reading.warnings == second.reading.protections == frozenset()


def test_string_decodes_with_its_modules() -> None:
    string = decode_lithium_string(lithium_string())
    assert isinstance(string, LithiumString)
    reading = string.reading
    assert string.index == reading.address == 2
    assert reading.voltage == 53.12
    assert reading.current == 12.3  # charging
    assert reading.soc == 53.21
    assert reading.soh == 99
    assert reading.cycles == 100000
    assert reading.cell_voltages == (3.31, 3.344)
    assert reading.temperatures == (-0.5, 28.7)
    assert reading.charge_enabled is reading.discharge_enabled is True
    assert reading.balancing is False
    assert reading.protections == {"system_fault", "charge_overtemperature"}
    assert reading.warnings == frozenset()
    first, second = string.modules
    assert (first.address, first.soc, first.soh) == (1, 54.0, 100)
    assert first.cell_voltages == (3.32, 3.344)
    assert first.temperatures == (25.0, 28.7)
    assert (second.address, second.soc, second.cell_voltages) == (2, None, ())
    assert string.module_cells == (16, 15)


def test_module_decodes_cell_by_cell() -> None:
    module = decode_lithium_module(5, lithium_module())
    assert isinstance(module, LithiumModule)
    assert (module.string_index, module.module_index) == (1, 2)
    assert module.serial == "MOD-0001"
    assert module.cell_count == 3
    reading = module.reading
    assert reading.address == 5
    assert reading.voltage == 10.02
    assert reading.soc == 80.5
    assert reading.soh is None
    assert reading.cycles == 42
    assert reading.cell_voltages == (3.345, 3.337, 3.32)
    assert reading.temperatures == (25.3, -1.0, None)
    assert reading.balancing is True
    # A module has no current or contactor of its own: its string has them.
    assert reading.current is None
    assert reading.charge_enabled is None


def test_a_module_claiming_more_cells_than_it_holds_is_a_frame_error() -> None:
    body = lithium_module()
    body[2] = 4  # NCell 4, but the length holds 42 + 3 x 4
    with pytest.raises(FrameError, match="805"):
        decode_lithium_module(1, body)


def test_a_bank_claiming_more_strings_than_it_holds_is_a_frame_error() -> None:
    body = lithium_bank()
    body[0] = 3
    with pytest.raises(FrameError, match="803"):
        decode_lithium_bank(body)


@pytest.mark.parametrize(
    ("decode", "fixed"),
    [
        (decode_lithium_bank, 26),
        (decode_lithium_string, 46),
        (lambda body: decode_lithium_module(1, body), 42),
        (decode_common, 64),
    ],
)
def test_a_short_block_is_a_frame_error(decode: object, fixed: int) -> None:
    assert callable(decode)
    with pytest.raises(FrameError):
        decode([0] * (fixed - 1))


@given(REGISTERS)
def test_any_bank_block_decodes_or_raises_frame_error(registers: list[int]) -> None:
    try:
        strings = decode_lithium_bank(registers)
    except FrameError:
        return
    for string in strings:
        assert string.reading.soc is None or 0 <= string.reading.soc <= 100


@given(REGISTERS)
def test_any_string_block_decodes_or_raises_frame_error(registers: list[int]) -> None:
    try:
        string = decode_lithium_string(registers)
    except FrameError:
        return
    assert string.reading.soh is None or 0 <= string.reading.soh <= 100
    assert len(string.modules) == len(string.module_cells)


@given(REGISTERS)
def test_any_module_block_decodes_or_raises_frame_error(registers: list[int]) -> None:
    try:
        module = decode_lithium_module(1, registers)
    except FrameError:
        return
    assert len(module.reading.cell_voltages) == len(module.reading.temperatures) or (
        module.reading.temperatures == ()
    )


@given(st.lists(st.integers(min_value=-5, max_value=0x1_0004), max_size=120))
def test_values_that_are_no_registers_are_frame_errors(registers: list[int]) -> None:
    # A transport hands over 16-bit registers; anything else is refused, not decoded.
    for decode in (
        decode_lithium_bank,
        decode_lithium_string,
        lambda body: decode_lithium_module(1, body),
        decode_common,
    ):
        try:
            decode(registers)
        except FrameError:
            continue
        assert all(0 <= value <= 0xFFFF for value in registers)
