"""The base entity of the bank and of its packs.

The bank is a device of its own; each pack is a sub-device hanging off it.
A pack is known by its serial number where the BMS reports one, so a pack
moved to another address stays the same device; without one, the slot it is
wired to is all there is, and the identifier says so (``slot_3``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import override

from homeassistant.core import callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .bank.analysis import Finding
from .bank.model import BankSnapshot, PackIdentity, PackReading
from .const import CONF_PACKS, DOMAIN
from .coordinator import BankCoordinator, Interest, RackBatteryConfigEntry
from .protocol.catalog import FAMILIES, ControlCapabilities


def pack_device_key(entry: RackBatteryConfigEntry, identity: PackIdentity) -> str:
    """Return the device identifier of a pack.

    A serial number is unique on its own; a slot only within its bank.
    """
    if identity.serial:
        return f"{identity.family}_{identity.serial}"
    return f"{entry.entry_id}_{identity.key}"


# How a BMS spells its maker on the wire, and how the maker calls itself.
# Pylontech packs say "PYLON" in their 0x51 reply and on CAN.
_MAKERS = {"PYLON": "Pylontech", "PYLONTECH": "Pylontech"}


def maker(reported: str | None, family: str) -> str:
    """Return a pack's maker as people know it: what it reports, or its family's maker."""
    if not reported:
        return FAMILIES[family].manufacturer
    return _MAKERS.get(reported.strip().upper(), reported.strip())


def bank_device_info(entry: RackBatteryConfigEntry) -> DeviceInfo:
    """Return the device of the bank as a whole.

    Its maker is its packs' where they agree (a SunSpec bank is not made by
    SunSpec), else the family's.
    """
    family = FAMILIES[entry.data["family"]]
    makers = {
        maker(pack.get("manufacturer"), pack.get("family", family.key))
        for pack in entry.data.get(CONF_PACKS, [])
    }
    return DeviceInfo(
        identifiers={(DOMAIN, entry.entry_id)},
        manufacturer=makers.pop() if len(makers) == 1 else family.manufacturer,
        model=f"{family.name} bank",
        name=entry.title,
    )


# Home Assistant 2026.8 links a sub-device to its parent by the parent's
# device id and deprecates naming the parent by identifier; 2025.4 knows only
# the identifier. Use whichever the running version offers.
_LINK_BY_DEVICE_ID = "via_device_id" in DeviceInfo.__annotations__


def pack_device_info(entry: RackBatteryConfigEntry, identity: PackIdentity) -> DeviceInfo:
    """Return the device of one pack, hanging off its bank."""
    info = DeviceInfo(
        identifiers={(DOMAIN, pack_device_key(entry, identity))},
        manufacturer=maker(identity.manufacturer, identity.family),
        model=identity.model,
        name=f"{entry.title} pack {identity.address}",
        serial_number=identity.serial,
        sw_version=identity.firmware,
    )
    if _LINK_BY_DEVICE_ID:
        info["via_device_id"] = entry.runtime_data.bank_device_id  # type: ignore[typeddict-unknown-key,unused-ignore]
    else:
        info["via_device"] = (DOMAIN, entry.entry_id)
    return info


# What an entity showed before its first write: never equal to what it shows.
_NOT_WRITTEN = object()


class RackBatteryEntity(CoordinatorEntity[BankCoordinator]):
    """An entity of the bank (``address`` None) or of one of its packs.

    A poll writes an entity's state only when what it shows changed. Most
    values of a pack stay put from one poll to the next (a cell at the same
    millivolt, a temperature at the same tenth of a degree); Home Assistant
    would drop such a state, but only after working the whole state and its
    attributes out again, and on a bank of many packs that was most of what
    a poll cost. What else changes an entity's state (its name, its unit,
    being enabled) is written by Home Assistant itself, not by a poll.

    A pack's entity that shows only fields of the pack's reading
    (``_fields_read``) is not even worked out again while none of them
    moved: it listens with an ``Interest`` in them, and the coordinator tells
    it of a poll only when one of them moved (``BankData.moved``).
    """

    _attr_has_entity_name = True
    _last_shown: object = _NOT_WRITTEN
    # What of its pack this entity shows, when that is fields of the pack's
    # reading and nothing else (not the findings, the controller, the options).
    _interest: Interest | None = None

    def __init__(
        self,
        entry: RackBatteryConfigEntry,
        description: EntityDescription,
        address: int | None = None,
    ) -> None:
        """Initialize the entity."""
        super().__init__(entry.runtime_data.coordinator)
        self.entity_description = description
        self.address = address
        if address is None:
            self._attr_device_info = bank_device_info(entry)
            self._attr_unique_id = f"{entry.entry_id}_{description.key}"
        else:
            identity = self.coordinator.packs[address]
            self._attr_device_info = pack_device_info(entry, identity)
            self._attr_unique_id = f"{pack_device_key(entry, identity)}_{description.key}"
            if (reads := self._fields_read()) is not None:
                self._interest = Interest(address, reads)
                self.coordinator_context = self._interest

    def _fields_read(self) -> frozenset[str] | None:
        """Return the fields of the pack's reading that are all this entity shows (None: more)."""
        return None

    @property
    def subject(self) -> BankSnapshot | PackReading | None:
        """Return what this entity reports on: the bank, or its pack's reading."""
        snapshot = self.coordinator.data.snapshot
        if self.address is None:
            return snapshot
        return snapshot.readings.get(self.address)

    @property
    def findings(self) -> tuple[Finding, ...]:
        """Return the open findings about this entity's pack, or all of the bank's.

        The bank's own entities take in its packs' findings too: a bank with
        a pack in trouble is a bank in trouble.
        """
        analysis = self.coordinator.data.analysis
        if self.address is None:
            return analysis.open
        return analysis.for_pack(self.address)

    @property
    @override
    def available(self) -> bool:
        """Return whether this entity's pack answered the last poll.

        A pack that stayed silent keeps its last values in memory, and showing
        them as current would lie about the pack.
        """
        return super().available and self.subject is not None

    def shown(self) -> object:
        """Return what this entity shows of a poll; a platform adds its value to it."""
        return (self.available,)

    @callback
    @override
    def _handle_coordinator_update(self) -> None:
        """Write the state when what the entity shows changed with the poll."""
        shown = self.shown()
        if shown != self._last_shown:
            self.async_write_ha_state()
            self._last_shown = shown
        if self._interest is not None:
            self._interest.settled = True

    @override
    def async_write_ha_state(self) -> None:
        """Write the state; a write made elsewhere lets the next poll write again."""
        self._last_shown = _NOT_WRITTEN
        if self._interest is not None:
            self._interest.settled = False
        super().async_write_ha_state()


