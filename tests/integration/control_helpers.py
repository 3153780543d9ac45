"""A bank with a write path on a real wire, and what a user could do to it.

Shared by the control, rejoin, policy and listen-only tests: each family
with a write path served by the simulator behind a wiretap that records
every request frame reaching the line; and every action on every pack,
each way, and every switch and number control would create, aimed at by
the entity ids it would give them. The tests then ask the wire whether any
of it got through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
import contextlib
from dataclasses import dataclass
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import ATTR_DEVICE_ID, ATTR_ENTITY_ID
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
import pytest

from custom_components.rack_battery.const import DOMAIN
from custom_components.rack_battery.protocol.catalog import control_of
from custom_components.rack_battery.switch import switch_descriptions
from simulator import (
    jk_pb as sim_jk,
    pace_ascii as sim_pace,
    pylontech_ascii as sim_pylon,
    seplos_v3 as sim_seplos,
    sunspec_line as sim_sunspec,
)
from simulator.bank import SimBank, constant_load, make_bank
from simulator.modbus_line import ModbusLine
from simulator.wiretap import Wiretap, start_wiretap

# Every family whose BMS can be written to, each served on its own wire.
WRITE_FAMILIES = ("pace_ascii", "pylontech_rs485", "jk_pb", "seplos_v3", "sunspec")


def pace_write(frame: bytes) -> bool:
    """Return whether a PACE ASCII request switches a FET (CID2 0x9A / 0x9B)."""
    return frame[7:9] in (b"9A", b"9B")


def pylon_write(frame: bytes) -> bool:
    """Return whether a Pylontech request sends charge and discharge limits (0x94)."""
    return frame[7:9] == b"94"


def rtu_write(frame: bytes) -> bool:
    """Return whether a Modbus RTU request writes registers (function 0x06 or 0x10)."""
    return len(frame) > 1 and frame[1] in (0x06, 0x10)


@dataclass
class ControlBus:
    """A simulated bank behind a wiretap, and how its write frames look."""

    family: str
    wire: str
    bank: SimBank
    tap: Wiretap
    is_write: Callable[[bytes], bool]
    # The switch keys each pack gets, as the catalog offers them.
    switches: tuple[str, ...]

    def writes(self) -> list[bytes]:
        """Return every write request that reached the line."""
        return [frame for frame in self.tap.requests if self.is_write(frame)]

    @property
    def addresses(self) -> list[int]:
        """Return the packs' addresses, in the bank's order."""
        return [pack.address for pack in self.bank.packs]


def _bank(first_address: int) -> SimBank:
    bank = make_bank(3, first_address=first_address, seed=5, load=constant_load(0.0))
    for pack in bank.packs:
        pack.soc = 0.6
    bank.step(0.0)
    return bank


@contextlib.asynccontextmanager
async def serve(family: str, first_address: int | None = None) -> AsyncIterator[ControlBus]:
    """Serve three packs of a family with a write path, behind a wiretap.

    PACE and Pylontech ASCII through a transparent TCP gateway, the Modbus
    families as RTU over TCP. A Seplos bank's packs from unit 1 (its master
    at unit 0, the broadcast address, is never written to) and a SunSpec
    device's strings from 1; the others start at 2.
    """
    server: Any = None
    line: ModbusLine | None = None
    switches = tuple(d.key for d in switch_descriptions(control_of(family)))
    if family in ("pace_ascii", "pylontech_rs485"):
        bank = _bank(2 if first_address is None else first_address)
        module = sim_pace if family == "pace_ascii" else sim_pylon
        server = await module.start_server(bank)
        host, port = server.host, server.port
        wire, is_write = "ascii_tcp", pace_write if family == "pace_ascii" else pylon_write
    else:
        bank = _bank(
            first_address
            if first_address is not None
            else {"jk_pb": 2, "seplos_v3": 1, "sunspec": 1}[family]
        )
        make = {"jk_pb": sim_jk.make_line, "seplos_v3": sim_seplos.make_line}.get(
            family, sim_sunspec.make_line
        )
        line = make(bank)
        host, port = await line.serve_rtu_tcp()
        wire, is_write = "modbus_rtu_tcp", rtu_write
    tap = await start_wiretap(host, port)
    try:
        yield ControlBus(family, wire, bank, tap, is_write, switches)
    finally:
        await tap.stop()
        if server is not None:
            await server.stop()
        if line is not None:
            await line.stop()


# Each pack's switches and numbers, by the end of the entity ids control
# would give them.
CONTROL_ENTITIES = (
    ("switch", "charging_allowed"),
    ("switch", "discharging_allowed"),
    ("switch", "connected"),
    ("number", "max_charge_current"),
    ("number", "max_discharge_current"),
)

# Every action, each way.
ACTIONS: tuple[tuple[str, dict[str, float]], ...] = (
    ("isolate_pack", {}),
    ("reconnect_pack", {}),
    ("set_current_limit", {"charge_limit": 0.0}),
    ("set_current_limit", {"discharge_limit": 0.0}),
    ("set_current_limit", {"charge_limit": 10.0, "discharge_limit": 10.0}),
)


def assert_no_control_entities(hass: HomeAssistant, entry: ConfigEntry) -> None:
    """No switch and no number, neither as a state nor in the registry."""
    assert hass.states.async_entity_ids(("switch", "number")) == []
    registered = er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    assert [e.entity_id for e in registered if e.domain in ("switch", "number")] == []


async def try_every_control(hass: HomeAssistant, entry: ConfigEntry, prefix: str) -> None:
    """Call every action on every pack and toggle every control a user could reach.

    Each action must be refused as control being off. The switch and number
    platforms are loaded as other integrations load them in a real Home
    Assistant, so their services exist; the entities they are aimed at
    (``<domain>.<prefix>_pack_<address>_<key>``) do not.
    """
    for domain in ("switch", "number"):
        assert await async_setup_component(hass, domain, {})
    controller = entry.runtime_data.coordinator.controller
    for address in entry.runtime_data.coordinator.packs:
        device_id = controller.pack_device_id(address)
        assert device_id is not None
        for service, data in ACTIONS:
            with pytest.raises(ServiceValidationError) as refused:
                await hass.services.async_call(
                    DOMAIN, service, {ATTR_DEVICE_ID: device_id, **data}, blocking=True
                )
            assert refused.value.translation_key == "control_disabled"
        for domain, key in CONTROL_ENTITIES:
            target = {ATTR_ENTITY_ID: f"{domain}.{prefix}_pack_{address}_{key}"}
            if domain == "switch":
                for turn in ("turn_off", "turn_on", "toggle"):
                    await hass.services.async_call(domain, turn, target, blocking=True)
            else:
                await hass.services.async_call(
                    domain, "set_value", {**target, "value": 0}, blocking=True
                )
    await hass.async_block_till_done()
