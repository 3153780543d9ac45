"""What the browser tests share: the simulators, Chromium, a logged-in page, screenshots.

scripts/e2e starts Home Assistant as scripts/develop does, with a fresh
config folder and one simulator, and passes where everything is through
the environment. The other simulators (a slow gateway, the Pylon protocol)
are started here, on the ports after the first one.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
import json
import os
from pathlib import Path
import re
import subprocess
import sys
import threading
from typing import IO, Any

from playwright.sync_api import (
    Browser,
    Page,
    Playwright,
    TimeoutError as PlaywrightTimeoutError,
    expect,
    sync_playwright,
)
import pytest

ROOT = Path(__file__).resolve().parents[2]
URL = os.environ.get("E2E_URL", "http://127.0.0.1:8141")
CONFIG = Path(os.environ.get("E2E_CONFIG", ROOT / "config"))
ARTIFACTS = Path(os.environ.get("E2E_ARTIFACTS", ROOT / "build" / "e2e"))
CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
SIM_PORT = int(os.environ.get("E2E_SIM_PORT", "5041"))
USERNAME = PASSWORD = "dev"
# Each answer this late makes a scan take several seconds: long enough for
# the flow to show its progress step, short of the drivers' reply timeout.
SLOW_GATEWAY = 0.3
# What a page is given to show something before an assertion fails: the
# default 5 s is short for current Home Assistant on two shared cores, and a
# passing assertion returns as soon as it holds, so this costs nothing.
expect.set_options(timeout=20_000)
TRANSLATIONS: dict[str, Any] = json.loads(
    (ROOT / "custom_components" / "rack_battery" / "translations" / "en.json").read_text()
)


@dataclass(frozen=True)
class Sim:
    """A simulated bank on loopback, and the file where it writes its values."""

    name: str
    wire: str
    port: int
    state_file: Path
    slow: bool

    def state(self) -> dict[str, Any]:
        """Return the bank's values as it last wrote them."""
        state: dict[str, Any] = json.loads(self.state_file.read_text())
        return state


def pytest_report_header() -> list[str]:
    """Say where the screenshots go, at the top of the run."""
    return [f"e2e: Home Assistant at {URL}; screenshots in {ARTIFACTS}"]


@pytest.fixture(scope="session")
def sims() -> Iterator[dict[str, Sim]]:
    """The four banks the tests add: two wires, each answering at once and slowly."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # The first is the one scripts/develop started.
    found = {"pace": Sim("pace", "modbus_tcp", SIM_PORT, ARTIFACTS / "sim-pace.json", slow=False)}
    started: list[subprocess.Popen[bytes]] = []
    readiness: list[threading.Event] = []
    extra = (
        ("pace-slow", "modbus_tcp", "pace-modbus", SLOW_GATEWAY),
        ("pylon", "ascii_tcp", "pylontech-ascii", 0.0),
        ("pylon-slow", "ascii_tcp", "pylontech-ascii", SLOW_GATEWAY),
    )
    try:
        for offset, (name, wire, protocol, latency) in enumerate(extra, start=1):
            sim = Sim(name, wire, SIM_PORT + offset, ARTIFACTS / f"sim-{name}.json", latency > 0)
            log = (ARTIFACTS / f"sim-{name}.log").open("wb")
            started.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "simulator",
                        "--protocol",
                        protocol,
                        "--port",
                        str(sim.port),
                        "--packs",
                        "3",
                        "--load",
                        "constant",
                        "--latency",
                        str(latency),
                        "--state-file",
                        str(sim.state_file),
                        # Serials of their own: a pack's device is keyed by its serial.
                        "--seed",
                        str(10 + offset),
                    ],
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    stderr=log,
                )
            )
            readiness.append(_relay_stdout(started[-1], log))
            found[name] = sim
        for sim, ready in zip(list(found.values())[1:], readiness, strict=True):
            # The simulator writes its values, then says on stdout that it serves.
            if not ready.wait(timeout=60):
                raise AssertionError(f"the {sim.name} simulator did not start within 60 s")
            assert sim.state_file.exists(), sim.state_file
        yield found
    finally:
        for process in started:
            process.terminate()
        for process in started:
            process.wait(timeout=30)


def _relay_stdout(process: subprocess.Popen[bytes], log: IO[bytes]) -> threading.Event:
    """Copy a simulator's stdout into its log; return an event set at its first line.

    The first line is the simulator saying that it serves, so nothing has to
    look again and again for it to be ready.
    """
    ready = threading.Event()

    def relay() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            log.flush()
            ready.set()
        ready.set()  # ended: let the waiter see the state file is missing

    threading.Thread(target=relay, name=f"simulator {process.pid} stdout", daemon=True).start()
    return ready


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium; Playwright's own browser download does not work here."""
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    yield launched
    launched.close()


