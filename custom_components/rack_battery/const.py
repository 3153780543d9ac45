"""Constants of the Rack Battery Bank integration."""

from datetime import timedelta
import logging
from typing import Final

DOMAIN: Final = "rack_battery"
LOGGER = logging.getLogger(__package__)

CONF_FAMILY: Final = "family"
CONF_PACKS: Final = "packs"

# Racks change slowly, but a current step should show within a few seconds,
# and a bus of fifteen packs at 9600 baud needs most of ten to read.
SCAN_INTERVAL: Final = timedelta(seconds=10)
# How long one pack may take to answer before it counts as silent.
RESPONSE_TIMEOUT: Final = 1.0

# Fired on the bus for every finding raised, changed or cleared (README).
EVENT_FINDING: Final = "rack_battery_finding"
# Where each rule is explained, under a heading named by its key.
RULES_URL: Final = "https://github.com/rack-battery-bank/rack-battery-bank/blob/main/docs/rules.md"

# Control (README "Control"): off until the user turns it on in the options.
CONF_CONTROL: Final = "control_enabled"
CONF_MIN_CONNECTED: Final = "control_min_connected"
CONF_MARGIN: Final = "control_margin_percent"
CONF_JOIN_VOLTAGE: Final = "control_max_join_voltage"
CONF_MIN_INTERVAL: Final = "control_min_interval_minutes"
# How long a reconnect "when matched" waits before it gives up.
CONF_REJOIN_TIMEOUT: Final = "control_rejoin_timeout_minutes"
# Fired for every change written to a pack (README).
EVENT_CONTROL: Final = "rack_battery_control"
