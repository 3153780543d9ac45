"""Serve a simulated bank as JK-PB packs (JK BMS RS485 Modbus V1.1) on an RS485 line.

The map is a byte image per block, and a register address is the block's
base plus a byte offset: a read of N registers at an address returns the 2N
bytes from that offset. Reads of more than 40 registers are refused, as
packs in the field are reported to fail them. The blocks are as long and as
filled as the V1.1 map lays them out.

In master mode the pack at DIP 0 drives the bus as a real JK-PB master does
(see ``jk-pb-rs485-frames.md``): it reads no registers, but triggers each
slave with a one-register write (0x1620 live data, then 0x161E settings);
the slave answers with a 300-byte ``55 AA EB 90`` frame, its block
little-endian from frame byte 6, then the ordinary write reply. Addresses
that did not answer are probed with the live trigger alone, and at the end
of each cycle the master sends its own live and settings frames unasked,
each followed by a write reply from unit 0.

Offsets come from the driver's tables (public facts of the vendor document);
the encoding is written here on its own.
"""

from __future__ import annotations

from typing import Final, Literal

from custom_components.rack_battery.protocol.drivers.jk_pb import (
    CHARGE_SWITCH,
    DISCHARGE_SWITCH,
    INFO_BYTES,
    MAX_CHUNK,
    SETTINGS_ADDRESS,
    SETTINGS_CAPACITY,
    SETTINGS_CELL_COUNT,
    Block,
    Info,
    Live,
    LiveExtra,
)

from .bank import SimBank, SimPack, takes_write
from .modbus_line import ModbusLine
from .paced import answer_time

ILLEGAL_FUNCTION: Final = 0x01
ILLEGAL_ADDRESS: Final = 0x02
ILLEGAL_VALUE: Final = 0x03
WRITE_MULTIPLE: Final = 0x10
# Block sizes served, as far as the V1.1 map goes: settings to 0x11A, the
# live block to 0x10E, device information to 0x108; each frame's payload
# runs 293 bytes (frame bytes 6..298).
SIZES: Final = {Block.SETTINGS: 0x11C, Block.LIVE: 0x110, Block.INFO: 0x108}
PAYLOAD: Final = 293
HEADER: Final = b"\x55\xaa\xeb\x90"
# Trigger registers and the frame type each asks for.
TRIGGER_SETTINGS: Final = 0x161E
TRIGGER_LIVE: Final = 0x1620
FRAME_TYPES: Final = {TRIGGER_SETTINGS: 0x01, TRIGGER_LIVE: 0x02}
MASTER: Final = 0
# The gap a real master leaves between one exchange and the next request.
MASTER_GAP: Final = 0.18
HARDWARE: Final = "19A"
# Run time (s) of a simulated pack when the bank's clock starts: a year;
# the RTC (s since 2020-01-01) then reads mid-2026.
RUN_TIME: Final = 365 * 86400
RTC: Final = 200_000_000

Order = Literal["big", "little"]


def _put(
    image: bytearray, offset: int, value: int, size: int, order: Order, *, signed: bool = False
) -> None:
    image[offset : offset + size] = value.to_bytes(size, order, signed=signed)