class Shots:
    """Numbered screenshots in the artifact folder, in the order they were taken."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    def take(self, page: Page, name: str, *, full_page: bool = False) -> Path:
        """Save what the page shows now as NN-name.png and return its path."""
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        # Animations (a dialog opening, a toast sliding in) are played to
        # their end for the picture, rather than waited for.
        page.screenshot(path=path, full_page=full_page, animations="disabled")
        return path


@pytest.fixture(scope="session")
def shots() -> Shots:
    folder = ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nScreenshots: {folder}")
    return Shots(folder)


def log_in(page: Page) -> None:
    """Log in on the login page as a person would."""
    page.goto(URL)
    page.get_by_role("textbox", name="Username").fill(USERNAME)
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name=re.compile("log in", re.IGNORECASE)).click()
    # The first login after a fresh start can take minutes on current Home
    # Assistant: it is still installing what its default integrations need.
    page.wait_for_url(re.compile(r"/(lovelace|home)"), timeout=240_000)
    page.locator("home-assistant").wait_for()
    confirm_http_settings(page)


def confirm_http_settings(page: Page) -> None:
    """Keep the HTTP settings of configuration.yaml, where Home Assistant asks to.

    Current Home Assistant asks, at the first login after its HTTP settings
    changed (the port and address scripts/develop writes), whether to keep
    them, and reverts them after three minutes otherwise; 2025.4 does not ask.
    """
    if major_version(page) < 2026:
        return
    ask = page.get_by_text(re.compile("confirm new http server configuration", re.IGNORECASE))
    try:
        ask.first.wait_for(timeout=5_000)
    except PlaywrightTimeoutError:
        return
    page.get_by_role("button", name=re.compile(r"^\s*confirm\s*$", re.IGNORECASE)).click()
    ask.first.wait_for(state="hidden")


@pytest.fixture(scope="session")
def page(browser: Browser) -> Iterator[Page]:
    """One logged-in tab for the tests that follow each other through the UI."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    tab = context.new_page()
    log_in(tab)
    yield tab
    context.close()


def call_ws(page: Page, message: dict[str, Any]) -> Any:
    """Send a websocket command as the logged-in frontend does."""
    return page.evaluate(
        "async (message) => document.querySelector('home-assistant').hass.callWS(message)",
        message,
    )


def major_version(page: Page) -> int:
    """Return the year of the Home Assistant release the page is connected to."""
    page.wait_for_function("() => document.querySelector('home-assistant')?.hass?.config")
    version: str = page.evaluate(
        "() => document.querySelector('home-assistant').hass.config.version"
    )
    return int(version.split(".", maxsplit=1)[0])


# Waits in the page, on what Home Assistant pushes over the frontend's own
# websocket: each subscribes first, then looks once, so that nothing that
# happened before the subscription is missed, and never asks again on a timer.
_ENTRY_STATE_JS = """
async ([entryId, states, timeout]) => {
  const conn = document.querySelector('home-assistant').hass.connection;
  let unsubscribe;
  let last = null;
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`entry ${entryId} still ${last} after ${timeout} ms`)), timeout);
      conn.subscribeMessage((changes) => {
        for (const change of changes) {
          if (change.entry.entry_id !== entryId) continue;
          last = change.type === 'removed' ? 'removed' : change.entry.state;
          if (states.includes(last)) { clearTimeout(timer); resolve(last); }
        }
      }, { type: 'config_entries/subscribe' }).then((unsub) => { unsubscribe = unsub; }, reject);
    });
  } finally {
    if (unsubscribe) await unsubscribe();
  }
}
"""

