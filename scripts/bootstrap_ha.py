"""Take a fresh Home Assistant from first start to showing the simulated bank.

scripts/develop runs this beside ``hass -c config``. It does, through Home
Assistant's own REST API and only what is not done yet, what a newcomer
would otherwise click through:

1. wait for Home Assistant's HTTP server (the first start installs the
   frontend and a few other packages from PyPI, so that takes minutes);
2. onboarding: create the user ``dev`` / ``dev``, then finish whichever of
   the core config, analytics and integration steps are still open
   (scripts/develop marks them done in a fresh config, so that the core
   config step does not set up Google Translate, Met.no and Radio Browser);
3. add the Rack Battery Bank through its config flow, pointed at the
   simulator, unless an entry of ``rack_battery`` already exists.

Running it again against a set-up instance changes nothing, so scripts/develop
runs it on every start. ``--token`` only logs in and prints an access token,
for curl against the REST API while developing.

Only the standard library is used: this must run before anything but Home
Assistant itself is known to be installed.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
import json
import os
import sys
import time
from typing import Any, cast
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode
from urllib.request import Request, urlopen

DOMAIN = "rack_battery"
# Onboarding adds these on its core-config step, as the frontend's onboarding
# would. They reach out to the internet (weather, radio stations, Google's
# speech service), which a development box does not need and this machine
# cannot reach, so they are removed again right after onboarding.
INTERNET_ONLY_DOMAINS = ("met", "radio_browser", "google_translate")
ONBOARDING_STEPS = ("user", "core_config", "analytics", "integration")


class BootstrapError(Exception):
    """A step failed in a way the developer has to look at."""


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: its status and, where there is one, its JSON body."""

    status: int
    body: Any


class HomeAssistant:
    """The few REST calls onboarding and a config flow need."""

    def __init__(self, url: str, *, timeout: float = 60.0) -> None:
        """Remember where Home Assistant listens; there is no token yet.

        The first start answers slowly while it installs what its own
        integrations need (on a busy machine a reply took over 10 s).
        """
        self.url = url.rstrip("/")
        self.client_id = f"{self.url}/"
        self.timeout = timeout
        self.token: str | None = None
        self.refresh_token: str | None = None

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        form: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send one request; return the reply whatever its status."""
        headers = {"Accept": "application/json"}
        data: bytes | None = None
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        elif form is not None:
            data = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urlopen(request, timeout=self.timeout) as response:
                return Reply(response.status, _json(response.read()))
        except HTTPError as err:
            return Reply(err.code, _json(err.read()))

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request and return its JSON; any status but 2xx is an error."""
        reply = self.request(method, path, **kwargs)
        if not 200 <= reply.status < 300:
            raise BootstrapError(f"{method} {path} answered {reply.status}: {reply.body}")
        return reply.body

    def wait_until_up(self, tries: int, hass_pid: int | None) -> list[dict[str, Any]]:
        """Poll the onboarding view until it answers; return its steps.

        Home Assistant opens its HTTP port only once the frontend, and so
        onboarding, is set up; the onboarding view answers without a token
        while onboarding is open, and is not registered at all (404) once it
        is done. So any answer from it means "up", and a 404 "all done".
        """
        for attempt in range(tries):
            if hass_pid is not None and not _alive(hass_pid):
                raise BootstrapError(
                    "Home Assistant exited before its HTTP server came up; "
                    "see config/home-assistant.log"
                )
            try:
                reply = self.request("GET", "/api/onboarding")
            except (URLError, OSError):
                reply = None
            if reply is not None and reply.status == 200:
                return cast(list[dict[str, Any]], reply.body)
            if reply is not None and reply.status == 404:
                return [{"step": step, "done": True} for step in ONBOARDING_STEPS]
            if attempt % 30 == 29:
                print(f"... still waiting for Home Assistant at {self.url} ({attempt + 1} s)")
            time.sleep(1.0)
        raise BootstrapError(f"Home Assistant did not answer at {self.url} within {tries} tries")

    def exchange(self, auth_code: str) -> None:
        """Turn an authorization code into the tokens for the calls that follow."""
        tokens = self.call(
            "POST",
            "/auth/token",
            form={
                "grant_type": "authorization_code",
                "code": auth_code,
                "client_id": self.client_id,
            },
        )
        self.token = tokens["access_token"]
        self.refresh_token = tokens.get("refresh_token")

    def log_in(self, username: str, password: str) -> None:
        """Log in as a person would on the login page, and keep the tokens."""
        flow = self.call(
            "POST",
            "/auth/login_flow",
            json_body={
                "client_id": self.client_id,
                "handler": ["homeassistant", None],
                "redirect_uri": f"{self.client_id}?auth_callback=1",
            },
        )
        result = self.call(
            "POST",
            f"/auth/login_flow/{flow['flow_id']}",
            json_body={"username": username, "password": password, "client_id": self.client_id},
        )
        if result.get("type") != "create_entry":
            raise BootstrapError(
                f"Cannot log in as {username!r}: {result.get('errors') or result}. "
                "Delete config/ to start with a fresh Home Assistant."
            )
        self.exchange(result["result"])

    def log_out(self) -> None:
        """Revoke this session's refresh token, so that runs do not pile sessions up."""
        if self.refresh_token:
            self.request("POST", "/auth/revoke", form={"token": self.refresh_token})
            self.refresh_token = None


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def onboard(ha: HomeAssistant, steps: list[dict[str, Any]], username: str, password: str) -> None:
    """Finish whichever onboarding steps are still open, and leave ``ha`` logged in."""
    done = {step["step"] for step in steps if step.get("done")}
    if "user" in done:
        ha.log_in(username, password)
    else:
        print(f"Onboarding: creating the user {username!r}")
        reply = ha.call(
            "POST",
            "/api/onboarding/users",
            json_body={
                "client_id": ha.client_id,
                "name": username.capitalize(),
                "username": username,
                "password": password,
                "language": "en",
            },
        )
        ha.exchange(reply["auth_code"])
    if "core_config" not in done:
        print("Onboarding: core configuration (from configuration.yaml)")
        ha.call("POST", "/api/onboarding/core_config", json_body={})
        prune_onboarding_extras(ha)
    if "analytics" not in done:
        # Marks the step done without opting in: analytics stays off.
        print("Onboarding: analytics (left off)")
        ha.call("POST", "/api/onboarding/analytics", json_body={})
    if "integration" not in done:
        print("Onboarding: integration step")
        ha.call(
            "POST",
            "/api/onboarding/integration",
            json_body={
                "client_id": ha.client_id,
                "redirect_uri": f"{ha.client_id}?auth_callback=1",
            },
        )


