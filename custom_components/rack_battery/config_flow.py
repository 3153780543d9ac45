"""Config flow: pick the wire, point at the gateway, scan for the packs."""

from __future__ import annotations

from dataclasses import asdict
import ipaddress
import re
from typing import Any

from homeassistant.config_entries import ConfigFlow, ConfigFlowResult
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
)
import voluptuous as vol

from .bank.model import PackIdentity
from .const import CONF_FAMILY, CONF_PACKS, DOMAIN, LOGGER, RESPONSE_TIMEOUT
from .protocol.catalog import FAMILIES, families_on, open_driver
from .protocol.connection import DEFAULT_PORTS, ConnectionSpec, Wire
from .protocol.errors import BusUnavailable

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


async def scan_bank(spec: ConnectionSpec, family: str) -> list[PackIdentity]:
    """Connect to the bus and return the packs that answer.

    Raises BusUnavailable when the bus cannot be reached.
    """
    driver = open_driver(spec, family, timeout=RESPONSE_TIMEOUT)
    await driver.connect()
    try:
        return await driver.scan()
    finally:
        await driver.close()


class RackBatteryConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up a bank of parallel packs."""

    VERSION = 1

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask how the bank's bus reaches Home Assistant."""
        return self.async_show_menu(
            step_id="user", menu_options=[wire.value for wire in Wire if families_on(wire)]
        )

    async def async_step_modbus_tcp(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Set up a bank behind a Modbus TCP gateway."""
        return await self._async_step_tcp(Wire.MODBUS_TCP, user_input)

    async def async_step_ascii_tcp(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Set up a bank behind a transparent RS485-to-TCP gateway."""
        return await self._async_step_tcp(Wire.ASCII_TCP, user_input)

    async def _async_step_tcp(
        self, wire: Wire, user_input: dict[str, Any] | None
    ) -> ConfigFlowResult:
        """Ask for the gateway and the family, then scan the bus for packs."""
        errors: dict[str, str] = {}
        placeholders = {"host": "", "port": ""}
        if user_input is not None:
            host = user_input[CONF_HOST].strip()
            port = int(user_input[CONF_PORT])
            family = user_input[CONF_FAMILY]
            placeholders = {"host": host, "port": str(port)}
            if not _valid_host(host):
                errors[CONF_HOST] = "invalid_host"
            else:
                await self.async_set_unique_id(f"{host.lower()}:{port}")
                self._abort_if_unique_id_configured()
                try:
                    spec = ConnectionSpec(wire=wire, host=host, port=port)
                    packs = await scan_bank(spec, family)
                except BusUnavailable as err:
                    LOGGER.debug("Cannot reach %s:%s: %s", host, port, err)
                    errors["base"] = "cannot_connect"
                else:
                    if not packs:
                        errors["base"] = "no_packs_found"
                    else:
                        return self.async_create_entry(
                            title=f"{FAMILIES[family].manufacturer} bank",
                            data={
                                **spec.as_dict(),
                                CONF_FAMILY: family,
                                CONF_PACKS: [asdict(pack) for pack in packs],
                            },
                        )

        families = families_on(wire)
        schema = vol.Schema(
            {
                vol.Required(CONF_HOST): TextSelector(),
                vol.Required(CONF_PORT, default=DEFAULT_PORTS[wire]): NumberSelector(
                    NumberSelectorConfig(min=1, max=65535, mode=NumberSelectorMode.BOX)
                ),
                vol.Required(CONF_FAMILY, default=families[0].key): SelectSelector(
                    SelectSelectorConfig(
                        options=[family.key for family in families],
                        translation_key=CONF_FAMILY,
                        mode=SelectSelectorMode.LIST,
                    )
                ),
            }
        )
        return self.async_show_form(
            step_id=wire.value,
            data_schema=self.add_suggested_values_to_schema(schema, user_input),
            errors=errors,
            description_placeholders=placeholders,
        )
