"""Config flow: pick the wire, say where the bus is, scan it, confirm the packs.

Every wire the catalog has a family for gets a menu entry and a form, built
from the catalog: adding a family or a wire needs no code here. The scan
walks every address a family allows, which on a serial line costs a full
timeout per empty address; the user then confirms what was found.

A scan (or a listen) that ends within ``INLINE_WAIT`` is awaited in the step
itself and the flow goes straight on to what it found. Home Assistant's
frontend, on 2025.4 as on current versions, subscribes to the event that
announces a progress step's end only after the request that reached the step
has returned, so a step that ended first would leave the dialog spinning for
ever. A longer one shows a progress step whose end is announced no sooner
than ``PROGRESS_HOLD`` after it was shown, and announced again while nobody
has fetched the step after it, for a frontend that subscribed later still.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict
import ipaddress
import re
from typing import TYPE_CHECKING, Any, Final

from homeassistant.config_entries import ConfigEntryState, ConfigFlow, ConfigFlowResult
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import callback
from homeassistant.data_entry_flow import EVENT_DATA_ENTRY_FLOW_PROGRESSED, FlowResultType
from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
)
from homeassistant.helpers.typing import DiscoveryInfoType
from serial.tools.list_ports import comports
import voluptuous as vol

from .bank.model import PackIdentity
from .buses import CONF_LISTEN_ONLY, bus_registry, claimed_addresses
from .const import CONF_FAMILY, CONF_PACKS, DOMAIN, LOGGER
from .options_flow import RackBatteryOptionsFlow
from .protocol.bus import Bus
from .protocol.catalog import FAMILIES, families_on
from .protocol.connection import DEFAULT_PORTS, SERIAL_WIRES, TCP_WIRES, ConnectionSpec, Wire
from .protocol.discovery import Discovery, discover
from .protocol.errors import (
    BusUnavailable,
    FrameError,
    PackNotResponding,
    SerialPortBusy,
    SerialPortDenied,
    SerialPortMissing,
)
from .protocol.listen import detect_master, open_listener, source_for
from .rescan import DISCOVERY_ENTRY_ID, DISCOVERY_PACK, DISCOVERY_REPLACES

if TYPE_CHECKING:
    from homeassistant.config_entries import ConfigEntry

# The first family choice: try every family that speaks on the wire.
AUTO: Final = "auto"
CONF_SERIAL_PORT: Final = "serial_port"
CONF_BAUDRATE: Final = "baudrate"
CONF_CAN_INTERFACE: Final = "can_interface"
CONF_CAN_CHANNEL: Final = "can_channel"
# python-can interfaces a rack battery's CAN port is usually reached by: the
# kernel's own (a CAN HAT, a USB adapter with a kernel driver), a serial-line
# CAN adapter, and CAN carried over TCP by a socketcand daemon.
CAN_INTERFACES: Final = ("socketcan", "slcan", "socketcand")
# Rack batteries talk to inverters at 500 kbit/s (Pylontech's CAN protocol).
DEFAULT_CAN_BITRATE: Final = 500_000
BAUDRATES: Final = ("9600", "19200", "38400", "57600", "115200")
# A transparent gateway copies the RS485 line's bytes, so the line's speed
# decides how long a reply takes (protocol/timing.py). The gateway forms ask
# for it; "I don't know" leaves it out, and requests wait a flat second.
GATEWAY_WIRES: Final = frozenset({Wire.MODBUS_RTU_TCP, Wire.ASCII_TCP})
CONF_GATEWAY_BAUDRATE: Final = "gateway_baudrate"
UNKNOWN_BAUDRATE: Final = "unknown"
# The speeds a gateway's serial side offers. Another figure is taken for a
# typo: a speed given too high would cut replies off before they arrive.
GATEWAY_BAUDRATES: Final = frozenset(
    {1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600}
)
# Raw RTU lines may already have a master pack polling them (JK-PB at DIP 0,
# Seplos V3 at unit 0): before asking anything, the flow listens this long.
RTU_WIRES: Final = frozenset({Wire.MODBUS_RTU_SERIAL, Wire.MODBUS_RTU_TCP})
MASTER_WINDOW: Final = 2.0
# Listening for the packs ends after the master has gone round them, or after this.
LISTEN_WINDOW: Final = 30.0
# A scan or a listen that ends within this many seconds is awaited in the step
# itself, and the flow goes on without a progress step (see the module's doc).
INLINE_WAIT: Final = 3.0
# A progress step's end is announced no sooner than this after it was shown,
# so that the frontend has subscribed to the announcement by then ...
PROGRESS_HOLD: Final = 2.0
# ... and again after these pauses while nobody has fetched the next step.
REANNOUNCE: Final = (3.0, 10.0, 30.0)

# A host name as RFC 1123 allows it: labels of letters, digits and inner
# hyphens, separated by dots.
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$", re.IGNORECASE)


def _valid_host(host: str) -> bool:
    """Return whether a host is an IP address or a well-formed host name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOSTNAME.match(host)) and not host.replace(".", "").isdigit()
    return True