def live_image(
    pack: SimPack, order: Order = "big", size: int | None = None, *, clock: float = 0.0
) -> bytearray:
    """Return the live block of a pack: big-endian over Modbus, little in a 55AA frame.

    ``clock`` is the bank's clock, which the run-time fields count on from
    a pack that has run for a year already.
    """
    image = bytearray(size or SIZES[Block.LIVE])
    cells = pack.cell_voltages
    millivolts = [round(volts * 1000) for volts in cells]
    for cell, mv in enumerate(millivolts):
        _put(image, Live.CELLS + 2 * cell, mv, 2, order)
    _put(image, Live.CELL_PRESENT, (1 << len(cells)) - 1, 4, order)
    _put(image, LiveExtra.CELL_AVERAGE, round(sum(millivolts) / len(millivolts)), 2, order)
    _put(image, LiveExtra.CELL_DELTA, max(millivolts) - min(millivolts), 2, order)
    # Highest cell then lowest, both counted from 0, in one register.
    image[LiveExtra.CELL_NUMBERS] = millivolts.index(max(millivolts))
    image[LiveExtra.CELL_NUMBERS + 1] = millivolts.index(min(millivolts))
    for cell in range(len(cells)):
        _put(image, LiveExtra.WIRE_RESISTANCES + 2 * cell, 42 + cell % 5, 2, order)  # mOhm
    _put(image, Live.MOSFET_TEMPERATURE, round(pack.mosfet_temperature * 10), 2, order, signed=True)
    _put(image, Live.VOLTAGE, round(pack.voltage * 1000), 4, order)
    _put(image, Live.POWER, round(abs(pack.voltage * pack.current) * 1000), 4, order)
    _put(image, Live.CURRENT, round(pack.current * 1000), 4, order, signed=True)
    temperatures = (*pack.cell_temperatures, pack.ambient)
    offsets = (
        Live.TEMPERATURE_1,
        Live.TEMPERATURE_2,
        Live.TEMPERATURE_3,
        Live.TEMPERATURE_4,
        Live.TEMPERATURE_5,
    )
    for offset, celsius in zip(offsets, temperatures, strict=True):
        _put(image, offset, round(celsius * 10), 2, order, signed=True)
    image[Live.BALANCE_STATE_SOC] = 1 if pack.balancing_cells else 0
    image[Live.BALANCE_STATE_SOC + 1] = min(round(pack.soc * 100), 100)
    _put(image, Live.REMAINING, round(pack.remaining_capacity * 1000), 4, order, signed=True)
    _put(image, Live.FULL, round(pack.full_capacity * 1000), 4, order)
    _put(image, Live.CYCLES, pack.cycles, 4, order)
    _put(
        image, LiveExtra.CYCLE_CAPACITY, round(pack.cycles * pack.design_capacity * 1000), 4, order
    )
    image[Live.SOH_PRECHARGE] = min(round(pack.soh), 100)
    run_time = RUN_TIME + round(clock)
    _put(image, LiveExtra.RUN_TIME, run_time, 4, order)
    image[Live.FETS] = int(pack.charge_on)
    image[Live.FETS + 1] = int(pack.discharge_on)
    image[Live.SENSORS_HEATING] = 0x3F  # the MOSFET sensor and five battery sensors
    # Alarm word bits 6 and 13: charge and discharge over-current protection.
    alarms = (1 << 6 if "charge_overcurrent" in pack.protections else 0) | (
        1 << 13 if "discharge_overcurrent" in pack.protections else 0
    )
    _put(image, Live.ALARMS, alarms, 4, order)
    _put(image, LiveExtra.VOLTAGE_CENTIVOLTS, round(pack.voltage * 100), 2, order)
    _put(image, LiveExtra.TICKS, run_time * 10 % 0x1_0000_0000, 4, order)
    _put(image, LiveExtra.RTC, RTC + round(clock), 4, order)
    _put(image, LiveExtra.SLEEP_TIME, 3600, 4, order)
    return image


def settings_image(pack: SimPack, order: Order = "big", size: int | None = None) -> bytearray:
    """Return the settings block: protection thresholds, cell count, capacity, address."""
    image = bytearray(size or SIZES[Block.SETTINGS])
    # Cell limits (mV): sleep, UVP, UVP recovery, OVP, OVP recovery, balance
    # trigger, SoC 100 %, SoC 0 %, RCV, RFV, power off.
    for index, mv in enumerate((2900, 2600, 2800, 3650, 3400, 10, 3450, 2900, 3450, 3350, 2500)):
        _put(image, 4 * index, mv, 4, order)
    _put(image, SETTINGS_CELL_COUNT, len(pack.cell_voltages), 4, order)
    # The configured switches: charge, discharge, balance enabled (the
    # live FET state is in the live block).
    for switch, enabled in enumerate((pack.charge_path, pack.discharge_path, True)):
        _put(image, SETTINGS_CELL_COUNT + 4 + 4 * switch, int(enabled), 4, order)
    _put(image, SETTINGS_CAPACITY, round(pack.design_capacity * 1000), 4, order)
    _put(image, SETTINGS_ADDRESS, pack.address, 4, order)
    return image


