"""Fixtures shared by the protocol tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import pytest

from simulator.wiretap import Wiretap, start_wiretap


class Listening(Protocol):
    """A simulated device somebody can connect to."""

    @property
    def host(self) -> str:
        """Return the address it listens on."""

    @property
    def port(self) -> int:
        """Return the port it listens on."""


@pytest.fixture
async def tap(server: Listening) -> AsyncIterator[Wiretap]:
    """Sit between the driver and the module's ``server`` fixture, and record the wire."""
    running = await start_wiretap(server.host, server.port)
    yield running
    await running.stop()
