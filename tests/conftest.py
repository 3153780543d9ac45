"""Fixtures shared by every test."""

from __future__ import annotations

import os

import pytest

# The browser tests need a running Home Assistant and Chromium: scripts/e2e
# starts them and asks for tests/e2e; a plain run of the suite leaves them out.
collect_ignore = [] if os.environ.get("RACK_BATTERY_E2E") else ["e2e"]


@pytest.fixture(autouse=True)
def loopback_sockets(socket_enabled: None) -> None:
    """Let tests open real sockets; the connections stay on loopback.

    Home Assistant's test plugin blocks socket creation and allows connections
    only to 127.0.0.1. The tests talk to the simulator over real TCP, so the
    first block is lifted; the second stays, and keeps traffic on this machine.
    """
