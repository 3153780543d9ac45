"""Automatic protection in Home Assistant: asks the policies after each poll.

After every poll, when control is on and a policy is on (or still holds a
pack it took out), the policies in ``bank/policies.py`` propose changes.
Each goes through the same guard and write path as a user's change
(``BankController.async_change``: judged, written, read back, a repair when
the BMS does not take it), with the policy's name as "who" in the logbook
and the ``rack_battery_control`` event, and the reason and numbers beside
it. A refusal by the guard is logged, and told as an event, once per pack
and reason, not every poll; the proposal is simply made again next poll.

Which packs a policy took out is kept in the bank's store, so a restart
does not forget who isolated what; where the BMS lets a limit lapse, the
hold is set again on restore.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from homeassistant.core import callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.util import dt as dt_util

from .bank.control import Change, Decision, Reason
from .bank.policies import (
    Means,
    Policy,
    PolicyHold,
    PolicySettings,
    Proposal,
    plan,
    returned,
    taken,
)
from .const import CONF_POLICY_HOT, CONF_POLICY_PROTECTION, CONF_POLICY_SWING, LOGGER
from .protocol.drivers.pylontech_rs485 import CurrentHold

if TYPE_CHECKING:
    from .controller import BankController

STORE_POLICY_HOLDS = "policy_holds"

# The option that turns each policy on.
POLICY_OPTIONS: Mapping[Policy, str] = {
    Policy.BMS_PROTECTION: CONF_POLICY_PROTECTION,
    Policy.HOT_PACK: CONF_POLICY_HOT,
    Policy.LOOSE_CONNECTION: CONF_POLICY_SWING,
}


def policy_settings(options: Mapping[str, Any]) -> PolicySettings:
    """Return which policies the bank's options turn on (each off by default)."""
    return PolicySettings(
        enabled=frozenset(
            policy for policy, key in POLICY_OPTIONS.items() if options.get(key) is True
        )
    )


