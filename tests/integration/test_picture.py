"""The picture of the bank: what it shows, and that it is redrawn only when that changes."""

from __future__ import annotations

from xml.etree import ElementTree

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import ATTR_DEVICE_ID
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.rack_battery.const import DOMAIN
from custom_components.rack_battery.picture import (
    PackState,
    bank_picture,
    pack_picture,
    render_svg,
)

from .conftest import SimulatedBus, setup_bank
from .control_helpers import serve
from .test_bank import _poll
from .test_control import ON, _device, _entry, _set_up

pytestmark = pytest.mark.freeze_time(tick=True)

PICTURE = "image.pace_bank_overview"
SVG = "{http://www.w3.org/2000/svg}"


def _texts(svg: str) -> dict[str, str]:
    """Return the picture's labelled texts by their id."""
    root = ElementTree.fromstring(svg)
    return {
        element.attrib["id"]: element.text or ""
        for element in root.iter()
        if "id" in element.attrib and element.tag == f"{SVG}text"
    }


def _number(text: str) -> float:
    return float(text.split(maxsplit=1)[0])


async def _fetch(
    hass: HomeAssistant, client: ClientSessionGenerator, entity_id: str = PICTURE
) -> str:
    http = await client()
    response = await http.get(f"/api/image_proxy/{entity_id}")
    assert response.status == 200
    assert response.content_type == "image/svg+xml"
    svg: str = await response.text()
    return svg


async def test_the_picture_shows_each_pack_as_the_simulator_has_it(
    hass: HomeAssistant,
    pace_bus: SimulatedBus,
    freezer: FrozenDateTimeFactory,
    hass_client: ClientSessionGenerator,
) -> None:
    """Each pack's charge, voltage, current and hottest temperature, and the bus."""
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    bank = pace_bus.bank
    bank.load = lambda _t: 40.0  # discharging: every pack gives current
    bank.step(60)
    await _poll(hass, freezer)

    svg = await _fetch(hass, hass_client)
    texts = _texts(svg)
    root = ElementTree.fromstring(svg)
    assert "viewBox" in root.attrib
    for pack in bank.packs:
        key = f"pack{pack.address}"
        assert texts[f"{key}-label"] == f"Pack {pack.address}"
        assert _number(texts[f"{key}-soc"]) == pytest.approx(pack.soc * 100, abs=1)
        assert _number(texts[f"{key}-voltage"]) == pytest.approx(pack.voltage, abs=0.06)
        assert _number(texts[f"{key}-current"]) == pytest.approx(pack.current, abs=0.6)
        assert _number(texts[f"{key}-temperature"]) == pytest.approx(
            max(*pack.cell_temperatures, pack.mosfet_temperature, pack.ambient), abs=0.6
        )
        arrow = root.find(f".//{SVG}g[@id='{key}-arrow']")
        assert arrow is not None
        assert arrow.attrib["data-direction"] == "out"
    # The bank's voltage is the mean of what its packs measure.
    mean = sum(pack.voltage for pack in bank.packs) / len(bank.packs)
    assert _number(texts["bank-voltage"]) == pytest.approx(mean, abs=0.06)
    power = sum(pack.voltage * pack.current for pack in bank.packs)
    assert texts["bank-power"].endswith("discharging")
    assert _number(texts["bank-power"]) == pytest.approx(power / 1000, abs=0.03)
    # The pack that carries most gets the longest arrow.
    lengths = {
        pack.address: float(
            root.find(f".//{SVG}g[@id='pack{pack.address}-arrow']").attrib["data-length"]  # type: ignore[union-attr]
        )
        for pack in bank.packs
    }
    strongest = max(bank.packs, key=lambda pack: abs(pack.current)).address
    assert lengths[strongest] == max(lengths.values())
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_an_unchanged_bank_is_not_redrawn_and_a_silent_pack_is(
    hass: HomeAssistant,
    pace_bus: SimulatedBus,
    freezer: FrozenDateTimeFactory,
    hass_client: ClientSessionGenerator,
) -> None:
    """A bank at rest keeps its picture (no recorder row per poll); a pack
    falling silent is drawn so at once."""
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    await _poll(hass, freezer)
    first = hass.states.get(PICTURE)
    assert first is not None
    assert first.state not in ("unknown", "unavailable")
    before = await _fetch(hass, hass_client)

    for _ in range(3):
        await _poll(hass, freezer)
    same = hass.states.get(PICTURE)
    assert same is not None
    assert same.state == first.state
    assert same.last_updated == first.last_updated

    pace_bus.bank.take_off_bus(2)
    await _poll(hass, freezer)
    silent = hass.states.get(PICTURE)
    assert silent is not None
    assert silent.state != first.state
    after = await _fetch(hass, hass_client)
    assert after != before
    texts = _texts(after)
    assert texts["pack2-state"] == "SILENT"
    assert "pack2-soc" not in texts
    assert "pack1-soc" in texts
    assert er.async_get(hass).async_get(PICTURE) is not None
    assert await hass.config_entries.async_unload(entry.entry_id)


