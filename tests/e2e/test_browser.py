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
    state_of,
    wait_for_entry,
    wait_for_focused_input,
    wait_for_issue,
    wait_for_state,
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
    wait_for_focused_input(page, "dialog-add-integration")
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
    """Wait until the bank is set up: told by Home Assistant, not asked again and again.

    A retry (a first read that timed out on a busy machine) is waited
    through; an error is not.
    """
    state = wait_for_entry(page, entry_id, "loaded", "setup_error", "migration_error")
    assert state == "loaded", f"entry {entry_id} is {state}"


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


# What the bank picture writes, by element id (picture.py): read in the
# page from the very picture the browser shows.
_PICTURE_TEXTS_JS = """
async (image) => {
  const response = await fetch(image.currentSrc || image.src);
  const svg = new DOMParser().parseFromString(await response.text(), 'image/svg+xml');
  const texts = {};
  for (const text of svg.querySelectorAll('text[id]')) texts[text.id] = text.textContent;
  return {
    type: response.headers.get('content-type'),
    texts,
    width: image.naturalWidth,
    shownWidth: image.getBoundingClientRect().width,
  };
}
"""


def test_the_bank_picture_shows_each_pack(page: Page, shots: Shots, sims: dict[str, Sim]) -> None:
    """The bank device's picture opens, loads, and draws every pack with its values.

    Each pack is labelled, with its voltage and state of charge as the
    simulator has them (to what the picture rounds to: 0.1 V, 1 %, and a
    step more for the bank moving on since it was drawn); the bus voltage
    sits among the packs'.
    """
    sim = sims["pace"]
    entry = _entry_of(page, sim)
    devices = bank_devices(page, entry["entry_id"])
    page.goto(f"{URL}/config/devices/device/{devices['bank']['id']}")
    name = TRANSLATIONS["entity"]["image"]["overview"]["name"]
    row = page.locator("hui-generic-entity-row").filter(has=page.get_by_text(name, exact=True))
    row.first.click()
    image = page.locator("ha-more-info-dialog img[src*='/api/image_proxy/']")
    expect(image).to_be_visible()
    # Loaded and decoded: an image that failed has no natural size.
    page.wait_for_function(
        "(image) => image.complete && image.naturalWidth > 0", arg=image.element_handle()
    )
    picture = image.evaluate(_PICTURE_TEXTS_JS)
    truth = sim.state()
    shots.take(page, "bank-picture")
    page.keyboard.press("Escape")

    assert picture["type"].startswith("image/svg+xml")
    # Readable: drawn across most of the dialog, not as a thumbnail.
    assert picture["shownWidth"] >= 300, picture["shownWidth"]
    texts: dict[str, str] = picture["texts"]
    packs = [pack for pack in truth["packs"] if pack["online"]]
    assert {key for key in texts if key.endswith("-label")} == {
        f"pack{pack['address']}-label" for pack in packs
    }
    for pack in packs:
        drawn = f"pack{pack['address']}"
        assert texts[f"{drawn}-label"] == f"Pack {pack['address']}"
        assert texts[f"{drawn}-voltage"].endswith(" V")
        assert number(texts[f"{drawn}-voltage"]) == pytest.approx(pack["voltage"], abs=0.1)
        assert number(texts[f"{drawn}-soc"]) == pytest.approx(pack["soc"], abs=1.5)
    bus = number(texts["bank-voltage"])
    low = min(pack["voltage"] for pack in packs)
    high = max(pack["voltage"] for pack in packs)
    assert low - 0.1 <= bus <= high + 0.1


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
    # The bank writes what it keeps as it unloads, before it counts as not loaded.
    wait_for_entry(page, entry_id, "not_loaded")
    store = CONFIG / ".storage" / f"{DOMAIN}.{entry_id}"
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
    wait_for_issue(page, issue_id)

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
    wait_for_issue(page, issue_id, present=False)
    # And the list a person looks at no longer shows it.
    expect(page.get_by_text(title, exact=True)).to_have_count(0)


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


CONTROL = TRANSLATIONS["options"]["step"]["control"]
SWITCHES = TRANSLATIONS["entity"]["switch"]