def _ascii(image: bytearray, offset: int, text: str, width: int) -> None:
    image[offset : offset + width] = text.encode("ascii")[:width].ljust(width, b"\x00")


def info_image(pack: SimPack, *, clock: float = 0.0) -> bytearray:
    """Return the device-information block, every field the V1.1 map names."""
    image = bytearray(SIZES[Block.INFO])
    _ascii(image, Info.MODEL, pack.model, 16)
    _ascii(image, Info.HARDWARE, HARDWARE, 8)
    _ascii(image, Info.SOFTWARE, pack.firmware, 8)
    _put(image, Info.RUN_TIME, RUN_TIME + round(clock), 4, "big")
    _put(image, Info.POWER_ON_COUNT, 7, 4, "big")
    image[Info.UART1_PROTOCOL] = 1  # UART1 protocol number
    image[Info.UART1_PROTOCOL + 1] = 2  # CAN protocol number
    image[Info.UART1_ENABLE : Info.UART1_ENABLE + 16] = bytes((1,) * 16)
    image[Info.UART2_PROTOCOL] = 1
    image[Info.UART2_PROTOCOL + 1] = 1
    image[Info.LCD_BUZZER_TRIGGER] = 1
    image[Info.LCD_BUZZER_TRIGGER + 1] = 2  # DRY1 trigger
    image[Info.DRY2_TRIGGER] = 3
    image[Info.DRY2_TRIGGER + 1] = 5  # UART protocol library version
    for offset, value in (
        (Info.LCD_BUZZER_VALUE, 3600),
        (Info.LCD_BUZZER_RELEASE, 3500),
        (Info.DRY1_VALUE, 3600),
        (Info.DRY1_RELEASE, 3500),
        (Info.DRY2_VALUE, 2800),
        (Info.DRY2_RELEASE, 3000),
        (Info.DATA_STORED_PERIOD, 600),
    ):
        _put(image, offset, value, 4, "big", signed=True)
    image[Info.CHARGE_TIMES] = 20  # RCV time, 0.1 h
    image[Info.CHARGE_TIMES + 1] = 100  # RFV time, 0.1 h
    image[Info.CAN_LIBRARY] = 3
    assert len(image) >= INFO_BYTES
    return image


def frame(kind: int, block: bytes | bytearray) -> bytes:
    """Return a 300-byte 55AA frame of a block: header, type, counter, payload, sum."""
    body = HEADER + bytes((kind, 0)) + bytes(block[:PAYLOAD]).ljust(PAYLOAD, b"\x00")
    return body + bytes((sum(body) & 0xFF,))


def pack_frame(pack: SimPack, trigger: int, *, clock: float = 0.0) -> bytes:
    """Return the frame a pack sends for a trigger register."""
    if trigger == TRIGGER_SETTINGS:
        return frame(0x01, settings_image(pack, "little", PAYLOAD))
    return frame(0x02, live_image(pack, "little", PAYLOAD, clock=clock))


