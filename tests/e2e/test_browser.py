"""What a homeowner does in the browser, start to end, on the real frontend.

The tests run in file order (scripts/e2e turns random ordering off): the
banks added first are the ones the later tests look at. Every step saves a
screenshot; the README's pictures are taken from them (scripts/screenshots).
"""

from __future__ import annotations

from datetime import datetime, timedelta
import json
import re
import time
from typing import Any

from playwright.sync_api import Locator, Page, expect
import pytest

from .conftest import (
    CONFIG,
    TRANSLATIONS,
    URL,
    Shots,
    Sim,
    call_api,
    call_ws,
    log_in,
)

DOMAIN = "rack_battery"
STEPS = TRANSLATIONS["config"]["step"]
PACKS_FOUND = STEPS["confirm"]["title"]
# The progress text up to its first placeholder ("Asking every address on").
SCANNING = TRANSLATIONS["config"]["progress"]["scan"].split("{")[0].strip()
# How long a flow may take in the browser before it counts as hung; the slow
# gateway's scan takes a few seconds.
FLOW_TIMEOUT = 90_000


def entries(page: Page) -> list[dict[str, Any]]:
    """Return the integration's config entries, as the frontend lists them."""
    found: list[dict[str, Any]] = call_ws(page, {"type": "config_entries/get", "domain": DOMAIN})
    return found


# The entry of each simulator's bank, as the tests added it.
ADDED: dict[str, str] = {}


def entry_on(page: Page, sim: Sim) -> dict[str, Any] | None:
    """Return the entry of the bank on a simulator, if the tests added one."""
    for entry in entries(page):
        if entry["entry_id"] == ADDED.get(sim.name):
            return entry
    return None


def submit(page: Page) -> None:
    page.get_by_role("button", name=re.compile(r"^\s*submit\s*$", re.IGNORECASE)).click()


def add_bank(page: Page, shots: Shots | None, sim: Sim) -> dict[str, Any]:
    """Add the simulated bank through Settings > Add integration, to "Success"."""
    before = {entry["entry_id"] for entry in entries(page)}
    name = sim.name

    def shot(step: str) -> None:
        if shots is not None:
            shots.take(page, f"setup-{name}-{step}")

    page.goto(f"{URL}/config/integrations/dashboard")
    page.get_by_role("button", name=re.compile("add integration", re.IGNORECASE)).click()
    # The brand picker opens with its search field focused, on 2025.4 and
    # current frontends alike (the page behind may show a card of that name).
    expect(page.get_by_text("Select brand", exact=True).first).to_be_visible()
    page.wait_for_timeout(500)
    brand = page.get_by_text("Rack Battery Bank", exact=True)
    cards = brand.count()
    page.keyboard.type("Rack Battery")
    # The picker's entry comes after the page's own card, when there is one.
    expect(brand).to_have_count(cards + 1)
    brand.last.click()
    page.get_by_text(STEPS["user"]["menu_options"][sim.wire], exact=True).click()
    shot("1-form")
    page.get_by_role("textbox", name=STEPS[sim.wire]["data"]["host"]).fill("127.0.0.1")
    page.get_by_role("spinbutton", name=STEPS[sim.wire]["data"]["port"]).fill(str(sim.port))
    shot("2-filled")
    submit(page)
    if sim.slow:
        # A slow gateway: the scan shows its progress, and then moves on.
        expect(page.get_by_text(SCANNING)).to_be_visible()
        shot("3-scanning")
    expect(page.get_by_text(PACKS_FOUND, exact=True)).to_be_visible(timeout=FLOW_TIMEOUT)
    shot("4-packs-found")
    submit(page)
    # "Success!" on 2025.4; the current frontend goes on to naming the devices.
    done = page.get_by_text(re.compile(r"^\s*(Success!?|Name and assign)\s*$"))
    expect(done.first).to_be_visible(timeout=FLOW_TIMEOUT)
    shot("5-success")
    page.get_by_role("button", name=re.compile("finish", re.IGNORECASE)).click()
    added = [entry for entry in entries(page) if entry["entry_id"] not in before]
    assert len(added) == 1, added
    ADDED[sim.name] = added[0]["entry_id"]
    return added[0]


