"""Fixtures shared by every test, and the guard against deprecated APIs."""

from __future__ import annotations

from collections.abc import Generator
import logging
import re

import pytest

# How Home Assistant tells that an integration uses an API it has deprecated
# or removed: its frame helper (report_usage) and its deprecation helper
# (deprecated constants, functions and classes) both log a warning that
# names the integration.
_DEPRECATED_USE = re.compile(
    r"Detected that custom integration 'rack_battery'"
    r"|The deprecated .* was (used|called|accessed|imported) from rack_battery\b"
)
_REPORTS = pytest.StashKey["_DeprecationReports"]()


class _DeprecationReports(logging.Handler):
    """Collect Home Assistant's reports about this integration's use of old APIs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if _DEPRECATED_USE.search(message):
            self.messages.append(f"{record.name}: {message}")

    def take(self) -> list[str]:
        messages, self.messages = self.messages, []
        return messages


def _fail_on(messages: list[str]) -> None:
    if messages:
        pytest.fail(
            "Home Assistant reported a deprecated or removed API used by rack_battery:\n"
            + "\n".join(messages),
            pytrace=False,
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None]:
    """Listen for reports from the first fixture on."""
    reports = _DeprecationReports()
    item.stash[_REPORTS] = reports
    logging.getLogger().addHandler(reports)
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None]:
    """Fail the test that made Home Assistant report a deprecated use, in setup or body."""
    result = yield
    _fail_on(item.stash[_REPORTS].take())
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None]:
    """Also catch what unloading reported, then stop listening."""
    try:
        result = yield
    finally:
        reports = item.stash.get(_REPORTS, None)
        if reports is not None:
            logging.getLogger().removeHandler(reports)
    if reports is not None:
        _fail_on(reports.take())
    return result


@pytest.fixture(autouse=True)
def loopback_sockets(socket_enabled: None) -> None:
    """Let tests open real sockets; the connections stay on loopback.

    Home Assistant's test plugin blocks socket creation and allows connections
    only to 127.0.0.1. The tests talk to the simulator over real TCP, so the
    first block is lifted; the second stays, and keeps traffic on this machine.
    """


def pytest_configure(config: pytest.Config) -> None:
    """Keep the recorder's SQL out of the output.

    Tests with the recorder on would otherwise print every statement
    SQLAlchemy runs, from the recorder's own thread, past pytest's capture.
    """
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
