"""Simulated JK-PB packs hold what the V1.1 map lays out, and speak a master bus as real ones.

Offsets here are read off vendor-docs/JK-BMS-RS485-Modbus-V1.1.txt and
jk-pb-rs485-frames.md, not taken from the driver's tables.
"""

from __future__ import annotations

from custom_components.rack_battery.protocol.drivers.jk_pb import decode_live_frame
from custom_components.rack_battery.protocol.rtu import seal
from simulator import jk_pb as sim_jk
from simulator.bank import constant_load, make_bank
from simulator.modbus_line import master_request


def _registers(packs: sim_jk.JkPbPacks, unit: int, address: int, count: int) -> bytes:
    values = packs.read(unit, 0x03, address, count)
    assert isinstance(values, list), values
    return b"".join(int(value).to_bytes(2, "big") for value in values)


def test_live_fields_are_filled() -> None:
    bank = make_bank(2, first_address=1, load=constant_load(20.0))
    bank.step(600)
    packs = sim_jk.JkPbPacks(bank)
    pack = bank.pack(1)
    millivolts = [round(volts * 1000) for volts in pack.cell_voltages]
    # 0x1244 CellVolAve, 0x1246 CellVdifMax, 0x1248 MaxVolCellNbr (high) / MinVolCellNbr (low).
    raw = _registers(packs, 1, 0x1244, 3)
    assert int.from_bytes(raw[0:2], "big") == round(sum(millivolts) / len(millivolts))
    assert int.from_bytes(raw[2:4], "big") == max(millivolts) - min(millivolts)
    assert raw[4] == millivolts.index(max(millivolts))
    assert raw[5] == millivolts.index(min(millivolts))
    # 0x12BC RunTime u32 s: a year and the bank's ten minutes.
    run_time = int.from_bytes(_registers(packs, 1, 0x12BC, 2), "big")
    assert run_time == 365 * 86400 + 600
    # The live block runs to 0x130D (0x010C PCLModuleSta and its reserved byte).
    assert len(_registers(packs, 1, 0x12F0, 15)) == 30


def test_device_information_is_as_long_and_full_as_the_map() -> None:
    bank = make_bank(1, first_address=3)
    packs = sim_jk.JkPbPacks(bank)
    pack = bank.pack(3)
    info = _registers(packs, 3, 0x1400, 20)
    assert info[0:16].rstrip(b"\x00").decode() == pack.model  # ManufacturerDeviceID
    assert info[16:24].rstrip(b"\x00") != b""  # HardwareVersion
    assert info[24:32].rstrip(b"\x00").decode() == pack.firmware  # SoftwareVersion
    assert int.from_bytes(info[32:36], "big") > 0  # ODDRunTime
    assert int.from_bytes(info[36:40], "big") > 0  # PWROnTimes
    # The last field the map names, 0x1506 CANMPTLVer, is served and set.
    last = _registers(packs, 3, 0x1506, 1)
    assert last[0] != 0


def test_a_triggered_slave_answers_frame_then_write_reply() -> None:
    bank = make_bank(3, first_address=0, load=constant_load(30.0))
    line = sim_jk.make_line(bank)
    request = master_request(2, 0x10, 0x1620, 1)
    # The documented shape of a trigger: [unit] 10 16 20 00 01 02 00 00 [CRC].
    assert request[:-2] == bytes.fromhex("021016200001020000")
    reply = line.rtu_reply(2, 0x10, request[2:-2])
    assert len(reply) == 308
    assert reply[:4] == b"\x55\xaa\xeb\x90"
    assert reply[300:] == seal(bytes.fromhex("021016200001"))
    reading = decode_live_frame(2, reply[:300])
    assert reading.voltage is not None
    assert abs(reading.voltage - bank.pack(2).voltage) < 0.001
    # The master's cycle ends with its own two frames (unit 0, nothing sent to it).
    polls = sim_jk.master_polls(bank)
    assert polls[-2:] == [(0, 0x10, 0x1620, 1), (0, 0x10, 0x161E, 1)]
    assert [unit for unit, *_ in polls[:4]] == [1, 1, 2, 2]
    assert [unit for unit, *_ in polls[4:-2]] == list(range(3, 16))  # probes