def wait_loaded(page: Page, entry_id: str) -> None:
    for _ in range(120):
        state = next((e["state"] for e in entries(page) if e["entry_id"] == entry_id), None)
        if state == "loaded":
            return
        page.wait_for_timeout(500)
    raise AssertionError(f"entry {entry_id} did not load")


def test_log_in_on_the_login_page(browser: Any, shots: Shots) -> None:
    """A person logs in with their user name and password and sees Home Assistant."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.goto(URL)
    expect(tab.get_by_role("textbox", name="Username")).to_be_visible(timeout=60_000)
    shots.take(tab, "login")
    log_in(tab)
    expect(tab.get_by_text("Settings", exact=True).first).to_be_visible()
    shots.take(tab, "logged-in")
    context.close()


@pytest.mark.parametrize("name", ["pace", "pace-slow", "pylon", "pylon-slow"])
def test_add_a_bank_through_add_integration(
    page: Page, shots: Shots, sims: dict[str, Sim], name: str
) -> None:
    """Each wire, answering at once or slowly, reaches "Packs found" and "Success"."""
    sim = sims[name]
    entry = add_bank(page, shots, sim)
    wait_loaded(page, entry["entry_id"])
    packs = [pack for pack in sim.state()["packs"] if pack["online"]]
    devices = bank_devices(page, entry["entry_id"])
    assert set(devices["packs"]) == {pack["serial"] for pack in packs}


def bank_devices(page: Page, entry_id: str) -> dict[str, Any]:
    """Return the bank's device and its packs' devices, by pack address."""
    devices = call_ws(page, {"type": "config/device_registry/list"})
    mine = [device for device in devices if entry_id in device["config_entries"]]
    bank = next(device for device in mine if device["via_device_id"] is None)
    # By serial number, which the simulator's values carry too.
    packs = {
        device["serial_number"]: device for device in mine if device["via_device_id"] == bank["id"]
    }
    return {"bank": bank, "packs": packs}


def shown(page: Page, name: str) -> str:
    """Return the value a device page shows in the row of the entity called ``name``."""
    row = page.locator("hui-generic-entity-row").filter(has=page.get_by_text(name, exact=True))
    expect(row.first).to_be_visible()
    return row.first.inner_text().strip()


def number(text: str) -> float:
    match = re.search(r"-?\d+(?:[.,]\d+)?", text.replace("\u2212", "-"))
    assert match, f"no number in {text!r}"
    return float(match.group(0).replace(",", "."))


def _entry_of(page: Page, sim: Sim) -> dict[str, Any]:
    entry = entry_on(page, sim)
    if entry is None:
        entry = add_bank(page, None, sim)
    wait_loaded(page, entry["entry_id"])
    return entry


def test_bank_and_pack_pages_show_the_simulators_values(
    page: Page, shots: Shots, sims: dict[str, Sim]
) -> None:
    """The bank's and a pack's device pages show what the packs report, to display precision."""
    sim = sims["pace"]
    entry = _entry_of(page, sim)
    devices = bank_devices(page, entry["entry_id"])

    page.goto(f"{URL}/config/devices/device/{devices['bank']['id']}")
    truth = sim.state()
    packs = [pack for pack in truth["packs"] if pack["online"]]
    assert number(shown(page, "Packs online")) == len(packs)
    current = number(shown(page, "Current"))
    assert current == pytest.approx(sum(pack["current"] for pack in packs), abs=0.1)
    voltage = number(shown(page, "Voltage"))
    low = min(pack["voltage"] for pack in packs)
    high = max(pack["voltage"] for pack in packs)
    assert low - 0.02 <= voltage <= high + 0.02
    shots.take(page, "bank-device", full_page=True)

    pack = packs[0]
    page.goto(f"{URL}/config/devices/device/{devices['packs'][pack['serial']]['id']}")
    expect(page.get_by_text("State of charge", exact=True).first).to_be_visible()
    truth = {p["address"]: p for p in sim.state()["packs"]}[pack["address"]]
    # Two decimals for volts, one for amps (half a step of rounding, and as
    # much again as the bank moves between Home Assistant's last poll and
    # now), whole percent.
    assert number(shown(page, "Voltage")) == pytest.approx(truth["voltage"], abs=0.02)
    assert number(shown(page, "Current")) == pytest.approx(truth["current"], abs=0.1)
    assert number(shown(page, "State of charge")) == pytest.approx(truth["soc"], abs=1.0)
    assert number(shown(page, "Cycles")) == truth["cycles"]
    assert number(shown(page, "Remaining capacity")) == pytest.approx(
        truth["remaining_capacity"], abs=0.2
    )
    shots.take(page, "pack-device", full_page=True)


def test_a_maintenance_repair_is_fixed_through_its_flow(
    page: Page, shots: Shots, sims: dict[str, Sim]
) -> None:
    """A terminal check falls due, shows as a repair, and is recorded through its fix flow.

    Maintenance falls due months after a bank is added. Home Assistant's
    clock cannot be moved in a running instance, so the bank's schedule is
    moved instead: with the bank disabled, its stored start date is set 400
    days back, as a bank added a year ago would have it.
    """
    sim = sims["pace"]
    entry = _entry_of(page, sim)
    entry_id = entry["entry_id"]
    call_ws(page, {"type": "config_entries/disable", "entry_id": entry_id, "disabled_by": "user"})
    store = CONFIG / ".storage" / f"{DOMAIN}.{entry_id}"
    for _ in range(60):
        if store.exists():
            break
        page.wait_for_timeout(500)
    saved = json.loads(store.read_text())
    created = saved["data"]["maintenance"]["created"]
    back = datetime.fromisoformat(created) - timedelta(days=400)
    saved["data"]["maintenance"]["created"] = back.isoformat()
    store.write_text(json.dumps(saved))
    call_ws(page, {"type": "config_entries/disable", "entry_id": entry_id, "disabled_by": None})
    wait_loaded(page, entry_id)

    issue_id = f"{entry_id}_maintenance_terminal_check"
    title = TRANSLATIONS["issues"]["maintenance_terminal_check"]["title"].replace(
        "{bank}", entry["title"]
    )
    for _ in range(120):
        issues = call_ws(page, {"type": "repairs/list_issues"})["issues"]
        if any(issue["issue_id"].startswith(issue_id) for issue in issues):
            break
        page.wait_for_timeout(500)
    else:
        raise AssertionError(f"no repair {issue_id}: {issues}")

    page.goto(f"{URL}/config/repairs")
    expect(page.get_by_text(title, exact=True)).to_be_visible()
    shots.take(page, "repairs")
    page.get_by_text(title, exact=True).click()
    flow = TRANSLATIONS["issues"]["maintenance_terminal_check"]["fix_flow"]["step"]["init"]
    expect(page.get_by_text(flow["title"]).first).to_be_visible()
    # It opens asking, not complaining (it used to say "This is not a date.").
    for error in TRANSLATIONS["issues"]["maintenance_terminal_check"]["fix_flow"]["error"].values():
        expect(page.get_by_text(error)).to_have_count(0)
    page.get_by_role("textbox", name=flow["data"]["note"]).fill("All lugs at 12 Nm")
    shots.take(page, "repair-fix-flow")
    submit(page)
    expect(page.get_by_text(re.compile("repaired|success", re.IGNORECASE)).first).to_be_visible()
    shots.take(page, "repair-done")
    page.keyboard.press("Escape")
    for _ in range(60):
        issues = call_ws(page, {"type": "repairs/list_issues"})["issues"]
        if not any(issue["issue_id"].startswith(issue_id) for issue in issues):
            break
        page.wait_for_timeout(500)
    else:
        raise AssertionError(f"the repair {issue_id} is still open")


def _open_options(page: Page, title: str) -> Locator:
    page.goto(f"{URL}/config/integrations/integration/{DOMAIN}")
    # The entry's row holds its title and its buttons.
    row = page.get_by_text(title, exact=True).locator("..")
    row.get_by_role("button", name=re.compile("configure", re.IGNORECASE)).first.click()
    dialog = page.locator("dialog-data-entry-flow")
    expect(dialog.get_by_role("button", name=re.compile("submit", re.IGNORECASE))).to_be_visible()
    return dialog


def test_an_option_is_changed_and_saved(page: Page, shots: Shots, sims: dict[str, Sim]) -> None:
    """A setting changed in the options form is kept: the form shows it when opened again."""
    entry = _entry_of(page, sims["pace"])
    dialog = _open_options(page, entry["title"])
    shots.take(page, "options")
    dialog.locator("ha-expansion-panel").first.click()
    field = dialog.get_by_role("spinbutton").first
    expect(field).to_be_visible()
    old = float(field.input_value())
    new = old + 1
    field.fill(f"{new:g}")
    shots.take(page, "options-changed")
    submit(page)
    expect(dialog.get_by_role("button", name=re.compile("submit", re.IGNORECASE))).to_be_hidden()
    page.keyboard.press("Escape")

    dialog = _open_options(page, entry["title"])
    dialog.locator("ha-expansion-panel").first.click()
    assert float(dialog.get_by_role("spinbutton").first.input_value()) == new
    page.keyboard.press("Escape")


def test_the_energy_dashboard_takes_the_banks_energy_sensors(
    page: Page, shots: Shots, sims: dict[str, Sim]
) -> None:
    """The bank's energy charged and discharged become the energy dashboard's battery."""
    version = call_ws(page, {"type": "get_config"})["version"]
    if int(version.split(".")[0]) >= 2026:
        # Its battery dialog asks for power and state of charge as well, and
        # its pickers are not yet driven here (typing reaches the page's
        # keyboard shortcuts instead): known, not yet done.
        pytest.xfail(f"the energy battery dialog of Home Assistant {version} is not driven yet")
    entry = _entry_of(page, sims["pace"])
    registry = call_ws(page, {"type": "config/entity_registry/list"})
    mine = [item["entity_id"] for item in registry if item["config_entry_id"] == entry["entry_id"]]
    charged = next(e for e in mine if e.endswith("energy_charged"))
    discharged = next(e for e in mine if e.endswith("energy_discharged"))

    page.goto(f"{URL}/config/energy")
    page.get_by_role("button", name=re.compile("add battery system", re.IGNORECASE)).click()
    dialog = page.locator("dialog-energy-battery-settings")
    shots.take(page, "energy-battery-dialog")
    pickers = dialog.locator("ha-statistic-picker")
    for picker, name in ((pickers.nth(0), "Energy charged"), (pickers.nth(1), "Energy discharged")):
        picker.click()
        page.keyboard.type(f"{entry['title']} {name}")
        page.get_by_role("option", name=re.compile(name)).first.click()
    shots.take(page, "energy-battery")
    dialog.get_by_role("button", name=re.compile("save", re.IGNORECASE)).click()
    expect(dialog).to_be_hidden()
    prefs = call_ws(page, {"type": "energy/get_prefs"})
    batteries = [source for source in prefs["energy_sources"] if source["type"] == "battery"]
    assert batteries == [
        {"type": "battery", "stat_energy_to": charged, "stat_energy_from": discharged}
    ] or [(b["stat_energy_to"], b["stat_energy_from"]) for b in batteries] == [
        (charged, discharged)
    ]
    shots.take(page, "energy-settings", full_page=True)


def test_an_instant_scan_finishes_twenty_times_in_a_row(page: Page, sims: dict[str, Sim]) -> None:
    """The flow that hung in 4 of 7 tries finishes every time, at once."""
    sim = sims["pylon"]
    took = []
    for attempt in range(20):
        # Away from the bank's own pages first: a page showing the entry
        # about to go reacts to its removal by navigating, racing the next step.
        page.goto(f"{URL}/config/integrations/dashboard")
        page.wait_for_function("() => document.querySelector('home-assistant')?.hass?.connection")
        if (entry := entry_on(page, sim)) is not None:
            call_api(page, "DELETE", f"config/config_entries/entry/{entry['entry_id']}")
        start = time.monotonic()
        entry = add_bank(page, None, sim)
        took.append(time.monotonic() - start)
        print(f"run {attempt + 1}: {took[-1]:.1f} s")
    print(f"20 runs: slowest {max(took):.1f} s, all {sum(took):.0f} s")