_ISSUE_JS = """
async ([prefix, present, timeout]) => {
  const hass = () => document.querySelector('home-assistant').hass;
  const unsubscribers = [];
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(
        `repair ${prefix} ${present ? 'not raised' : 'still open'} after ${timeout} ms`)), timeout);
      const look = async () => {
        const { issues } = await hass().callWS({ type: 'repairs/list_issues' });
        const found = issues.filter((issue) => issue.issue_id.startsWith(prefix));
        if ((found.length > 0) === present) { clearTimeout(timer); resolve(found); }
      };
      const changed = () => look().catch(reject);
      hass().connection.subscribeEvents(changed, 'repairs_issue_registry_updated')
        .then((unsub) => { unsubscribers.push(unsub); return look(); })
        .catch(reject);
    });
  } finally {
    for (const unsub of unsubscribers) await unsub();
  }
}
"""


def wait_for_entry(page: Page, entry_id: str, *states: str, timeout: float = 120_000) -> str:
    """Wait until a config entry reaches one of ``states``; return the one it reached.

    Home Assistant tells the frontend of every change of an entry's state
    (``config_entries/subscribe``); its first message lists every entry as
    it is, so an entry already there counts at once.
    """
    reached: str = page.evaluate(_ENTRY_STATE_JS, [entry_id, list(states), timeout])
    return reached


def wait_for_issue(
    page: Page, prefix: str, *, present: bool = True, timeout: float = 120_000
) -> list[dict[str, Any]]:
    """Wait until a repair whose id starts with ``prefix`` is open (or gone); return it.

    Looks again only when the repairs registry says it changed.
    """
    found: list[dict[str, Any]] = page.evaluate(_ISSUE_JS, [prefix, present, timeout])
    return found


def wait_for_state(page: Page, entity_id: str, state: str, timeout: float = 60_000) -> None:
    """Wait until the frontend holds ``state`` for an entity (it is pushed every change)."""
    page.wait_for_function(
        "([id, state]) =>"
        " document.querySelector('home-assistant').hass.states[id]?.state === state",
        arg=[entity_id, state],
        timeout=timeout,
    )


def state_of(page: Page, entity_id: str) -> dict[str, Any] | None:
    """Return an entity's state as the frontend holds it."""
    held: dict[str, Any] | None = page.evaluate(
        "(id) => document.querySelector('home-assistant').hass.states[id] ?? null", entity_id
    )
    return held


def wait_for_focused_input(page: Page, within: str) -> None:
    """Wait until the keyboard reaches a text field inside an element named ``within``.

    Dialogs and pickers focus their search field a frame or an animation
    after they open; a key typed before that reaches the page behind (whose
    keyboard shortcuts then open something else).
    """
    page.wait_for_function(
        """(within) => {
          let element = document.activeElement;
          const path = [];
          while (element) {
            path.push(element.localName);
            if (!element.shadowRoot?.activeElement) break;
            element = element.shadowRoot.activeElement;
          }
          return ['input', 'textarea'].includes(path.at(-1))
            && path.some((name) => name === within || name.startsWith(within));
        }""",
        arg=within,
    )


def call_api(page: Page, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """Call Home Assistant's REST API with the logged-in frontend's token."""
    return page.evaluate(
        "async ([method, path, body]) =>"
        " document.querySelector('home-assistant').hass.callApi(method, path, body)",
        [method, path, body],
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any]:
    """Keep each phase's report on the test, for the screenshot taken when it failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(autouse=True)
def screenshot_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """Save what the shared tab showed when a test failed, beside the step screenshots."""
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed and "page" in request.fixturenames:
        tab: Page = request.getfixturevalue("page")
        name = re.sub(r"[^\w.-]+", "-", request.node.name)
        tab.screenshot(path=ARTIFACTS / f"failed-{name}.png")