def entities_for_bank[EntityT: RackBatteryEntity, DescriptionT: EntityDescription](
    entry: RackBatteryConfigEntry,
    entity_class: Callable[[RackBatteryConfigEntry, DescriptionT, int | None], EntityT],
    bank: Iterable[DescriptionT],
    pack: Iterable[DescriptionT],
    *,
    per_pack: Callable[[int], Iterable[DescriptionT]] | None = None,
) -> list[EntityT]:
    """Return a platform's entities: the bank's, then each pack's.

    ``per_pack`` adds descriptions that depend on the pack at an address,
    such as one sensor per cell.
    """
    entities = [entity_class(entry, description, None) for description in bank]
    pack_descriptions = list(pack)
    for address in entry.runtime_data.coordinator.packs:
        descriptions = [*pack_descriptions, *(per_pack(address) if per_pack else ())]
        entities.extend(entity_class(entry, description, address) for description in descriptions)
    return entities


def control_entities[EntityT: RackBatteryEntity, DescriptionT: EntityDescription](
    entry: RackBatteryConfigEntry,
    entity_class: Callable[[RackBatteryConfigEntry, DescriptionT, int | None], EntityT],
    descriptions: Callable[[ControlCapabilities], Iterable[DescriptionT]],
) -> list[EntityT]:
    """Return a control platform's entities for each pack: none unless control is on.

    ``descriptions`` says which the family offers, from the catalog; a pack
    no write may go to (Modbus unit 0, the broadcast address) gets none.
    """
    controller = entry.runtime_data.coordinator.controller
    if not controller.enabled:
        return []
    caps = controller.capabilities
    offered = tuple(descriptions(caps))
    return entities_for_bank(
        entry,
        entity_class,
        (),
        (),
        per_pack=lambda address: offered if caps.writable(address) else (),
    )