def test_rounding_decides_what_is_a_new_picture() -> None:
    """Values that round alike draw alike; a visible step does not."""

    def drawn(soc: float, volts: float, amps: float, watts: float) -> str:
        pack = pack_picture(
            address=1,
            label="Pack 1",
            state=PackState.OK,
            soc=soc,
            voltage=volts,
            current=amps,
            temperature=24.2,
        )
        return render_svg(bank_picture(voltage=volts, power=watts, packs=(pack,)))

    assert drawn(60.2, 52.31, -10.2, -530) == drawn(59.9, 52.33, -9.8, -540)
    assert drawn(60.2, 52.31, -10.2, -530) != drawn(61.0, 52.31, -10.2, -530)
    assert drawn(60.2, 52.31, -10.2, -530) != drawn(60.2, 52.31, 10.2, -530)


def test_a_pack_in_trouble_or_isolated_says_so_in_words() -> None:
    """Colour alone does not carry the state: a phone in the sun washes it out."""
    packs = (
        pack_picture(address=1, label="Pack 1", state=PackState.TROUBLE, soc=50, voltage=52),
        pack_picture(address=2, label="Pack 2", state=PackState.ISOLATED, soc=50, voltage=52),
    )
    texts = _texts(render_svg(bank_picture(voltage=52.0, power=0.0, packs=packs)))
    assert texts["pack1-state"] == "CHECK"
    assert texts["pack2-state"] == "ISOLATED"
    # An isolated pack still answers: its voltage is what a rejoin waits on.
    assert texts["pack2-voltage"] == "52.0 V"
    assert texts["bank-power"].endswith("resting")


async def test_the_picture_speaks_the_users_language(
    hass: HomeAssistant,
    pace_bus: SimulatedBus,
    freezer: FrozenDateTimeFactory,
    hass_client: ClientSessionGenerator,
) -> None:
    """In a German Home Assistant the packs are "Modul", a silent one "STUMM"."""
    hass.config.language = "de"
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    pace_bus.bank.take_off_bus(3)
    await _poll(hass, freezer)
    (picture,) = [
        entity.entity_id
        for entity in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
        if entity.domain == "image"
    ]
    texts = _texts(await _fetch(hass, hass_client, picture))
    assert texts["pack1-label"] == "Modul 1"
    assert texts["pack3-state"] == "STUMM"
    assert texts["bank-power"].split(" · ")[1] in {"lädt", "entlädt", "ruht"}
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_pack_isolated_by_control_is_drawn_isolated(
    hass: HomeAssistant, hass_client: ClientSessionGenerator
) -> None:
    """Isolating a pack through control marks it on the picture, from what its
    BMS reports after the write; the other packs stay as they were."""
    async with serve("pace_ascii") as bus:
        entry = await _set_up(hass, await _entry(bus, ON))
        picture = er.async_get(hass).async_get_entity_id(
            "image", DOMAIN, f"{entry.entry_id}_overview"
        )
        assert picture is not None
        assert "ISOLATED" not in _texts(await _fetch(hass, hass_client, picture)).values()

        await hass.services.async_call(
            DOMAIN, "isolate_pack", {ATTR_DEVICE_ID: _device(hass, entry, 3)}, blocking=True
        )
        await entry.runtime_data.coordinator.async_refresh()
        await hass.async_block_till_done()

        texts = _texts(await _fetch(hass, hass_client, picture))
        assert texts["pack3-state"] == "ISOLATED"
        assert _number(texts["pack3-voltage"]) == pytest.approx(bus.bank.pack(3).voltage, abs=0.06)
        assert "pack2-state" not in texts
        assert "pack4-state" not in texts
        assert await hass.config_entries.async_unload(entry.entry_id)
