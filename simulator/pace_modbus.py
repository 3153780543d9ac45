"""Serve a simulated bank as PACE BMS Modbus V1.3, behind a Modbus TCP gateway.

Real PACE packs speak Modbus RTU on RS485 and are reached from the network
through a gateway that turns Modbus TCP into RTU. This personality plays
the gateway and the packs behind it at once (``modbus_server``): one Modbus
unit per pack, numbered by the pack's address.

Every request is answered from the bank as it is at that moment: the
register image is encoded from the pack when the request arrives, so a test
that steps the bank sees the new values on its next read without any
background task.

What a gateway does when a pack cannot answer is reproduced too. A pack
taken off the bus, and any unit number with no pack behind it, gets the
gateway's exception 0x0B (target device failed to respond) at once, as the
gateways that speak real Modbus TCP do. A pack can also be made silent: then
nothing comes back at all and the client waits out its timeout, as it would
behind a gateway that only forwards bytes.

The register addresses come from the driver's table, which is a public fact
of the vendor document; the encoding here is written independently of the
driver's decoder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from custom_components.rack_battery.protocol.drivers.pace_modbus import (
    CELL_SLOTS,
    CHARGE_FET_ON_BIT,
    DISCHARGE_FET_ON_BIT,
    PROTECTION_FLAGS,
    TEXT_REGISTERS,
    WARNING_FLAGS,
    Register,
)

from .bank import SimBank, SimPack
from .modbus_server import Action, ExcCodes, ModbusServing, Silent, SimDevice, listen, nobody_there

# The map ends with the pack serial at 170..179.
MAP_SIZE: Final = Register.PACK_SN + TEXT_REGISTERS
# Registers a master may write: the protection settings and the two serials.
WRITABLE: Final = (range(60, 115), range(Register.MODEL_SN, MAP_SIZE))
# The document allows function 0x03 to read at most 0x7D registers.
MAX_READ: Final = 0x7D
READ_HOLDING: Final = 0x03
WRITE_MULTIPLE: Final = 0x10
# Status bits for the direction of the current.
CHARGING_BIT: Final = 8
DISCHARGING_BIT: Final = 9


def _unsigned(value: float, per_unit: int) -> int:
    # 0xFFFF is the "not implemented" filler; a real value stops short of it.
    return min(max(round(value * per_unit), 0), 0xFFFE)


def _signed(value: float, per_unit: int) -> int:
    # 0x8000 is the filler for signed fields; a real value stops short of it.
    return min(max(round(value * per_unit), -0x7FFF), 0x7FFF) & 0xFFFF


def _text(value: str) -> list[int]:
    """Encode text as the map holds it: two characters a register, high byte first.

    PACE pads short texts with spaces; longer ones are cut at 20 characters.
    """
    raw = value.encode("ascii", errors="replace")[: 2 * TEXT_REGISTERS]
    raw = raw.ljust(2 * TEXT_REGISTERS, b" ")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def _untext(registers: Sequence[int]) -> str:
    raw = b"".join(value.to_bytes(2, "big") for value in registers)
    return raw.strip(b"\x00\xff ").decode("ascii", errors="replace")


def _flags(active: set[str], bits: Mapping[int, str]) -> int:
    """Return the register whose bits stand for the active conditions."""
    return sum(1 << bit for bit, name in bits.items() if name in active)


def encode_pack(pack: SimPack, settings: dict[int, int] | None = None) -> list[int]:
    """Return the whole register map (0..179) of a pack as its BMS would report it."""
    image = [0] * MAP_SIZE
    current = _signed(pack.current, 100)
    image[Register.CURRENT] = current
    image[Register.VOLTAGE] = _unsigned(pack.voltage, 100)
    image[Register.SOC] = min(max(round(pack.soc * 100), 0), 100)
    image[Register.SOH] = min(max(round(pack.soh), 0), 100)
    image[Register.REMAINING_CAPACITY] = _unsigned(pack.remaining_capacity, 100)
    image[Register.FULL_CAPACITY] = _unsigned(pack.full_capacity, 100)
    image[Register.DESIGN_CAPACITY] = _unsigned(pack.design_capacity, 100)
    image[Register.CYCLES] = min(pack.cycles, 0xFFFE)
    status = 0
    if pack.charge_on:
        status |= 1 << CHARGE_FET_ON_BIT
    if pack.discharge_on:
        status |= 1 << DISCHARGE_FET_ON_BIT
    if current and current < 0x8000:
        status |= 1 << CHARGING_BIT
    elif current:
        status |= 1 << DISCHARGING_BIT
    image[Register.STATUS] = status
    image[Register.WARNING] = _flags(pack.warnings, WARNING_FLAGS)
    image[Register.PROTECTION] = _flags(pack.protections, PROTECTION_FLAGS)
    image[Register.BALANCING] = sum(1 << (cell - 1) for cell in pack.balancing_cells)
    for index, volts in enumerate(pack.cell_voltages[:CELL_SLOTS]):
        image[Register.FIRST_CELL + index] = _unsigned(volts, 1000)
    for index, celsius in enumerate(pack.cell_temperatures):
        image[Register.FIRST_CELL_TEMPERATURE + index] = _signed(celsius, 10)
    image[Register.MOSFET_TEMPERATURE] = _signed(pack.mosfet_temperature, 10)
    image[Register.ENVIRONMENT_TEMPERATURE] = _signed(pack.ambient, 10)
    for address, value in (settings or {}).items():
        image[address] = value
    image[Register.VERSION : Register.VERSION + TEXT_REGISTERS] = _text(pack.firmware)
    image[Register.MODEL_SN : Register.MODEL_SN + TEXT_REGISTERS] = _text(pack.model)
    image[Register.PACK_SN : Register.PACK_SN + TEXT_REGISTERS] = _text(pack.serial)
    return image


@dataclass(kw_only=True)
class RunningServer(ModbusServing):
    """A listening PACE gateway; packs can be made silent one by one."""

    _silent: set[int] = field(repr=False)

    def set_silent(self, address: int, silent: bool = True) -> None:
        """Make a pack give no answer at all (or answer again).

        Unlike a pack off the bus, which the gateway reports at once with
        exception 0x0B, a silent pack leaves the client to time out.
        """
        self.bank.pack(address)  # KeyError for a pack that does not exist
        if silent:
            self._silent.add(address)
        else:
            self._silent.discard(address)


def _pack_action(bank: SimBank, address: int, silent: set[int]) -> Action:
    """Return what answers requests to one pack's unit number."""
    settings: dict[int, int] = {}

    async def answer(  # noqa: PLR0917 - an action takes six positionals
        function_code: int,
        start_address: int,
        request_address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        pack = bank.pack(address)
        if address in silent:
            raise Silent(f"pack {address} is silent")
        if not pack.online:
            return ExcCodes.GATEWAY_NO_RESPONSE
        if function_code == READ_HOLDING:
            if count > MAX_READ:
                return ExcCodes.ILLEGAL_VALUE
        elif function_code == WRITE_MULTIPLE and values:
            written = range(request_address, request_address + len(values))
            if not any(written[0] in span and written[-1] in span for span in WRITABLE):
                return ExcCodes.ILLEGAL_ADDRESS
            _apply_write(pack, settings, request_address, [int(value) for value in values])
        else:
            # The BMS knows functions 0x03 and 0x10 and nothing else.
            return ExcCodes.ILLEGAL_FUNCTION
        # The block starts at register 0, so the image drops straight in.
        image = encode_pack(pack, settings)
        registers[: len(image)] = image
        return None

    return answer


def _apply_write(pack: SimPack, settings: dict[int, int], address: int, values: list[int]) -> None:
    """Keep written settings, and let a written serial become the pack's own."""
    image = encode_pack(pack, settings)
    image[address : address + len(values)] = values
    for offset, value in enumerate(values):
        if address + offset < Register.MODEL_SN:
            settings[address + offset] = value
    pack.model = _untext(image[Register.MODEL_SN : Register.MODEL_SN + TEXT_REGISTERS])
    pack.serial = _untext(image[Register.PACK_SN : Register.PACK_SN + TEXT_REGISTERS])


def _device(unit: int, action: Action) -> SimDevice:
    return SimDevice(unit, start=0, size=MAP_SIZE, action=action)


async def start_server(bank: SimBank, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Serve ``bank`` as PACE Modbus V1.3 over Modbus TCP (port 0 picks a free one).

    Each pack answers at its own address as unit number, which must be
    1..247: unit 0 is Modbus broadcast, and the server uses it for the device
    that stands in for every unit number not listed.
    """
    silent: set[int] = set()
    devices = [_device(0, nobody_there)]
    for pack in bank.packs:
        if not 1 <= pack.address <= 247:
            raise ValueError(f"pack address {pack.address} is not a Modbus unit (1..247)")
        devices.append(_device(pack.address, _pack_action(bank, pack.address, silent)))
    server, bound_port = await listen(devices, host, port)
    return RunningServer(host=host, port=bound_port, bank=bank, _server=server, _silent=silent)
