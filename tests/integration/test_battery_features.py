"""The bank in Home Assistant's own battery features: the energy dashboard,
and the battery triggers and conditions (charging, low)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
import importlib
from pathlib import Path
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.energy import data as energy_data
from homeassistant.components.energy.validate import async_validate
from homeassistant.const import STATE_OFF, STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from homeassistant.util.yaml import parse_yaml
import pytest
from pytest_homeassistant_custom_component.common import async_mock_service
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
    do_adhoc_statistics,
    get_start_time,
)

from custom_components.rack_battery.bank.analysis import Thresholds

from .conftest import SimulatedBus, options_input, setup_bank
from .test_bank import _poll, _raw, _state

pytestmark = pytest.mark.freeze_time(tick=True)

README = Path(__file__).parents[2] / "README.md"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(recorder_mock: Any, enable_custom_integrations: None) -> None:
    """Run with the recorder, which the energy dashboard reads statistics from.

    It must start before Home Assistant does, so it comes in here, ahead of
    the package's fixture that would set Home Assistant up first.
    """


BANK = "sensor.pace_bank"

# What the energy dashboard's battery takes differs by release: 2025.4 only
# the energy in and out; from 2025.12 a power sensor positive while
# discharging (stat_rate); later a power configuration that can also invert
# a sensor or take two (power_config), the state of charge and the capacity.
_BATTERY_FIELDS = energy_data.BatterySourceType.__annotations__
TAKES_POWER = "stat_rate" in _BATTERY_FIELDS
TAKES_POWER_CONFIG = "power_config" in _BATTERY_FIELDS
TAKES_SOC = "stat_soc" in _BATTERY_FIELDS


def _has_battery_triggers() -> bool:
    """Return whether this release has the battery triggers (2026.7 on)."""
    try:
        module = importlib.import_module("homeassistant.components.battery.trigger")
    except ImportError:
        return False
    return "started_charging" in getattr(module, "TRIGGERS", {})


HAS_BATTERY_TRIGGERS = _has_battery_triggers()


def _battery_source(hass: HomeAssistant, *, inverted: bool = False) -> dict[str, Any]:
    """Return the battery as the frontend's dialog saves it on this release."""
    source: dict[str, Any] = {
        "type": "battery",
        "stat_energy_from": f"{BANK}_energy_discharged",
        "stat_energy_to": f"{BANK}_energy_charged",
    }
    if TAKES_POWER_CONFIG:
        source["power_config"] = (
            {"stat_rate_inverted": f"{BANK}_power"}
            if inverted
            else {"stat_rate": f"{BANK}_net_discharge_power"}
        )
    elif TAKES_POWER:
        source["stat_rate"] = f"{BANK}_net_discharge_power"
    if TAKES_SOC:
        source["stat_soc"] = f"{BANK}_state_of_charge"
        source["capacity"] = _state(hass, f"{BANK}_usable_capacity")
    return source


async def _assert_no_issue(hass: HomeAssistant) -> None:
    """Compile the statistics of the last five minutes, as the recorder does
    on its own every five minutes, and validate the dashboard's setup."""
    start = get_start_time(dt_util.utcnow() - timedelta(minutes=5))
    do_adhoc_statistics(hass, start=start)
    await async_wait_recording_done(hass)
    validation = (await async_validate(hass)).as_dict()
    assert validation["energy_sources"] == [[]], validation