def bus_error(err: BusUnavailable) -> str:
    """Return the form error that tells the user what is wrong with the bus."""
    if isinstance(err, SerialPortMissing):
        return "serial_port_missing"
    if isinstance(err, SerialPortBusy):
        return "serial_port_busy"
    if isinstance(err, SerialPortDenied):
        return "serial_port_denied"
    return "cannot_connect"


def bank_unique_id(spec: ConnectionSpec, family: str, packs: list[PackIdentity]) -> str:
    """Return what names a bank: its bus, its family and its first pack's address.

    A bus can carry several banks (two families, or one family's addresses
    split between two entries), so the bus alone no longer names one.
    """
    return f"{spec.bus_key}#{family}#{min(pack.address for pack in packs)}"


def describe_pack(identity: PackIdentity) -> str:
    """Return one line about a pack, for the result screen."""
    details = [
        text
        for text in (
            identity.model,
            f"serial {identity.serial}" if identity.serial else None,
            f"firmware {identity.firmware}" if identity.firmware else None,
            f"{identity.cell_count} cells" if identity.cell_count else None,
            f"{identity.design_capacity:g} Ah" if identity.design_capacity else None,
        )
        if text
    ]
    return f"{identity.address}: " + (", ".join(details) or "no identity given")


def bus_schema(
    wire: Wire, *, serial_ports: list[SelectOptionDict], baudrate: int | None
) -> vol.Schema:
    """Return the fields that say where a bus on this wire is.

    ``baudrate`` is the speed offered first (a gateway's: None for "I don't know").
    """
    if wire in TCP_WIRES:
        schema = vol.Schema(
            {
                vol.Required(CONF_HOST): TextSelector(),
                vol.Required(CONF_PORT, default=DEFAULT_PORTS[wire]): NumberSelector(
                    NumberSelectorConfig(min=1, max=65535, mode=NumberSelectorMode.BOX)
                ),
            }
        )
        if wire not in GATEWAY_WIRES:
            return schema
        default = str(baudrate) if baudrate else UNKNOWN_BAUDRATE
        return schema.extend(
            {
                vol.Required(CONF_GATEWAY_BAUDRATE, default=default): SelectSelector(
                    SelectSelectorConfig(
                        options=[*BAUDRATES, UNKNOWN_BAUDRATE],
                        custom_value=True,
                        translation_key=CONF_GATEWAY_BAUDRATE,
                        mode=SelectSelectorMode.DROPDOWN,
                    )
                ),
            }
        )
    if wire in SERIAL_WIRES:
        return vol.Schema(
            {
                vol.Required(CONF_SERIAL_PORT): SelectSelector(
                    SelectSelectorConfig(
                        options=serial_ports, custom_value=True, mode=SelectSelectorMode.DROPDOWN
                    )
                ),
                vol.Required(CONF_BAUDRATE, default=str(baudrate or 9600)): SelectSelector(
                    SelectSelectorConfig(
                        options=list(BAUDRATES), custom_value=True, mode=SelectSelectorMode.DROPDOWN
                    )
                ),
            }
        )
    return vol.Schema(
        {
            vol.Required(CONF_CAN_INTERFACE, default=CAN_INTERFACES[0]): SelectSelector(
                SelectSelectorConfig(
                    options=list(CAN_INTERFACES),
                    translation_key=CONF_CAN_INTERFACE,
                    mode=SelectSelectorMode.LIST,
                )
            ),
            vol.Required(CONF_CAN_CHANNEL): TextSelector(),
            vol.Required(CONF_BAUDRATE, default=DEFAULT_CAN_BITRATE): NumberSelector(
                NumberSelectorConfig(min=10_000, max=1_000_000, mode=NumberSelectorMode.BOX)
            ),
        }
    )