def _toggle(page: Page, name: str) -> Locator:
    """Return the switch in the device page's row of the entity called ``name``."""
    row = page.locator("hui-toggle-entity-row").filter(has=page.get_by_text(name, exact=True))
    return row.first.get_by_role("switch")


def _flip(switch: Locator) -> None:
    """Click a switch, wherever the page has moved it to.

    2026.x draws its track over the checkbox, which then "intercepts"
    Playwright's pointer click, and a forced pointer click lands where the
    switch was a moment before: a freshly opened device page still moves
    as its cards load. The click is dispatched to the switch itself, which
    toggles it and runs the frontend's handler just as a tap does.
    """
    switch.dispatch_event("click")


def test_control_isolates_a_pack_and_refuses_one_too_many(
    page: Page, shots: Shots, sims: dict[str, Sim]
) -> None:
    """Control is turned on in the options, a pack is isolated from its page,
    and isolating one more than the guard allows is refused on screen.

    A Pylontech bank of three packs (its paths are switched by a 0 A limit);
    at least two must stay connected. Taking the first out leaves two and is
    done; taking the second out would leave one, and the message says so.
    """
    sim = sims["pylon"]
    entry = _entry_of(page, sim)
    dialog = _open_options(page, entry["title"])
    submit(page)
    expect(dialog.get_by_text(CONTROL["title"], exact=True)).to_be_visible()
    allow = dialog.get_by_role("switch", name=CONTROL["data"]["control_enabled"])
    expect(allow).not_to_be_checked()
    _flip(allow)
    expect(allow).to_be_checked()
    dialog.get_by_role("spinbutton", name=CONTROL["data"]["control_min_connected"]).fill("2")
    shots.take(page, "control-options")
    submit(page)
    expect(dialog.get_by_role("button", name=re.compile("submit", re.IGNORECASE))).to_be_hidden()
    page.keyboard.press("Escape")

    devices = bank_devices(page, entry["entry_id"])
    packs = sorted(
        (pack for pack in sim.state()["packs"] if pack["online"]), key=lambda p: p["address"]
    )
    first, second = (devices["packs"][pack["serial"]] for pack in packs[:2])
    discharge = SWITCHES["discharge_path"]["name"]

    # The bank reloads with control on; the pack's page grows its switches,
    # on as the BMS reports them.
    page.goto(f"{URL}/config/devices/device/{first['id']}")
    switch = _toggle(page, discharge)
    expect(switch).to_be_checked(timeout=60_000)
    registry = call_ws(page, {"type": "config/entity_registry/list"})
    switch_id = next(
        item["entity_id"]
        for item in registry
        if item["device_id"] == first["id"] and item["translation_key"] == "discharge_path"
    )
    _flip(switch)
    # Off as the BMS reads it back, not only as clicked: the pack carries
    # nothing (the simulator's file trails its wire by up to a tick, so the
    # page is the witness here).
    wait_for_state(page, switch_id, "off")
    expect(switch).not_to_be_checked()
    current = page.locator("hui-generic-entity-row").filter(
        has=page.get_by_text("Current", exact=True)
    )
    expect(current.first).to_contain_text(re.compile(r"(^|\s)-?0(\.0)?\s*A"))
    shots.take(page, "control-isolated")

    page.goto(f"{URL}/config/devices/device/{second['id']}")
    switch = _toggle(page, discharge)
    expect(switch).to_be_checked()
    _flip(switch)
    refusal = TRANSLATIONS["exceptions"]["refused_below_minimum_discharge"]["message"].format(
        pack=second["name_by_user"] or second["name"],
        remaining=1,
        direction="discharge",
        minimum=2,
    )
    # Whatever the guard said is shown (a different refusal fails here with
    # its own words, not as a missing message).
    message = page.get_by_text(
        re.compile(re.escape(second["name_by_user"] or second["name"]) + " stays")
    )
    expect(message.first).to_contain_text(refusal)
    shots.take(page, "control-refused")
    # Nothing was switched. The frontend leaves a toggle where it was
    # clicked when the action fails, until the state changes; the state
    # stays on, and the page opened again shows the switch on.
    second_id = next(
        item["entity_id"]
        for item in registry
        if item["device_id"] == second["id"] and item["translation_key"] == "discharge_path"
    )
    held = state_of(page, second_id)
    assert held is not None
    assert held["state"] == "on"
    page.reload()
    expect(_toggle(page, discharge)).to_be_checked()
    # And the first stays out.
    assert (state_of(page, switch_id) or {}).get("state") == "off"


