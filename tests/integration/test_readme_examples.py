"""The automations of the README's Examples, run as written against a simulated bank.

Each ```yaml block under "## Examples" is read from README.md itself, so a
user who pastes one gets what is tested here: Home Assistant's automation
engine loads it, its entity ids are those the integration really creates,
and it acts when the bank does what the example is about.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
import re
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.helpers import config_validation as cv
from homeassistant.setup import async_setup_component
from homeassistant.util.yaml import parse_yaml
import pytest
from pytest_homeassistant_custom_component.common import async_mock_service

from custom_components.rack_battery.const import EVENT_FINDING
from simulator.bank import SimBank

from .conftest import SimulatedBus
from .findings_helpers import (
    MIN,
    bank_entry,
    poll,
    quiet_bus,  # noqa: F401 - a fixture
    run,
    setup_entry,
)

pytestmark = pytest.mark.freeze_time(tick=True)

README = Path(__file__).parents[2] / "README.md"

# The aliases of the examples, in the README's order.
ALIASES = [
    "Battery bank critical finding",
    "Battery bank low, water heater off",
    "Battery pack BMS alarm",
    "Battery pack not answering",
]


def examples_section() -> str:
    """Return the README's Examples section, up to the next section."""
    text = README.read_text(encoding="utf-8")
    _, found, rest = text.partition("\n## Examples\n")
    assert found, "README.md has no Examples section"
    return rest.split("\n## ", 1)[0]


def readme_examples() -> list[dict[str, Any]]:
    """Return every automation written in a yaml block of the README's Examples."""
    blocks = re.findall(r"^```yaml\n(.*?)^```$", examples_section(), re.DOTALL | re.MULTILINE)
    examples: list[dict[str, Any]] = []
    for block in blocks:
        example = parse_yaml(block)
        assert isinstance(example, dict), block
        examples.append(example)
    return examples


@dataclass
class Running:
    """The simulated bank, and what the examples asked of Home Assistant."""

    bank: SimBank
    notify: list[ServiceCall]
    switch_off: list[ServiceCall]


@pytest.fixture
async def running(
    hass: HomeAssistant,
    quiet_bus: SimulatedBus,  # noqa: F811
) -> AsyncIterator[Running]:
    """Set up the PACE bank, then every example, with the phone and the switch mocked."""
    await setup_entry(hass, bank_entry(quiet_bus))
    notify = async_mock_service(hass, "notify", "notify")
    switch_off = async_mock_service(hass, "switch", "turn_off")
    assert await async_setup_component(hass, "automation", {"automation": readme_examples()})
    await hass.async_block_till_done()
    yield Running(quiet_bus.bank, notify, switch_off)
    # Home Assistant stopping makes every pack unavailable, which would start
    # the silent-pack example's ten minutes; the automations stop first.
    await hass.services.async_call("automation", "turn_off", {"entity_id": "all"}, blocking=True)


def _titles(calls: list[ServiceCall]) -> list[str]:
    return [call.data["title"] for call in calls]


async def test_every_example_loads_and_names_real_entities(
    hass: HomeAssistant, running: Running
) -> None:
    """Every example is a valid automation, on, and every entity it names exists."""
    examples = readme_examples()
    assert [example["alias"] for example in examples] == ALIASES
    automations = {
        state.attributes.get("friendly_name"): state.state
        for state in hass.states.async_all("automation")
    }
    assert automations == dict.fromkeys(ALIASES, "on")

    named = set(re.findall(r"\b(?:sensor|binary_sensor|event)\.pace_bank\w*", examples_section()))
    assert "sensor.pace_bank_state_of_charge" in named
    missing = sorted(entity_id for entity_id in named if hass.states.get(entity_id) is None)
    assert missing == []


async def test_a_critical_finding_is_sent_with_its_pack_and_numbers(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, running: Running
) -> None:
    """A pack at 58 °C is sent once when raised, naming the pack; warnings
    (its temperature outlier) and the clearing are not sent."""
    pack = running.bank.pack(4)
    pack.ambient = pack.temperature = 58.0
    await run(hass, freezer, running.bank, 4 * MIN)
    assert running.notify == []
    await run(hass, freezer, running.bank, 3 * MIN)
    assert _titles(running.notify) == ["Battery: high temperature on pack 4"]
    assert running.notify[0].data["message"] == (
        "temperature 58.0, limit 55.0. Settings → Repairs says what to do."
    )

    pack.ambient = pack.temperature = 25.0
    await run(hass, freezer, running.bank, 12 * MIN)
    assert len(running.notify) == 1

    # A finding about the whole bank carries no address.
    hass.bus.async_fire(
        EVENT_FINDING,
        {
            "action": "raised",
            "finding_id": "mixed_cell_count",
            "rule": "mixed_cell_count",
            "severity": "critical",
            "address": None,
            "values": {"cell_counts": "15: 2; 16: 1, 3, 4"},
        },
    )
    await hass.async_block_till_done()
    assert _titles(running.notify)[1:] == ["Battery: mixed cell count on the bank"]
    assert running.notify[1].data["message"].startswith("cell counts 15: 2; 16: 1, 3, 4.")


async def test_a_low_bank_sheds_the_load(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, running: Running
) -> None:
    """The water heater goes off once the bank's state of charge falls below 30 %."""
    for pack in running.bank.packs:
        pack.soc = 0.35
    running.bank.step(0.0)
    await poll(hass, freezer)
    assert running.switch_off == []

    for pack in running.bank.packs:
        pack.soc = 0.25
    running.bank.step(0.0)
    await poll(hass, freezer)
    state = hass.states.get("sensor.pace_bank_state_of_charge")
    assert state is not None
    assert float(state.state) < 30
    assert [cv.ensure_list(call.data["entity_id"]) for call in running.switch_off] == [
        ["switch.water_heater"]
    ]
    assert running.notify == []


async def test_a_bms_alarm_is_sent_with_its_names(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, running: Running
) -> None:
    """Pack 2's BMS warns of a high cell and has cut charging for a hot MOSFET."""
    pack = running.bank.pack(2)
    pack.warnings = {"cell_overvoltage"}
    pack.protections = {"mosfet_overtemperature"}
    await poll(hass, freezer)
    assert _titles(running.notify) == ["PACE bank pack 2: BMS alarm"]
    assert running.notify[0].data["message"] == (
        "Protections: mosfet overtemperature. Warnings: cell overvoltage."
    )


async def test_a_pack_silent_for_ten_minutes_is_sent(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, running: Running
) -> None:
    """Pack 3 drops off the bus: nothing for nine minutes, then one notification."""
    running.bank.take_off_bus(3)
    await poll(hass, freezer)
    await run(hass, freezer, running.bank, 9 * MIN)
    assert running.notify == []
    await run(hass, freezer, running.bank, 2 * MIN)
    assert _titles(running.notify) == ["PACE bank pack 3 is not answering"]
