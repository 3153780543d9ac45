"""The actions that isolate, reconnect and throttle a pack, aimed at its device.

Each action goes through the same guard and the same read-back as the
switches (controller.py); a bank whose user has not turned control on
refuses every one of them, having written nothing.

``reconnect_pack`` with ``when_matched`` holds a reconnect the guard refuses
only for the voltage difference, until a poll it allows;
``cancel_rejoin`` (or ``isolate_pack``) cancels it.
"""

from __future__ import annotations

from homeassistant.const import ATTR_DEVICE_ID
from homeassistant.core import HomeAssistant, ServiceCall, callback
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv, device_registry as dr
import voluptuous as vol

from .bank.control import Change
from .const import DOMAIN
from .controller import BankController
from .coordinator import RackBatteryConfigEntry
from .entity import pack_device_key

SERVICE_ISOLATE = "isolate_pack"
SERVICE_RECONNECT = "reconnect_pack"
SERVICE_SET_CURRENT_LIMIT = "set_current_limit"
SERVICE_CANCEL_REJOIN = "cancel_rejoin"
ATTR_WHEN_MATCHED = "when_matched"
ATTR_CHARGE_LIMIT = "charge_limit"
ATTR_DISCHARGE_LIMIT = "discharge_limit"

_DEVICE = vol.All(cv.ensure_list, vol.Length(min=1, max=1), [cv.string])
_PACK_SCHEMA = vol.Schema({vol.Required(ATTR_DEVICE_ID): _DEVICE})
_RECONNECT_SCHEMA = vol.Schema(
    {
        vol.Required(ATTR_DEVICE_ID): _DEVICE,
        vol.Optional(ATTR_WHEN_MATCHED, default=False): cv.boolean,
    }
)
_LIMIT = vol.All(vol.Coerce(float), vol.Range(min=0, max=1000))
_LIMIT_SCHEMA = vol.Schema(
    {
        vol.Required(ATTR_DEVICE_ID): _DEVICE,
        vol.Optional(ATTR_CHARGE_LIMIT): _LIMIT,
        vol.Optional(ATTR_DISCHARGE_LIMIT): _LIMIT,
    }
)


def _pack_of(hass: HomeAssistant, device_id: str) -> tuple[BankController, int]:
    """Return the controller of the bank a pack device belongs to, and the pack's address."""
    device = dr.async_get(hass).async_get(device_id)
    if device is not None:
        # Each loaded bank asks whether the device is one of its packs (a
        # device's own list of entries is deprecated from 2026.x on).
        entries: list[RackBatteryConfigEntry] = hass.config_entries.async_loaded_entries(DOMAIN)
        for entry in entries:
            coordinator = entry.runtime_data.coordinator
            for address, identity in coordinator.packs.items():
                if (DOMAIN, pack_device_key(entry, identity)) in device.identifiers:
                    return coordinator.controller, address
    raise ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key="not_a_pack",
        translation_placeholders={"device": (device.name if device else None) or device_id},
    )


@callback
def async_register_services(hass: HomeAssistant) -> None:
    """Register the control actions."""

    async def isolate(call: ServiceCall) -> None:
        controller, address = _pack_of(hass, call.data[ATTR_DEVICE_ID][0])
        await controller.async_change(controller.isolate_change(address), context=call.context)

    async def reconnect(call: ServiceCall) -> None:
        controller, address = _pack_of(hass, call.data[ATTR_DEVICE_ID][0])
        await controller.async_change(
            controller.reconnect_change(address),
            context=call.context,
            when_matched=call.data[ATTR_WHEN_MATCHED],
        )

    async def cancel_rejoin(call: ServiceCall) -> None:
        controller, address = _pack_of(hass, call.data[ATTR_DEVICE_ID][0])
        controller.cancel_rejoin(address, context=call.context)

    async def set_current_limit(call: ServiceCall) -> None:
        controller, address = _pack_of(hass, call.data[ATTR_DEVICE_ID][0])
        await controller.async_change(
            Change(
                address=address,
                charge_limit=call.data.get(ATTR_CHARGE_LIMIT),
                discharge_limit=call.data.get(ATTR_DISCHARGE_LIMIT),
            ),
            context=call.context,
        )

    hass.services.async_register(DOMAIN, SERVICE_ISOLATE, isolate, schema=_PACK_SCHEMA)
    hass.services.async_register(DOMAIN, SERVICE_RECONNECT, reconnect, schema=_RECONNECT_SCHEMA)
    hass.services.async_register(DOMAIN, SERVICE_CANCEL_REJOIN, cancel_rejoin, schema=_PACK_SCHEMA)
    hass.services.async_register(
        DOMAIN, SERVICE_SET_CURRENT_LIMIT, set_current_limit, schema=_LIMIT_SCHEMA
    )
