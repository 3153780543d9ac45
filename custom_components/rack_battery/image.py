"""A picture of the bank on the bank's device: every pack at a glance.

The drawing itself is ``picture.py`` (plain data in, SVG out); this platform
feeds it from each poll. A new picture is taken only when what it shows has
changed, rounded as it is drawn: each new picture moves
``image_last_updated``, and so the entity's state, and every state is a row
in the recorder. A bank at rest thus keeps one picture for hours.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import override

from homeassistant.components.image import ImageEntity, ImageEntityDescription
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.translation import async_get_translations
from homeassistant.util import dt as dt_util

from .bank.analysis import Severity
from .const import DOMAIN
from .coordinator import BankData, RackBatteryConfigEntry
from .entity import RackBatteryEntity
from .picture import BankPicture, PackState, Words, bank_picture, pack_picture, render_svg

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class RackBatteryImageEntityDescription(ImageEntityDescription):
    """Describes a picture by what it draws from one poll of the bank."""

    picture_fn: Callable[[BankData, Words], BankPicture]


def pack_state(data: BankData, address: int) -> PackState:
    """Return what the picture says of a pack: silent, isolated, in trouble, or fine.

    Isolated is what the BMS reports: both its charge and its discharge path
    open, whoever opened them. Trouble is what the user should look at: a
    protection the BMS acted on, or a finding of warning or worse about the
    pack.
    """
    reading = data.snapshot.readings.get(address)
    if reading is None:
        return PackState.SILENT
    if reading.charge_enabled is False and reading.discharge_enabled is False:
        return PackState.ISOLATED
    if reading.protections or any(
        finding.severity.rank >= Severity.WARNING.rank
        for finding in data.analysis.for_pack(address)
    ):
        return PackState.TROUBLE
    return PackState.OK


def draw_bank(data: BankData, words: Words) -> BankPicture:
    """Return the picture of one poll: each pack of the bank, in address order."""
    snapshot = data.snapshot
    addresses = sorted({*snapshot.readings, *snapshot.failed})
    packs = []
    for address in addresses:
        reading = snapshot.readings.get(address)
        packs.append(
            pack_picture(
                address=address,
                label=f"{words.pack} {address}",
                state=pack_state(data, address),
                soc=reading.soc if reading else None,
                voltage=reading.voltage if reading else None,
                current=reading.current if reading else None,
                temperature=reading.temperature_max if reading else None,
            )
        )
    return bank_picture(
        voltage=snapshot.voltage, power=snapshot.power, packs=tuple(packs), words=words
    )


def words_from(texts: Mapping[str, str]) -> Words:
    """Return the picture's words from the integration's entity translations.

    Home Assistant has no place for the words inside a picture; they are
    kept with the image entity's texts (``pack_state``: the word "Pack" as
    its name, what a pack in each state shows as its states), and the bank's
    activity comes from that sensor's states. A word missing stays English.
    """
    base = f"component.{DOMAIN}.entity"
    pack = f"{base}.image.overview.state_attributes.pack_state"
    activity = f"{base}.sensor.activity.state"
    english = Words()
    return Words(
        pack=texts.get(f"{pack}.name", english.pack),
        trouble=texts.get(f"{pack}.state.trouble", english.trouble),
        silent=texts.get(f"{pack}.state.silent", english.silent),
        isolated=texts.get(f"{pack}.state.isolated", english.isolated),
        charging=texts.get(f"{activity}.charging", english.charging).lower(),
        discharging=texts.get(f"{activity}.discharging", english.discharging).lower(),
        resting=texts.get(f"{activity}.resting", english.resting).lower(),
    )


OVERVIEW = RackBatteryImageEntityDescription(
    key="overview",
    translation_key="overview",
    picture_fn=draw_bank,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: RackBatteryConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the picture of the bank."""
    async_add_entities([RackBatteryImage(hass, entry, OVERVIEW)])


class RackBatteryImage(RackBatteryEntity, ImageEntity):
    """A picture of the bank, redrawn when what it shows changes."""

    entity_description: RackBatteryImageEntityDescription
    _attr_content_type = "image/svg+xml"

    def __init__(
        self,
        hass: HomeAssistant,
        entry: RackBatteryConfigEntry,
        description: RackBatteryImageEntityDescription,
    ) -> None:
        """Draw the bank as the first poll found it."""
        RackBatteryEntity.__init__(self, entry, description)
        ImageEntity.__init__(self, hass)
        self._picture: BankPicture | None = None
        self._words = Words()
        self._svg = b""
        self._shown_available: bool | None = None
        self._redraw()

    @override
    async def async_added_to_hass(self) -> None:
        """Write the picture's words in the user's language."""
        await super().async_added_to_hass()
        texts = await async_get_translations(
            self.hass, self.hass.config.language, "entity", [DOMAIN]
        )
        self._words = words_from(texts)
        self._redraw()

    def _redraw(self) -> bool:
        """Draw the latest poll if it looks different; return whether it did."""
        picture = self.entity_description.picture_fn(self.coordinator.data, self._words)
        if picture == self._picture:
            return False
        self._picture = picture
        self._svg = render_svg(picture).encode()
        self._attr_image_last_updated = dt_util.utcnow()
        return True

    @callback
    @override
    def _handle_coordinator_update(self) -> None:
        """Write a new state only for a new picture (or a change of availability)."""
        redrawn = self._redraw()
        available = self.available
        if redrawn or available != self._shown_available:
            self._shown_available = available
            self.async_write_ha_state()

    @override
    async def async_image(self) -> bytes:
        """Return the latest picture."""
        return self._svg