def entries(ha: HomeAssistant, domain: str | None = None) -> list[dict[str, Any]]:
    """Return the config entries, of one domain if given."""
    path = "/api/config/config_entries/entry"
    if domain:
        path += f"?domain={quote(domain)}"
    return cast(list[dict[str, Any]], ha.call("GET", path))


def prune_onboarding_extras(ha: HomeAssistant, tries: int = 60) -> None:
    """Remove the internet-only entries the core-config step starts creating.

    Their flows run in the background and first install their packages, so
    they appear some seconds after the step returns; wait (boundedly) for
    the two that are always created, and remove whatever has appeared.
    """
    expected = {"radio_browser", "google_translate"}
    removed: set[str] = set()
    for _ in range(tries):
        for entry in entries(ha):
            if entry["domain"] in INTERNET_ONLY_DOMAINS:
                ha.call("DELETE", f"/api/config/config_entries/entry/{entry['entry_id']}")
                removed.add(entry["domain"])
        if expected <= removed:
            break
        time.sleep(1.0)
    if removed:
        print(f"Onboarding: removed {', '.join(sorted(removed))} (they need the internet)")


def add_bank(ha: HomeAssistant, wire: str, host: str, port: int, family: str) -> dict[str, Any]:
    """Add the bank through the integration's config flow, as the UI would."""
    flow = ha.call(
        "POST",
        "/api/config/config_entries/flow",
        json_body={"handler": DOMAIN, "show_advanced_options": False},
    )
    if flow.get("type") == "menu":
        flow = ha.call(
            "POST",
            f"/api/config/config_entries/flow/{flow['flow_id']}",
            json_body={"next_step_id": wire},
        )
    if flow.get("type") != "form":
        raise BootstrapError(f"Unexpected step in the {DOMAIN} config flow: {flow}")
    path = f"/api/config/config_entries/flow/{flow['flow_id']}"
    result = ha.call("POST", path, json_body={"host": host, "port": port, "family": family})
    # The flow scans the bus in a progress step, then lists the packs found.
    for _ in range(60):
        if result.get("type") not in ("progress", "progress_done"):
            break
        if result.get("type") == "progress":
            time.sleep(1.0)
        result = ha.call("POST", path, json_body={})
    if result.get("type") == "form" and result.get("step_id") == "confirm":
        result = ha.call("POST", path, json_body={"packs": _packs_offered(result)})
    if result.get("type") != "create_entry":
        # Leave no half-finished flow behind in the UI's notifications.
        ha.request("DELETE", f"/api/config/config_entries/flow/{flow['flow_id']}")
        raise BootstrapError(
            f"The {DOMAIN} config flow did not finish against {host}:{port}: "
            f"{result.get('errors') or result.get('reason') or result}. "
            "Is the simulator running (config/simulator.log)?"
        )
    return cast(dict[str, Any], result["result"])