async def test_energy_dashboard_takes_the_bank(
    hass: HomeAssistant,
    pace_bus: SimulatedBus,
    freezer: FrozenDateTimeFactory,
) -> None:
    """The bank's own sensors fill the energy dashboard's battery on this
    release, its power flows the way the dashboard expects, and the
    dashboard's validation finds nothing to complain about."""
    pace_bus.bank.load = lambda _t: 40.0  # discharging
    pace_bus.bank.step(60)
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    for _ in range(31):  # five minutes of polls, the statistics' period
        await _poll(hass, freezer)

    # Power flows out of the battery: the dashboard's power is positive.
    bank_power = sum(pack.voltage * pack.current for pack in pace_bus.bank.packs)
    assert bank_power < -1500
    assert _state(hass, f"{BANK}_net_discharge_power") == pytest.approx(-bank_power, abs=2)
    assert _state(hass, f"{BANK}_power") == pytest.approx(bank_power, abs=2)

    # Stored energy and capacity at the packs' nominal 51.2 V; their ratio is
    # the state of charge.
    packs = pace_bus.bank.packs
    stored = _state(hass, f"{BANK}_stored_energy")
    usable = _state(hass, f"{BANK}_usable_capacity")
    # Stored energy is shown to 0.1 kWh, the capacity to 10 Wh.
    assert stored == pytest.approx(sum(p.remaining_capacity for p in packs) * 51.2 / 1000, abs=0.05)
    assert usable == pytest.approx(sum(p.full_capacity for p in packs) * 51.2 / 1000, abs=0.01)
    assert 100 * stored / usable == pytest.approx(_state(hass, f"{BANK}_state_of_charge"), abs=1.5)
    state = hass.states.get(f"{BANK}_stored_energy")
    assert state is not None
    assert state.attributes["device_class"] == "energy_storage"
    assert state.attributes["state_class"] == "measurement"
    assert state.attributes["unit_of_measurement"] == "kWh"

    # Loaded as in a home with the dashboard (default_config brings it).
    assert await async_setup_component(hass, "energy", {})
    manager = await energy_data.async_get_manager(hass)
    await manager.async_update({"energy_sources": [_battery_source(hass)]})  # type: ignore[typeddict-item]
    await hass.async_block_till_done()
    saved: Any = manager.data
    battery = saved["energy_sources"][0]
    assert battery["stat_energy_from"] == f"{BANK}_energy_discharged"
    if TAKES_POWER:
        # The dashboard reads the power from this statistic, positive out.
        assert battery["stat_rate"] == f"{BANK}_net_discharge_power"
    await _assert_no_issue(hass)

    if TAKES_POWER_CONFIG:
        # The other way to pick it: the bank's own power, inverted.
        await manager.async_update(
            {"energy_sources": [_battery_source(hass, inverted=True)]}  # type: ignore[typeddict-item]
        )
        await hass.async_block_till_done()
        await _poll(hass, freezer)
        saved = manager.data
        rate = saved["energy_sources"][0]["stat_rate"]
        assert rate != f"{BANK}_power"
        assert _state(hass, rate) * _power_factor(hass, rate) == pytest.approx(
            -_state(hass, f"{BANK}_power"), abs=2
        )
        await _assert_no_issue(hass)
    assert await hass.config_entries.async_unload(entry.entry_id)


def _power_factor(hass: HomeAssistant, entity_id: str) -> float:
    """Return what turns a power sensor's state into watts."""
    state = hass.states.get(entity_id)
    assert state is not None
    return {"W": 1.0, "kW": 1000.0}[state.attributes["unit_of_measurement"]]


async def _automation(
    hass: HomeAssistant, trigger: dict[str, Any], *, also: Sequence[dict[str, Any]] = ()
) -> list[Any]:
    """Set up an automation on a trigger (and others, ``also``); return its runs."""
    calls: list[Any] = async_mock_service(hass, "test", "automation")
    mine = {
        "triggers": trigger,
        "actions": {
            "action": "test.automation",
            "data": {"entity_id": "{{ trigger.entity_id }}"},
        },
    }
    assert await async_setup_component(hass, "automation", {"automation": [mine, *also]})
    await hass.async_block_till_done()
    return calls


def _readme_low_automation() -> dict[str, Any]:
    """Return the README's "became low" automation, its action a test service.

    On a release without the battery triggers, with the state trigger the
    README names for those.
    """
    text = README.read_text(encoding="utf-8")
    section = text.partition("\n### Battery triggers and conditions\n")[2]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    automation = parse_yaml(block)
    assert isinstance(automation, dict)
    assert automation["triggers"][0]["trigger"] == "battery.became_low"
    automation["actions"] = [{"action": "test.readme"}]
    if not HAS_BATTERY_TRIGGERS:
        automation["triggers"] = [
            {"trigger": "state", "entity_id": "binary_sensor.pace_bank_battery_low", "to": "on"}
        ]
    return automation


