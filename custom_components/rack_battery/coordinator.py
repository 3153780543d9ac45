"""The coordinator that polls one bank, and the runtime data of its entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import override

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed
from homeassistant.util import dt as dt_util

from .bank.model import BankSnapshot, PackIdentity, PackReading, PollReport
from .const import DOMAIN, LOGGER, SCAN_INTERVAL
from .protocol.drivers.base import BmsDriver
from .protocol.errors import BusUnavailable, FrameError, PackNotResponding

type RackBatteryConfigEntry = ConfigEntry[RackBatteryRuntimeData]


class BankCoordinator(DataUpdateCoordinator[BankSnapshot]):
    """Polls every pack of one bank and reports which answered.

    A poll comes back partial: each pack is read on its own, so one pack that
    falls silent leaves the others, and the bank's totals over them, current.
    Only a bus that answers nobody fails the poll.
    """

    config_entry: RackBatteryConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        entry: RackBatteryConfigEntry,
        driver: BmsDriver,
        packs: dict[int, PackIdentity],
    ) -> None:
        """Initialize the coordinator."""
        self.driver = driver
        self.packs = packs
        self._silent: set[int] = set()
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=entry.title,
            update_interval=SCAN_INTERVAL,
        )

    @override
    async def _async_update_data(self) -> BankSnapshot:
        """Poll the bank, reporting which packs answered."""
        try:
            report = await self.driver.poll(self.packs)
        except BusUnavailable as err:
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="bus_unavailable",
                translation_placeholders={"error": str(err)},
            ) from err

        # A pack that just fell silent gets one more chance within the poll:
        # on a busy RS485 line a single late reply is common, and one blip
        # should not blank its entities. A pack silent for a while is not
        # asked twice, so a pack that is really gone cannot double every poll.
        if newly_silent := report.failed.keys() - self._silent:
            report = await self._retry(report, newly_silent)

        self._log_silence(report)
        return BankSnapshot(
            taken_at=dt_util.utcnow(), readings=report.readings, failed=report.failed
        )

    async def _retry(self, report: PollReport, addresses: set[int]) -> PollReport:
        """Ask the packs that just fell silent once more."""
        readings: dict[int, PackReading] = dict(report.readings)
        failed = dict(report.failed)
        for address in sorted(addresses):
            try:
                readings[address] = await self.driver.read_pack(address)
            except (PackNotResponding, FrameError) as err:
                failed[address] = str(err) or type(err).__name__
            except BusUnavailable:
                # The link died between the two attempts: what answered a
                # moment ago is still current, and the next poll will say so.
                break
            else:
                del failed[address]
        return PollReport(readings=readings, failed=failed)

    def _log_silence(self, report: PollReport) -> None:
        """Log a pack falling silent once, and log its return."""
        for address, error in report.failed.items():
            if address not in self._silent:
                self._silent.add(address)
                LOGGER.warning(
                    "%s: pack %s did not answer and is shown unavailable: %s",
                    self.name,
                    address,
                    error,
                )
        for address in report.readings.keys() & self._silent:
            self._silent.discard(address)
            LOGGER.info("%s: pack %s is answering again", self.name, address)


@dataclass(kw_only=True)
class RackBatteryRuntimeData:
    """Runtime data of a bank's config entry."""

    coordinator: BankCoordinator
    bank_device_id: str