def spec_from_input(wire: Wire, user_input: dict[str, Any]) -> ConnectionSpec | str:
    """Return the spec the form describes, or the error of the field that is wrong."""
    if wire in TCP_WIRES:
        return _tcp_spec(wire, user_input)
    if wire in SERIAL_WIRES:
        try:
            baudrate = int(str(user_input[CONF_BAUDRATE]).strip())
        except ValueError:
            return "invalid_baudrate"
        if baudrate <= 0:
            return "invalid_baudrate"
        return ConnectionSpec(
            wire=wire, serial_port=str(user_input[CONF_SERIAL_PORT]).strip(), baudrate=baudrate
        )
    return ConnectionSpec(
        wire=wire,
        can_interface=str(user_input[CONF_CAN_INTERFACE]),
        can_channel=str(user_input[CONF_CAN_CHANNEL]).strip(),
        baudrate=int(user_input[CONF_BAUDRATE]),
    )


def _tcp_spec(wire: Wire, user_input: dict[str, Any]) -> ConnectionSpec | str:
    """Return the spec of a TCP form (a gateway's with its line's speed), or the error."""
    host = str(user_input[CONF_HOST]).strip()
    if not _valid_host(host):
        return "invalid_host"
    speed = _gateway_speed(user_input) if wire in GATEWAY_WIRES else None
    if isinstance(speed, str):
        return speed
    return ConnectionSpec(wire=wire, host=host, port=int(user_input[CONF_PORT]), baudrate=speed)


def _gateway_speed(user_input: dict[str, Any]) -> int | str | None:
    """Return the RS485 speed behind a gateway, None if not known, or the form error."""
    given = str(user_input.get(CONF_GATEWAY_BAUDRATE, UNKNOWN_BAUDRATE)).strip()
    if given == UNKNOWN_BAUDRATE:
        return None
    try:
        speed = int(given)
    except ValueError:
        return "invalid_gateway_baudrate"
    return speed if speed in GATEWAY_BAUDRATES else "invalid_gateway_baudrate"


def _error_field(wire: Wire, error: str) -> str:
    """Return the field a form error belongs to."""
    if error == "invalid_host":
        return CONF_HOST
    if error == "invalid_baudrate":
        return CONF_BAUDRATE
    if error == "invalid_gateway_baudrate":
        return CONF_GATEWAY_BAUDRATE
    if error.startswith("serial_port") and wire in SERIAL_WIRES:
        return CONF_SERIAL_PORT
    return "base"


class RackBatteryConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up a bank of parallel packs."""

    VERSION = 1

    @staticmethod
    def async_get_options_flow(config_entry: ConfigEntry) -> RackBatteryOptionsFlow:
        """Return the flow that sets what the bank's rules judge by."""
        return RackBatteryOptionsFlow()

    def __init__(self) -> None:
        """Start with nothing chosen."""
        self._wire = Wire.MODBUS_TCP
        self._spec: ConnectionSpec | None = None
        self._families: list[str] = []
        self._last_input: dict[str, Any] | None = None
        self._scan_task: asyncio.Task[Discovery | None] | None = None
        self._scan_error: str | None = None
        self._found: Discovery | None = None
        self._new_pack: tuple[str, PackIdentity, PackIdentity | None] | None = None
        self._master_heard = False
        self._listen_only = False
        self._listen_task: asyncio.Task[Discovery | None] | None = None
        self._listen_error: str | None = None
        # The task a progress step shows: a scan or a listen, held back (see
        # _held), and the one that announces the step's end again.
        self._held: asyncio.Task[None] | None = None
        self._announcer: asyncio.Task[None] | None = None

    @callback
    def async_remove(self) -> None:
        """Stop whatever still runs for a flow the user closed."""
        for task in (self._scan_task, self._listen_task, self._held, self._announcer):
            if task is not None and not task.done():
                task.cancel()

    async def _async_start(
        self, work: Coroutine[Any, Any, Discovery | None]
    ) -> tuple[asyncio.Task[Discovery | None], bool]:
        """Start a scan or a listen; return it, and whether it ended within INLINE_WAIT."""
        task = self.hass.async_create_task(work)
        self._held = None
        if INLINE_WAIT > 0:
            await asyncio.wait({task}, timeout=INLINE_WAIT)
        return task, task.done()

    def _held_task(self, task: asyncio.Task[Discovery | None]) -> asyncio.Task[None]:
        """Return the task a progress step for ``task`` shows; the same one each time."""
        if self._held is None:
            self._held = self.hass.async_create_background_task(
                _held(task, PROGRESS_HOLD), f"{DOMAIN} config flow {self.flow_id} progress"
            )
        return self._held

    def _progress_done(self, next_step_id: str) -> ConfigFlowResult:
        """End a progress step, and announce its end again until the frontend moved on."""
        if self._announcer is not None:
            self._announcer.cancel()
        self._announcer = self.hass.async_create_background_task(
            self._async_announce_again(), f"{DOMAIN} config flow {self.flow_id} announcer"
        )
        return self.async_show_progress_done(next_step_id=next_step_id)

    async def _async_announce_again(self) -> None:
        """Tell the frontend again that the flow moved on, while it has not fetched it.

        Home Assistant announces a progress step's end once; a frontend that
        subscribed only after that would wait for ever. Once the step after
        it has been fetched, the flow's current step is that one, and
        nothing more is said.
        """
        for pause in REANNOUNCE:
            await asyncio.sleep(pause)
            if self.cur_step is None or self.cur_step["type"] != FlowResultType.SHOW_PROGRESS_DONE:
                return
            self.hass.bus.async_fire(
                EVENT_DATA_ENTRY_FLOW_PROGRESSED,
                {"handler": self.handler, "flow_id": self.flow_id, "refresh": True},
            )

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask how the bank's bus reaches Home Assistant."""
        return self.async_show_menu(
            step_id="user", menu_options=[wire.value for wire in Wire if families_on(wire)]
        )

    async def async_step_modbus_tcp(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Set up a bank behind a Modbus TCP gateway."""
        return await self._async_step_bus(Wire.MODBUS_TCP, user_input)

    async def async_step_modbus_rtu_tcp(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Set up a bank behind a transparent gateway forwarding Modbus RTU."""
        return await self._async_step_bus(Wire.MODBUS_RTU_TCP, user_input)

    async def async_step_modbus_rtu_serial(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Set up a bank on a USB RS485 adapter speaking Modbus RTU."""
        return await self._async_step_bus(Wire.MODBUS_RTU_SERIAL, user_input)

    async def async_step_ascii_tcp(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Set up a bank behind a transparent RS485-to-TCP gateway."""
        return await self._async_step_bus(Wire.ASCII_TCP, user_input)

    async def async_step_ascii_serial(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Set up a bank on a USB RS485 adapter speaking the Pylon protocol."""
        return await self._async_step_bus(Wire.ASCII_SERIAL, user_input)

    async def async_step_can(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Set up a bank on a CAN interface."""
        return await self._async_step_bus(Wire.CAN, user_input)

    async def _async_step_bus(
        self, wire: Wire, user_input: dict[str, Any] | None
    ) -> ConfigFlowResult:
        """Ask where the bus is and which family, check the bus opens, then scan."""
        # Coming back from a progress step, the frontend posts an empty form:
        # that is a request to show this step, not an answer to it.
        user_input = user_input or None
        self._wire = wire
        families = [family.key for family in families_on(wire)]
        errors: dict[str, str] = {}
        if user_input is None and self._scan_error is not None:
            # Back from a scan that failed: show why, over what was entered.
            errors[_error_field(wire, self._scan_error)] = self._scan_error
            self._scan_error = None
            user_input = self._last_input
        elif user_input is not None:
            self._last_input = user_input
            spec = spec_from_input(wire, user_input)
            family = user_input[CONF_FAMILY]
            if isinstance(spec, str):
                errors[_error_field(wire, spec)] = spec
            elif error := await self._async_open(spec):
                errors[_error_field(wire, error)] = error
            else:
                self._spec = spec
                self._families = families if family == AUTO else [family]
                self._scan_task = None  # a new scan for what was just entered
                return await self.async_step_scan()

        serial_ports: list[SelectOptionDict] = []
        if wire in SERIAL_WIRES:
            serial_ports = await self.hass.async_add_executor_job(_serial_ports)
        # The first family's speed, as on a serial port; behind a gateway,
        # "I don't know" where the family names none.
        default_baudrate = FAMILIES[families[0]].default_baudrate
        schema = bus_schema(wire, serial_ports=serial_ports, baudrate=default_baudrate).extend(
            {
                vol.Required(CONF_FAMILY, default=AUTO): SelectSelector(
                    SelectSelectorConfig(
                        options=[AUTO, *families],
                        translation_key=CONF_FAMILY,
                        mode=SelectSelectorMode.LIST,
                    )
                ),
            }
        )
        where = ""
        if user_input is not None and not isinstance(
            spec := spec_from_input(wire, user_input), str
        ):
            where = spec.where
        return self.async_show_form(
            step_id=wire.value,
            data_schema=self.add_suggested_values_to_schema(schema, user_input),
            errors=errors,
            description_placeholders={"where": where},
        )

    async def _async_open(self, spec: ConnectionSpec) -> str | None:
        """Check the bus opens, returning the error if it does not.

        Opening is quick (a TCP connect, a serial port), so it is done here,
        and a wrong host or a missing port is told on the form at once rather
        than after a scan.
        """
        buses = bus_registry(self.hass)
        bus = buses.borrow(spec, self.flow_id)
        try:
            await bus.transport(spec).connect()
        except BusUnavailable as err:
            LOGGER.debug("Cannot open %s: %s", spec.where, err)
            return bus_error(err)
        finally:
            await buses.give_back(bus, self.flow_id)
        return None

    async def async_step_scan(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Walk the bus's addresses, then show what answered; a long walk shows progress."""
        assert self._spec is not None
        if self._scan_task is None:
            self._scan_task, ended = await self._async_start(self._async_scan(self._spec))
            if ended:
                return await self._async_step_to(self._scan_outcome())
        held = self._held_task(self._scan_task)
        if not held.done():
            return self.async_show_progress(
                step_id="scan",
                progress_action="scan",
                progress_task=held,
                description_placeholders={"where": self._spec.where},
            )
        # The task stays: Home Assistant may call this step again once the
        # scan has ended (newer versions do so by themselves), and the answer
        # must be the same one, not a second scan.
        return self._progress_done(self._scan_outcome())

    def _scan_outcome(self) -> str:
        """Return the step that follows the ended scan, keeping what it found or why not."""
        assert self._spec is not None
        assert self._scan_task is not None
        try:
            found = self._scan_task.result()
        except BusUnavailable as err:
            LOGGER.debug("Lost %s while scanning: %s", self._spec.where, err)
            self._scan_error = bus_error(err)
            return self._wire.value
        if self._master_heard:
            # Another master polls this line: asking would talk over it.
            return "master_found"
        if found is None:
            if claimed_addresses(self._async_current_entries(), self._spec):
                # Everything that answers on this bus already belongs to a
                # bank. A progress step may not end in an abort itself.
                return "all_set_up"
            self._scan_error = "no_packs_found"
            return self._wire.value
        self._found = found
        return "confirm"

    async def _async_step_to(self, step_id: str) -> ConfigFlowResult:
        """Show a step straight away, as a progress step's end would lead to it."""
        step: Callable[[dict[str, Any] | None], Awaitable[ConfigFlowResult]] = getattr(
            self, f"async_step_{step_id}"
        )
        return await step(None)

    async def async_step_all_set_up(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """End a scan that found only packs of banks already set up."""
        return self.async_abort(reason="already_configured")

    async def _async_scan(self, spec: ConnectionSpec) -> Discovery | None:
        """Scan on the shared bus, leaving out addresses other banks already hold."""
        buses = bus_registry(self.hass)
        # A bank of ours already polls this line without colliding, so no
        # other master is on it; and its traffic is not a master's.
        if spec.wire in RTU_WIRES and buses.get(spec) is None:
            baudrate = FAMILIES[self._families[0]].default_baudrate
            if await detect_master(source_for(spec, baudrate=baudrate), window=MASTER_WINDOW):
                self._master_heard = True
                return None
        bus: Bus = buses.borrow(spec, self.flow_id)
        update = getattr(self, "async_update_progress", None)  # Home Assistant 2025.6+
        try:
            return await discover(
                bus,
                spec,
                self._families,
                skip=claimed_addresses(self._async_current_entries(), spec),
                progress=update,
            )
        finally:
            await buses.give_back(bus, self.flow_id)

    async def async_step_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """List the packs found; the user picks which belong to this bank."""
        # Coming back from a progress step, the frontend posts an empty form:
        # that is a request to show this step, not an answer to it.
        user_input = user_input or None
        assert self._spec is not None
        assert self._found is not None
        found = {str(pack.address): pack for pack in self._found.packs}
        family = FAMILIES[self._found.family]
        if user_input is not None:
            packs = [found[address] for address in user_input[CONF_PACKS] if address in found]
            if packs:
                packs.sort(key=lambda pack: pack.address)
                await self.async_set_unique_id(bank_unique_id(self._spec, family.key, packs))
                self._abort_if_unique_id_configured()
                return self.async_create_entry(
                    title=self._title(family.manufacturer, packs),
                    data={
                        **self._spec.as_dict(),
                        CONF_FAMILY: family.key,
                        CONF_PACKS: [asdict(pack) for pack in packs],
                        **({CONF_LISTEN_ONLY: True} if self._listen_only else {}),
                    },
                )
        schema = vol.Schema(
            {
                vol.Required(CONF_PACKS, default=list(found)): SelectSelector(
                    SelectSelectorConfig(
                        options=[
                            SelectOptionDict(value=key, label=describe_pack(pack))
                            for key, pack in found.items()
                        ],
                        multiple=True,
                        mode=SelectSelectorMode.LIST,
                    )
                )
            }
        )
        return self.async_show_form(
            step_id="confirm",
            data_schema=schema,
            errors={"base": "no_pack_chosen"} if user_input is not None else {},
            description_placeholders={
                "family": family.name,
                "where": self._spec.where,
                "count": str(len(found)),
            },
        )

    async def async_step_master_found(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Explain that a master pack polls the line, and offer to listen to it instead."""
        # Coming back from a progress step, the frontend posts an empty form:
        # that is a request to show this step, not an answer to it.
        user_input = user_input or None
        assert self._spec is not None
        families = [family.key for family in families_on(self._wire) if family.listen_only]
        errors: dict[str, str] = {}
        if self._listen_error is not None:
            errors["base"], self._listen_error = self._listen_error, None
        elif user_input is not None:
            self._families = [user_input[CONF_FAMILY]]
            self._listen_only = True
            self._listen_task = None  # a new listen for what was just chosen
            return await self.async_step_listen()
        default = next((key for key in self._families if key in families), families[0])
        schema = vol.Schema(
            {
                vol.Required(CONF_FAMILY, default=default): SelectSelector(
                    SelectSelectorConfig(
                        options=families,
                        translation_key=CONF_FAMILY,
                        mode=SelectSelectorMode.LIST,
                    )
                ),
            }
        )
        return self.async_show_form(
            step_id="master_found",
            data_schema=schema,
            errors=errors,
            description_placeholders={"where": self._spec.where},
        )

    async def async_step_listen(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Listen to the master's polls, then show the packs heard; a long listen shows progress."""
        assert self._spec is not None
        if self._listen_task is None:
            self._listen_task, ended = await self._async_start(
                self._async_listen(self._spec, self._families[0])
            )
            if ended:
                return await self._async_step_to(self._listen_outcome())
        held = self._held_task(self._listen_task)
        if not held.done():
            return self.async_show_progress(
                step_id="listen",
                progress_action="listen",
                progress_task=held,
                description_placeholders={"where": self._spec.where},
            )
        # Kept, as with the scan: calling this step again must not listen again.
        return self._progress_done(self._listen_outcome())

    def _listen_outcome(self) -> str:
        """Return the step that follows the ended listen, keeping what it heard or why not."""
        assert self._spec is not None
        assert self._listen_task is not None
        try:
            found = self._listen_task.result()
        except BusUnavailable as err:
            LOGGER.debug("Cannot listen on %s: %s", self._spec.where, err)
            self._listen_error = bus_error(err)
            return "master_found"
        if found is None:
            self._listen_error = "nothing_heard"
            return "master_found"
        self._found = found
        return "confirm"

    async def _async_listen(self, spec: ConnectionSpec, family: str) -> Discovery | None:
        """Hear which packs answer the master, leaving out those other banks hold."""
        listener = open_listener(spec, family)
        await listener.connect()
        try:
            heard = await listener.hear(within=LISTEN_WINDOW)
            skip = claimed_addresses(self._async_current_entries(), spec)
            packs: list[PackIdentity] = []
            for address in heard:
                if address in skip:
                    continue
                try:
                    packs.append(await listener.read_identity(address))
                except (PackNotResponding, BusUnavailable):
                    continue
        finally:
            await listener.close()
        return Discovery(family=family, packs=tuple(packs)) if packs else None

    def _title(self, manufacturer: str, packs: list[PackIdentity]) -> str:
        """Return the bank's name, told apart from another bank of the same make."""
        title = f"{manufacturer} bank"
        if any(entry.title == title for entry in self._async_current_entries()):
            first, last = packs[0].address, packs[-1].address
            title = f"{title} {first}" if first == last else f"{title} {first}-{last}"
        return title

    async def async_step_integration_discovery(
        self, discovery_info: DiscoveryInfoType
    ) -> ConfigFlowResult:
        """Offer a pack that a rescan found to the bank whose bus it is on."""
        entry = self.hass.config_entries.async_get_entry(discovery_info[DISCOVERY_ENTRY_ID])
        if entry is None:
            return self.async_abort(reason="bank_gone")
        pack = PackIdentity(**discovery_info[DISCOVERY_PACK])
        replaces = discovery_info.get(DISCOVERY_REPLACES)
        # One offer per pack, however many rescans find it before the user looks.
        await self.async_set_unique_id(f"{entry.unique_id}#pack#{pack.key}")
        self._abort_if_unique_id_configured()
        self._new_pack = (entry.entry_id, pack, PackIdentity(**replaces) if replaces else None)
        self.context["title_placeholders"] = {
            "bank": entry.title,
            "address": str(pack.address),
        }
        return await self.async_step_add_pack()

    async def async_step_add_pack(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask before adding the pack to its bank; the bank then reloads."""
        assert self._new_pack is not None
        entry_id, pack, replaces = self._new_pack
        entry = self.hass.config_entries.async_get_entry(entry_id)
        if entry is None:
            return self.async_abort(reason="bank_gone")
        if user_input is not None:
            packs = [p for p in entry.data[CONF_PACKS] if p["address"] != pack.address]
            packs.append(asdict(pack))
            packs.sort(key=lambda p: int(p["address"]))
            return self._async_update_and_abort(
                entry, data={**entry.data, CONF_PACKS: packs}, reason="pack_added"
            )
        return self.async_show_form(
            step_id="add_pack" if replaces is None else "replace_pack",
            description_placeholders={
                "bank": entry.title,
                "address": str(pack.address),
                "pack": describe_pack(pack),
                "old_serial": (replaces.serial or "") if replaces else "",
            },
        )

    async def async_step_replace_pack(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask before taking a swapped pack in under its address."""
        return await self.async_step_add_pack(user_input)

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Move an existing bank to another host, port or serial port.

        The bank keeps its packs and devices; the new bus must answer for at
        least one of them with the same serial, so that a typo cannot put
        another bank's numbers under this bank's packs.
        """
        entry = self._get_reconfigure_entry()
        old = ConnectionSpec.from_dict(entry.data)
        wire = old.wire
        errors: dict[str, str] = {}
        if user_input is not None:
            spec = spec_from_input(wire, user_input)
            if isinstance(spec, str):
                errors[_error_field(wire, spec)] = spec
            elif error := await self._async_check_same_bank(entry, spec):
                errors[_error_field(wire, error)] = error
            else:
                packs = [PackIdentity(**pack) for pack in entry.data[CONF_PACKS]]
                data = {key: value for key, value in entry.data.items() if key not in old.as_dict()}
                return self._async_update_and_abort(
                    entry,
                    unique_id=bank_unique_id(spec, entry.data[CONF_FAMILY], packs),
                    data={**data, **spec.as_dict()},
                    reason="reconfigure_successful",
                )
        serial_ports: list[SelectOptionDict] = []
        if wire in SERIAL_WIRES:
            serial_ports = await self.hass.async_add_executor_job(_serial_ports)
        schema = bus_schema(wire, serial_ports=serial_ports, baudrate=old.baudrate)
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(schema, user_input or _spec_input(old)),
            errors=errors,
            description_placeholders={"where": old.where},
        )

    def _async_update_and_abort(
        self,
        entry: ConfigEntry,
        *,
        data: dict[str, Any],
        reason: str,
        unique_id: str | None = None,
    ) -> ConfigFlowResult:
        """Change a bank's entry and end the flow; the bank's own listener reloads it.

        A running bank reloads itself when its entry's data changes (see the
        coordinator's update listener); reloading it from here as well is what
        Home Assistant reports from 2026.6 on and refuses from 2026.12. Only a
        bank that is not running (waiting to retry its setup, or failed) has
        no listener, and is set up again here with what was changed.
        ConfigFlow.async_update_and_abort does the same minus that retry, but
        Home Assistant 2025.4 does not have it.
        """
        changed = self.hass.config_entries.async_update_entry(
            entry, data=data, unique_id=unique_id or entry.unique_id
        )
        if changed and entry.state in (ConfigEntryState.SETUP_RETRY, ConfigEntryState.SETUP_ERROR):
            self.hass.config_entries.async_schedule_reload(entry.entry_id)
        return self.async_abort(reason=reason)

    async def _async_check_same_bank(self, entry: ConfigEntry, spec: ConnectionSpec) -> str | None:
        """Return an error unless one of the bank's packs answers on the new bus as itself."""
        family = entry.data[CONF_FAMILY]
        if entry.data.get(CONF_LISTEN_ONLY):
            return await self._async_hear_same_bank(entry, spec)
        buses = bus_registry(self.hass)
        bus = buses.borrow(spec, self.flow_id)
        try:
            known = [PackIdentity(**pack) for pack in entry.data[CONF_PACKS]]
            driver = FAMILIES[family].driver(bus.transport(spec))
            await driver.connect()
            answered = False
            for pack in known:
                async with bus.turn():
                    try:
                        identity = await driver.read_identity(pack.address)
                    except (PackNotResponding, FrameError):
                        continue
                answered = True
                if identity.serial == pack.serial:
                    return None
            return "another_bank" if answered else "no_packs_found"
        except BusUnavailable as err:
            return bus_error(err)
        finally:
            await buses.give_back(bus, self.flow_id)

    async def _async_hear_same_bank(self, entry: ConfigEntry, spec: ConnectionSpec) -> str | None:
        """Return an error unless the master is heard polling one of a listen-only bank's packs.

        Listening carries no serial numbers, so the pack's address is all
        there is to go by; asking for one would talk over the master.
        """
        listener = open_listener(spec, entry.data[CONF_FAMILY])
        try:
            await listener.connect()
            known = [int(pack["address"]) for pack in entry.data[CONF_PACKS]]
            heard = await listener.hear(within=LISTEN_WINDOW, addresses=known)
        except BusUnavailable as err:
            return bus_error(err)
        finally:
            await listener.close()
        return None if set(heard) & set(known) else "no_packs_found"


async def _held(task: asyncio.Task[Discovery | None], hold: float) -> None:
    """Wait for ``task``, and end no sooner than ``hold`` seconds from now.

    The task's own outcome (an error included) is read by the step, not here.
    """
    loop = asyncio.get_running_loop()
    until = loop.time() + hold
    await asyncio.wait({task})
    if (left := until - loop.time()) > 0:
        await asyncio.sleep(left)


def _spec_input(spec: ConnectionSpec) -> dict[str, Any]:
    """Return a spec as the form's fields, to prefill the reconfigure form."""
    values = spec.as_dict()
    values.pop("wire")
    if CONF_BAUDRATE in values and spec.wire in SERIAL_WIRES:
        values[CONF_BAUDRATE] = str(values[CONF_BAUDRATE])
    if spec.wire in GATEWAY_WIRES:
        # An entry from before the question was asked has none: "I don't know".
        speed = values.pop(CONF_BAUDRATE, None)
        values[CONF_GATEWAY_BAUDRATE] = str(speed) if speed else UNKNOWN_BAUDRATE
    return values


def _serial_ports() -> list[SelectOptionDict]:
    """Return the serial ports of this machine (blocking: run in the executor).

    The description and maker tell two USB adapters apart, since a ttyUSB
    number says nothing about which adapter it is.
    """
    options: list[SelectOptionDict] = []
    for port in comports():
        label = " - ".join(
            text
            for text in (port.device, port.description, port.manufacturer)
            if text and text != "n/a"
        )
        options.append(SelectOptionDict(value=port.device, label=label))
    return options