def _trigger(name: str, entity_ids: list[str]) -> dict[str, Any]:
    """Return Home Assistant's battery trigger, or a state trigger where there is none."""
    if HAS_BATTERY_TRIGGERS:
        return {
            "trigger": f"battery.{name}",
            "target": {"entity_id": entity_ids},
            "options": {"behavior": "each"},
        }
    return {"trigger": "state", "entity_id": entity_ids, "to": STATE_ON}


async def test_charge_start_turns_charging_on_and_fires(
    hass: HomeAssistant, pace_bus: SimulatedBus, freezer: FrozenDateTimeFactory
) -> None:
    """The bank and each pack turn "charging" on when the charger starts,
    and an automation on battery "started charging" runs."""
    pace_bus.bank.load = lambda _t: 30.0
    pace_bus.bank.step(60)
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    charging = ["binary_sensor.pace_bank_charging", "binary_sensor.pace_bank_pack_2_charging"]
    for entity_id in charging:
        assert _raw(hass, entity_id) == STATE_OFF
        state = hass.states.get(entity_id)
        assert state is not None
        assert state.attributes["device_class"] == "battery_charging"
    runs = await _automation(hass, _trigger("started_charging", charging))

    pace_bus.bank.load = lambda _t: -40.0  # the sun comes up
    pace_bus.bank.step(60)
    await _poll(hass, freezer)
    for entity_id in charging:
        assert _raw(hass, entity_id) == STATE_ON
    assert sorted(run.data["entity_id"] for run in runs) == sorted(charging)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_falling_below_the_low_level_turns_low_on_and_fires(
    hass: HomeAssistant, pace_bus: SimulatedBus, freezer: FrozenDateTimeFactory
) -> None:
    """A bank discharged below 20 % is low, and so is each pack that is; an
    automation on battery "became low" runs for each."""
    for pack in pace_bus.bank.packs:
        pack.soc = 0.215
    pace_bus.bank.load = lambda _t: 100.0
    pace_bus.bank.step(10)
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    low = ["binary_sensor.pace_bank_battery_low", "binary_sensor.pace_bank_pack_1_battery_low"]
    for entity_id in low:
        assert _raw(hass, entity_id) == STATE_OFF
        state = hass.states.get(entity_id)
        assert state is not None
        assert state.attributes["device_class"] == "battery"
    readme_runs = async_mock_service(hass, "test", "readme")
    runs = await _automation(hass, _trigger("became_low", low), also=[_readme_low_automation()])

    for _ in range(30):  # a minute of 100 A per poll
        pace_bus.bank.step(60)
        await _poll(hass, freezer)
        if all(_raw(hass, entity_id) == STATE_ON for entity_id in low):
            break
    assert _state(hass, f"{BANK}_state_of_charge") < 20
    for entity_id in low:
        assert _raw(hass, entity_id) == STATE_ON
    assert sorted(run.data["entity_id"] for run in runs) == sorted(low)
    assert len(readme_runs) == 1  # the README's example, as written
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_low_level_is_a_setting(
    hass: HomeAssistant, pace_bus: SimulatedBus, freezer: FrozenDateTimeFactory
) -> None:
    """The user raises the low level above the bank's charge in the options:
    the bank is low from the next poll on, without a reload."""
    entry = await setup_bank(hass, pace_bus, wire="modbus_tcp")
    soc = _state(hass, f"{BANK}_state_of_charge")
    assert 50 < soc < 70
    assert _raw(hass, "binary_sensor.pace_bank_battery_low") == STATE_OFF

    result: Any = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    assert Thresholds().battery_low_percent == 20
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], options_input(replace(Thresholds(), battery_low_percent=80))
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    await _poll(hass, freezer)
    assert _raw(hass, "binary_sensor.pace_bank_battery_low") == STATE_ON
    assert _raw(hass, "binary_sensor.pace_bank_pack_1_battery_low") == STATE_ON
    assert await hass.config_entries.async_unload(entry.entry_id)