class JkPbPacks:
    """What each pack on a JK-PB line holds, read from the bank when asked."""

    # The master speaks for itself: the line sends no request to it.
    master_unit: Final = MASTER

    def __init__(self, bank: SimBank) -> None:
        """Serve ``bank``; pack addresses are DIP addresses (unit numbers)."""
        self.bank = bank

    def read(  # noqa: PLR0911
        self, unit: int, function: int, address: int, count: int
    ) -> list[int] | list[bool] | int | None:
        """Answer a read or a trigger, as the pack at ``unit`` would."""
        if (pack := self.bank.answering(unit)) is None:
            return None
        if function == WRITE_MULTIPLE:
            return [] if address in FRAME_TYPES and count == 1 else ILLEGAL_ADDRESS
        if function != 0x03:
            return ILLEGAL_FUNCTION
        if count > MAX_CHUNK:
            return ILLEGAL_VALUE
        clock = self.bank.clock
        for base, build in (
            (Block.INFO, lambda pack: info_image(pack, clock=clock)),
            (Block.LIVE, lambda pack: live_image(pack, clock=clock)),
            (Block.SETTINGS, settings_image),
        ):
            if address >= base:
                image = build(pack)
                offset = address - base
                if offset + 2 * count > len(image):
                    return ILLEGAL_ADDRESS
                raw = image[offset : offset + 2 * count]
                return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
        return ILLEGAL_ADDRESS

    def write(self, unit: int, address: int, values: list[int]) -> bool | int | None:
        """Take a write of the charge or discharge switch (u32: two registers, 1 on, 0 off)."""
        if (pack := self.bank.answering(unit)) is None:
            return None
        if address in FRAME_TYPES:
            # A trigger: the pack answers with its frame (``preamble``), then the echo.
            return True if len(values) == 1 else ILLEGAL_ADDRESS
        if address not in (CHARGE_SWITCH, DISCHARGE_SWITCH) or len(values) != 2:
            return ILLEGAL_ADDRESS
        value = values[0] << 16 | values[1]
        if value not in (0, 1):
            return ILLEGAL_VALUE
        taken = takes_write(pack)
        if taken is None:
            return None
        if taken:
            if address == CHARGE_SWITCH:
                self.bank.set_paths(unit, charge=bool(value))
            else:
                self.bank.set_paths(unit, discharge=bool(value))
        return True

    def preamble(self, unit: int, function: int, address: int) -> bytes:
        """Return the 55AA frame a pack sends before its reply to a trigger."""
        pack = self.bank.answering(unit)
        if pack is None or function != WRITE_MULTIPLE or address not in FRAME_TYPES:
            return b""
        return pack_frame(pack, address, clock=self.bank.clock)


def master_polls(bank: SimBank) -> list[tuple[int, int, int, int]]:
    """Return one cycle of the DIP-0 master: triggers, probes, then its own two frames.

    Each is (unit, 0x10, trigger register, 1). A JK-PB master asks each
    slave for live data and settings, probes every other address with the
    live trigger, and ends with its own frames (unit 0: nothing is sent,
    the master just speaks).
    """
    slaves = {pack.address for pack in bank.packs if pack.address != MASTER}
    polls: list[tuple[int, int, int, int]] = []
    for unit in sorted(slaves):
        polls += [
            (unit, WRITE_MULTIPLE, TRIGGER_LIVE, 1),
            (unit, WRITE_MULTIPLE, TRIGGER_SETTINGS, 1),
        ]
    polls += [
        (unit, WRITE_MULTIPLE, TRIGGER_LIVE, 1) for unit in range(1, 16) if unit not in slaves
    ]
    if any(pack.address == MASTER for pack in bank.packs):
        polls += [
            (MASTER, WRITE_MULTIPLE, TRIGGER_LIVE, 1),
            (MASTER, WRITE_MULTIPLE, TRIGGER_SETTINGS, 1),
        ]
    return polls


def make_line(bank: SimBank) -> ModbusLine:
    """Return the RS485 line of a JK-PB bank (open it as a pty, or serve it over TCP)."""
    return ModbusLine(JkPbPacks(bank))


class MasterBus:
    """A JK-PB bank whose DIP-0 master drives the line, served for ``python -m simulator``."""

    def __init__(self, line: ModbusLine, host: str, port: int, path: str = "") -> None:
        """Hold the line and where it is served (host and port, or a pty's path)."""
        self.line = line
        self.host = host
        self.port = port
        self.path = path

    async def stop(self) -> None:
        """Stop the master and close the line."""
        await self.line.stop()


async def start_server(bank: SimBank, host: str, port: int) -> MasterBus:
    """Serve a master bus as raw RTU over TCP (a transparent gateway)."""
    line = make_line(bank)
    host, bound = await line.serve_rtu_tcp(host, port)
    line.start_master(master_polls(bank), period=MASTER_GAP)
    return MasterBus(line, host, bound)


async def start_pty(bank: SimBank, *, baudrate: int | None = None) -> MasterBus:
    """Serve a master bus on a pseudo-terminal (a USB RS485 adapter).

    With ``baudrate`` the line runs at that speed (``simulator/paced.py``).
    """
    line = make_line(bank)
    path = line.open_pty(baudrate=baudrate, answer_time=answer_time("jk_pb"))
    line.start_master(master_polls(bank), period=MASTER_GAP)
    return MasterBus(line, "serial", 0, path)