def _pick_statistic(page: Page, picker: Locator, device: str, name: str, statistic_id: str) -> None:
    """Choose a device's statistic in one of the energy dialog's pickers, as a person does.

    2025.x: a combo box whose own field takes the typing and lists options.
    2026.x: a field that opens a popover with a search field (focused a frame
    after it opens, so typing waits for it) and a list of rows, each the
    entity's name over its device's. Either way the picker then holds the
    statistic (2026.x's only once its popover has closed).
    """
    if picker.locator("ha-generic-picker").count() == 0:
        picker.click()
        page.keyboard.type(f"{device} {name}")
        page.get_by_role("option", name=re.compile(name)).first.click()
    else:
        picker.click()
        wait_for_focused_input(page, "ha-statistic-picker")
        page.keyboard.type(f"{device} {name}")
        # Rows of the open list; the field itself shows no statistic yet.
        rows = picker.locator("ha-combo-box-item, [role='option'], .combo-box-row")
        row = rows.filter(has=page.get_by_text(name, exact=True)).filter(
            has=page.get_by_text(device, exact=True)
        )
        row.first.click()
    page.wait_for_function(
        "([picker, id]) => picker.value === id", arg=[picker.element_handle(), statistic_id]
    )


def _energy_pickers(dialog: Locator) -> tuple[Locator, Locator]:
    """Return the battery dialog's "energy in" and "energy out" pickers.

    By their labels where the pickers are 2026.x's (which put "out" first),
    else in 2025.x's order (in, then out).
    """
    pickers = dialog.locator("ha-statistic-picker")
    expect(pickers.first).to_be_visible()
    if pickers.first.locator("ha-generic-picker").count() == 0:
        return pickers.nth(0), pickers.nth(1)
    labels: list[str] = pickers.evaluate_all("(all) => all.map((picker) => picker.label ?? '')")
    into = [i for i, label in enumerate(labels) if re.search(r"\binto\b", label, re.I)]
    out = [i for i, label in enumerate(labels) if re.search(r"\b(from|out of)\b", label, re.I)]
    assert len(into) == 1, labels
    assert len(out) == 1, labels
    return pickers.nth(into[0]), pickers.nth(out[0])


def test_the_energy_dashboard_takes_the_banks_energy_sensors(
    page: Page, shots: Shots, sims: dict[str, Sim]
) -> None:
    """The bank's energy charged and discharged become the energy dashboard's battery."""
    entry = _entry_of(page, sims["pace"])
    registry = call_ws(page, {"type": "config/entity_registry/list"})
    mine = [item["entity_id"] for item in registry if item["config_entry_id"] == entry["entry_id"]]
    charged = next(e for e in mine if e.endswith("energy_charged"))
    discharged = next(e for e in mine if e.endswith("energy_discharged"))

    page.goto(f"{URL}/config/energy")
    page.get_by_role("button", name=re.compile("add battery system", re.IGNORECASE)).click()
    dialog = page.locator("dialog-energy-battery-settings")
    # 2026.x asks for power and state of charge as well, both optional.
    into, out = _energy_pickers(dialog)
    shots.take(page, "energy-battery-dialog")
    _pick_statistic(page, into, entry["title"], "Energy charged", charged)
    _pick_statistic(page, out, entry["title"], "Energy discharged", discharged)
    save = dialog.get_by_role("button", name=re.compile("save", re.IGNORECASE))
    expect(save).to_be_enabled()
    shots.take(page, "energy-battery")
    save.click()
    expect(save).to_be_hidden()
    prefs = call_ws(page, {"type": "energy/get_prefs"})
    batteries = [source for source in prefs["energy_sources"] if source["type"] == "battery"]
    assert [(b["stat_energy_to"], b["stat_energy_from"]) for b in batteries] == [
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