def _packs_offered(form: dict[str, Any]) -> list[str]:
    """Return every pack the confirm screen lists (all are ticked by default)."""
    for field in form.get("data_schema", []):
        if field.get("name") == "packs":
            return [str(address) for address in field.get("default", [])]
    raise BootstrapError(f"The {DOMAIN} confirm screen lists no packs: {form}")


def wait_loaded(ha: HomeAssistant, entry_id: str, tries: int = 30) -> str:
    """Wait (boundedly) for an entry's first poll; return the state it reached."""
    state = "unknown"
    for _ in range(tries):
        for entry in entries(ha, DOMAIN):
            if entry["entry_id"] == entry_id:
                state = entry["state"]
        if state not in ("not_loaded", "setup_in_progress", "unknown"):
            break
        time.sleep(1.0)
    return str(state)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default="http://127.0.0.1:8123")
    parser.add_argument("--username", default="dev")
    parser.add_argument("--password", default="dev")
    parser.add_argument("--wire", default="modbus_tcp", help="config flow menu option")
    parser.add_argument("--family", default="pace_modbus")
    parser.add_argument("--bank-host", default="127.0.0.1", help="where the simulator listens")
    parser.add_argument("--bank-port", type=int, default=5020)
    parser.add_argument(
        "--simulator-log", default="config/simulator.log", help="shown in the banner"
    )
    parser.add_argument("--hass-pid", type=int, help="give up early if this process exits")
    parser.add_argument(
        "--tries", type=int, default=900, help="seconds to wait for Home Assistant (default 900)"
    )
    parser.add_argument(
        "--token", action="store_true", help="only log in and print an access token"
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    ha = HomeAssistant(args.url)
    try:
        if args.token:
            ha.log_in(args.username, args.password)
            print(ha.token)
            return 0
        steps = ha.wait_until_up(args.tries, args.hass_pid)
        onboard(ha, steps, args.username, args.password)
        try:
            existing = entries(ha, DOMAIN)
            if existing:
                titles = ", ".join(f"{entry['title']} ({entry['state']})" for entry in existing)
                print(f"Rack Battery Bank already set up: {titles}")
            else:
                entry = add_bank(ha, args.wire, args.bank_host, args.bank_port, args.family)
                state = wait_loaded(ha, entry["entry_id"])
                print(
                    f"Rack Battery Bank added: {entry['title']} at "
                    f"{args.bank_host}:{args.bank_port} ({state})"
                )
        finally:
            ha.log_out()
    except BootstrapError as err:
        print(f"bootstrap_ha: {err}", file=sys.stderr)
        return 1
    except (URLError, OSError) as err:
        print(f"bootstrap_ha: Home Assistant stopped answering: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Ctrl-C in scripts/develop reaches us too; it stops everything itself.
        return 130
    rule = "=" * 64
    print(
        f"\n{rule}\n"
        f"  Home Assistant is ready:  {args.url}\n"
        f"  Log in as:                {args.username} / {args.password}\n"
        f"  The bank:                 {args.url}/config/integrations/integration/{DOMAIN}\n"
        f"  Simulator's own view:     tail -f {args.simulator_log}\n"
        f"  Ctrl-C stops Home Assistant and the simulator.\n"
        f"{rule}\n",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