class PolicyRunner:
    """Runs the automatic protection of one bank through its controller."""

    def __init__(self, controller: BankController) -> None:
        """Propose through ``controller``, which judges and writes."""
        self.controller = controller
        # The packs the policies took out, by address (kept in the store).
        self.holds: dict[int, PolicyHold] = {}
        # The refusal last told, by pack: (reconnect, reason), so it is told once.
        self._refused: dict[int, tuple[bool, Reason]] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def settings(self) -> PolicySettings:
        """Return which policies are on."""
        return policy_settings(self.controller.entry.options)

    @property
    def means(self) -> Means:
        """Return the paths a policy may open: those the family can switch back."""
        caps = self.controller.capabilities
        return Means(charge=caps.charge_path, discharge=caps.discharge_path)

    # --- what is kept across restarts ---------------------------------------

    def export_state(self) -> list[dict[str, object]]:
        """Return the packs the policies took out, for the store."""
        return [hold.as_dict() for _, hold in sorted(self.holds.items())]

    def restore_state(self, data: object) -> None:
        """Read back the packs the policies took out; hold them again where a hold lapses."""
        controller = self.controller
        raw = data.get(STORE_POLICY_HOLDS) if isinstance(data, Mapping) else None
        holds = [PolicyHold.from_dict(item) for item in raw] if isinstance(raw, list) else []
        self.holds = {
            hold.address: hold
            for hold in holds
            if hold is not None and hold.address in controller.coordinator.packs
        }
        driver = controller.coordinator.driver
        from .controller import HoldingDriver  # noqa: PLC0415 - controller imports this module

        if not isinstance(driver, HoldingDriver):
            return
        if not controller.enabled:
            # Control off released every hold: the packs are back in the bank.
            self.holds.clear()
            return
        for address, hold in self.holds.items():
            driver.hold(
                address,
                CurrentHold(
                    charge=0.0 if hold.means.charge else None,
                    discharge=0.0 if hold.means.discharge else None,
                ),
            )

    # --- what a user's change means to the policies -------------------------

    def user_changed(self, change: Change) -> None:
        """Let go of a pack the user put back, or isolated (it is the user's now)."""
        if change.address in self.holds and (
            change.charge is not None or change.discharge is not None
        ):
            self.holds = returned(self.holds, change.address)
            self._refused.pop(change.address, None)
            self.controller.coordinator.async_save_soon()

    # --- after each poll ----------------------------------------------------

    @callback
    def async_after_poll(self) -> None:
        """Ask the policies after a poll, unless a pass is still running."""
        controller = self.controller
        if self._task is not None and not self._task.done():
            return
        if not controller.enabled or not controller.coordinator.last_update_success:
            return
        if not self.settings.enabled and not self.holds:
            return
        self._task = controller.entry.async_create_background_task(
            controller.hass, self._async_run(), name=f"{controller.entry.title} policies"
        )

    @property
    def running(self) -> bool:
        """Return whether a pass is running (it may wait for the next poll to read back)."""
        return self._task is not None and not self._task.done()

    async def async_wait(self) -> None:
        """Return once the pass running (if any) has finished."""
        if self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _async_run(self) -> None:
        controller = self.controller
        now = dt_util.utcnow()
        data = controller.coordinator.data
        before = set(self.holds)
        result = plan(
            now,
            data.snapshot,
            findings=data.analysis.open,
            holds=self.holds,
            user_isolated=controller.isolated,
            settings=self.settings,
            means=self.means,
        )
        self.holds = dict(result.holds)
        proposed = {proposal.address for proposal in result.proposals}
        for address in set(self._refused) - proposed:
            del self._refused[address]
        for proposal in result.proposals:
            await self._carry_out(proposal, now)
        if set(self.holds) != before:
            controller.coordinator.async_save_soon()

    async def _carry_out(self, proposal: Proposal, now: datetime) -> None:
        controller = self.controller
        address = proposal.address
        decision = controller.judge(proposal.change, now)
        if decision.reason is Reason.NO_CHANGE:
            if proposal.reconnect:
                # Back in the bank already (the BMS, or a hold lapsed).
                self.holds = returned(self.holds, address)
            return
        if not decision.allowed:
            self._tell_refusal(proposal, decision)
            return
        self._refused.pop(address, None)
        try:
            await controller.async_change(
                proposal.change, who=proposal.policy.value, details=self._details(proposal)
            )
        except HomeAssistantError as err:
            # Raised as a repair by the controller where the BMS did not take it.
            LOGGER.warning(
                "%s: the %s policy could not change pack %s: %s",
                controller.coordinator.name,
                proposal.policy.value,
                address,
                err,
            )
            return
        if proposal.reconnect:
            self.holds = returned(self.holds, address)
        else:
            self.holds = taken(self.holds, proposal, now, self.means)

    def _details(self, proposal: Proposal, decision: Decision | None = None) -> dict[str, Any]:
        details: dict[str, Any] = {
            "policy": proposal.policy.value,
            "policy_reason": proposal.why.value,
            "policy_values": dict(proposal.values),
        }
        if decision is not None:
            details["refused"] = decision.reason.value
            details["refused_values"] = dict(decision.values)
        return details

    def _tell_refusal(self, proposal: Proposal, decision: Decision) -> None:
        """Log and tell a refusal once per pack and reason."""
        key = (proposal.reconnect, decision.reason)
        if self._refused.get(proposal.address) == key:
            return
        self._refused[proposal.address] = key
        controller = self.controller
        LOGGER.info(
            "%s: the %s policy would %s pack %s (%s), but the guard refuses: %s %s",
            controller.coordinator.name,
            proposal.policy.value,
            "reconnect" if proposal.reconnect else "isolate",
            proposal.address,
            proposal.why.value,
            decision.reason.value,
            dict(decision.values),
        )
        controller.fire_refusal(
            proposal.change, proposal.policy.value, decision, self._details(proposal, decision)
        )
