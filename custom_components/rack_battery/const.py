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
