"""Pylontech low-voltage packs over RS485 (Pylon ASCII framing, VER 0x20).

In a parallel bank the first pack is the master at ADR 2 and the others are
slaves at 3, 4, ...; a second group m adds 0x10 * m. The master relays
every request to the pack addressed, so each pack can be asked on its own,
at its own ADR, with the command byte inside INFO repeating that address.
When the master cannot reach a slave it answers for it with return code
0x91: that pack is offline, the bus is not. When the master itself is off,
nothing answers at all.

A pack is read as 0x42 (values), 0x44 (alarms, FET state) and 0x92 (the
limits it asks of the inverter). The master also answers 0x42 and 0x44 for
its whole group at once (INFO = 0xFF: a flag, the number of packs M, then M
blocks laid out as one pack's), so a poll asks it that first: a bank of n
packs is read in two transactions instead of 2n. That reply numbers its
packs only by position, so it is used only when it holds exactly the packs
the poll asks for in the master's group, from the master up without a gap;
otherwise (a slave the master cannot reach, a pack not yet in the bank)
the packs are read one by one, where a missing pack has a name, and while
a slave stays unreachable the group read is not asked again until every
pack answers. Firmware
that refuses INFO = 0xFF is read pack by pack from then on; packs outside
the master's group (a second group) are always read pack by pack.

The limits of 0x92 are not in the group reply. They move in steps, with
the temperature and the state of charge, so they are read at the slow
cadence of :mod:`..cadence` and kept in every reading between two reads;
a pack whose limits are held by 0x94 (or were until lately) has them read
every poll, as the read-back of the hold.

A scan uses the same reply for its count: the master says how many packs
it reached, so a scan asks only as far as it must instead of waiting out a
response timeout at every empty address of the range.

Pylontech sends no state of charge and no design capacity over RS485; the
reading derives the state of charge from remaining and total capacity.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

from ...bank.model import PackIdentity, PackReading, PollReport
from ..cadence import SlowReads
from ..errors import BusUnavailable, FrameError, PackNotResponding, ProtocolError
from ..pylon.alarms import AlarmState, decode_pylontech_alarms, decode_pylontech_bank_alarms
from ..pylon.analog import decode_bank_analog
from ..pylon.frame import RTN_CID2_INVALID, ReturnCodeError
from ..pylon.identity import decode_manufacturer_info, decode_serial
from ..pylon.management import (
    ChargeManagement,
    SystemParameters,
    decode_charge_management,
    decode_firmware,
    decode_system_parameters,
    encode_charge_management_command,
)
from ..pylon.profiles import PYLONTECH
from .pylon_ascii import CID2_ALARMS, CID2_ANALOG, AsciiTransport, PylonAsciiDriver, with_alarms

CID2_SYSTEM_PARAMETERS = 0x47
CID2_MANUFACTURER_INFO = 0x51
CID2_CHARGE_MANAGEMENT = 0x92
CID2_SERIAL = 0x93
CID2_FIRMWARE = 0x96
CID2_SET_CHARGE_MANAGEMENT = 0x94
# The command byte that asks the master for every pack of its group.
WHOLE_BANK = 0xFF
MASTER_OFFSET = 0x02
GROUP_STRIDE = 0x10

__all__ = ["AsciiTransport", "CurrentHold", "PylontechRs485Driver"]


@dataclass(frozen=True, kw_only=True, slots=True)
class CurrentHold:
    """Limits held on one pack by 0x94, in A; None leaves that way at the pack's own."""

    charge: float | None = None
    discharge: float | None = None


class PylontechRs485Driver(PylonAsciiDriver):
    """Reads Pylontech packs (US2000, US3000, US5000 and kin)."""

    family: ClassVar[str] = "pylontech_rs485"
    addresses: ClassVar[range] = range(2, 10)
    profile = PYLONTECH

    def __init__(self, transport: AsciiTransport, *, read_whole_bank: bool = True) -> None:
        """Drive the packs behind ``transport``; poll the group in one read unless told not to."""
        super().__init__(transport)
        self.read_whole_bank = read_whole_bank
        # Each pack's 0x92 limits, read at the slow cadence.
        self.limits: SlowReads[ChargeManagement] = SlowReads()
        # Set once the master has refused INFO = 0xFF: it is not asked again.
        self._whole_bank_refused = False
        # Set while the master counts fewer packs than the poll asks for (a
        # slave it cannot reach): the group is read pack by pack, without
        # asking the group first, until every pack answers again.
        self._group_short = False
        # 0x94 holds by address, and each pack's own limits (0x92) as last
        # read while nothing was held on it.
        self._holds: dict[int, CurrentHold] = {}
        self._own_limits: dict[int, ChargeManagement] = {}
        # The (charge, discharge) currents last sent by 0x94, by address.
        self._last_sent: dict[int, tuple[float, float]] = {}

    def decode_alarms(self, info: bytes, address: int) -> AlarmState:
        """Read a Pylontech 0x44 reply."""
        return decode_pylontech_alarms(info, expect_command=address)

    async def read_pack(self, address: int) -> PackReading:
        """Read one pack: values, alarms and, where the firmware has it, its limits."""
        return await self._with_limits(address, await super().read_pack(address))

    async def _with_limits(self, address: int, reading: PackReading) -> PackReading:
        """Return ``reading`` with the pack's 0x92 limits, read now if they are due."""
        limits = await self._limits_of(address)
        if limits is None:
            return reading
        return replace(
            reading,
            charge_voltage_limit=limits.charge_voltage_limit,
            discharge_voltage_limit=limits.discharge_voltage_limit,
            charge_current_limit=limits.charge_current_limit,
            discharge_current_limit=limits.discharge_current_limit,
        )

    async def _limits_of(self, address: int) -> ChargeManagement | None:
        """Return the pack's limits: asked where due or held, else as last read.

        A pack that does not answer 0x92 this time (or a link lost just
        then, which the next request opens again) keeps its last limits,
        and is asked again at the next poll: its values were read.
        """
        held = address in self._holds or address in self._last_sent
        if not (held or self.limits.due(address)):
            return self.limits.get(address)
        try:
            reply = await self._ask_if_supported(
                address,
                CID2_CHARGE_MANAGEMENT,
                bytes([address]),
                check=lambda info: decode_charge_management(info, expect_command=address),
            )
        except (PackNotResponding, FrameError, BusUnavailable):
            self.limits.expire(address)
            return self.limits.get(address)
        if reply is None:
            return None
        limits = decode_charge_management(reply.info, expect_command=address)
        self.limits.store(address, limits)
        sent = self._last_sent.get(address)
        if address not in self._holds and (
            sent is None or sent != (limits.charge_current_limit, limits.discharge_current_limit)
        ):
            # The pack's own limits, once a released hold has lapsed: until
            # then it still reports what it was last sent.
            self._own_limits[address] = limits
            self._last_sent.pop(address, None)
        return limits

    async def read_system_parameters(self, address: int) -> SystemParameters:
        """Ask one pack for its alarm and protection thresholds (0x47)."""
        reply = await self._ask(
            address,
            CID2_SYSTEM_PARAMETERS,
            check=lambda info: decode_system_parameters(info, profile=self.profile),
        )
        return decode_system_parameters(reply.info, profile=self.profile)

    async def read_identity(self, address: int) -> PackIdentity:
        """Ask one pack who it is: 0x51 names, 0x93 serial, 0x96 firmware, 0x42 cells.

        Firmware older than the serial-number or version commands refuses
        them with "CID2 invalid"; such a pack is still identified, by its
        slot, with the version 0x51 reports.
        """
        maker_reply = await self._ask(
            address, CID2_MANUFACTURER_INFO, check=decode_manufacturer_info
        )
        maker = decode_manufacturer_info(maker_reply.info)
        reply = await self._ask_if_supported(
            address,
            CID2_SERIAL,
            bytes([address]),
            check=lambda info: decode_serial(info, expect_command=address),
        )
        serial = None if reply is None else decode_serial(reply.info, expect_command=address)
        reply = await self._ask_if_supported(
            address,
            CID2_FIRMWARE,
            bytes([address]),
            check=lambda info: decode_firmware(info, expect_command=address),
        )
        firmware = (
            maker.software_version
            if reply is None
            else str(decode_firmware(reply.info, expect_command=address))
        )
        reading = await self.read_pack(address)
        return PackIdentity(
            address=address,
            family=self.family,
            manufacturer=maker.manufacturer,
            model=maker.device_name,
            serial=serial,
            firmware=firmware,
            cell_count=len(reading.cell_voltages) or None,
            # Pylontech's "module total capacity" is not documented as the
            # design figure (an aged pack may report less), so it stays a
            # measurement in the reading rather than an identity here.
            design_capacity=None,
        )

    async def scan_addresses(self) -> Sequence[int]:
        """Return the addresses that hold a pack the master can reach.

        Asked for its whole group (0x42 with INFO = 0xFF) the master answers
        with the number of packs it reached and a block for each. Those
        blocks carry no address, and a slave the master cannot reach is left
        out rather than marked, so the count alone does not say where a gap
        is: with 2, 3 and 5 answering and 4 off the bus the count is 3, and
        asking 2 to 4 would miss 5. So, from the master up, each address is
        asked on its own (0x42, one short transaction) until as many packs
        have answered as the master counted. An offline slave costs nothing
        to pass, since the master says 0x91 for it at once; an address no
        pack holds is silent, and the walk stops before it reaches one. In
        a bank without gaps the answer is the master's address and the
        M - 1 after it.

        A master that refuses the group read (firmware that answers pack by
        pack), does not answer it, or answers with something unusable
        leaves every allowed address to be asked, as a scan without the
        count would.
        """
        if self._whole_bank_refused:
            return self.addresses
        master = (self.addresses[0] & ~(GROUP_STRIDE - 1)) | MASTER_OFFSET
        try:
            reply = await self._ask(
                master, CID2_ANALOG, bytes([WHOLE_BANK]), check=self._bank_analog_check(master)
            )
            count = len(decode_bank_analog(reply.info, first_address=master, profile=self.profile))
        except ReturnCodeError as err:
            self._note_whole_bank_refusal(err)
            return self.addresses
        except (PackNotResponding, FrameError):
            return self.addresses
        if master not in self.addresses or count == 0:
            # The master counts itself; a count of none is no count at all.
            return self.addresses
        present = [master]
        for address in self.addresses:
            if len(present) >= count:
                break
            if address <= master:
                continue
            try:
                await self._ask(
                    address, CID2_ANALOG, bytes([address]), check=self._analog_check(address)
                )
            except PackNotResponding:
                continue  # 0x91 for an offline slave, or nobody there
            except FrameError:
                pass  # something is there: the identity read will judge it
            present.append(address)
        return present

    async def poll(self, addresses: Iterable[int]) -> PollReport:
        """Read every pack: the master's group in one read where it can, the rest one by one."""
        wanted = list(addresses)
        group: dict[int, PackReading] = {}
        if (
            self.read_whole_bank
            and wanted
            and not self._whole_bank_refused
            and not self._group_short
        ):
            group = await self._read_whole_group(wanted) or {}
        rest = [address for address in wanted if address not in group]
        readings: dict[int, PackReading] = {}
        failed: dict[int, str] = {}
        if rest:
            try:
                report = await super().poll(rest)
            except BusUnavailable as err:
                if not group:
                    raise
                # The master answered for its group: the bus is up, and
                # only the packs read on their own went unanswered.
                report = PollReport(failed=dict.fromkeys(rest, str(err)))
            readings.update(report.readings)
            failed.update(report.failed)
        for address, reading in group.items():
            readings[address] = self.screened(address, await self._with_limits(address, reading))
        for address in failed:
            # Read its slow values afresh when it answers again.
            self.limits.expire(address)
        if not failed:
            self._group_short = False
        return PollReport(
            readings={address: readings[address] for address in wanted if address in readings},
            failed=failed,
        )

    async def _read_whole_group(self, wanted: list[int]) -> dict[int, PackReading] | None:
        """Return the packs of the master's group from its two group replies, or None.

        Only the wanted packs of the group of the lowest wanted address are
        in it, and only when they run from the master up without a gap and
        the master counts exactly as many: its blocks carry no address, so
        with a pack left out every block after it would be taken for its
        neighbour's. None means "read these packs one by one instead": the
        master refused, did not answer, sent something unusable, counted
        other packs than the poll asks for, or the link was lost.
        """
        master = (min(wanted) & ~(GROUP_STRIDE - 1)) | MASTER_OFFSET
        span = range(master, master + GROUP_STRIDE)
        in_group = sorted(address for address in wanted if address in span)
        if not in_group or in_group != list(range(master, master + len(in_group))):
            return None
        try:
            analog = await self._ask(
                master, CID2_ANALOG, bytes([WHOLE_BANK]), check=self._bank_analog_check(master)
            )
            readings = decode_bank_analog(analog.info, first_address=master, profile=self.profile)
            if len(readings) != len(in_group):
                self._group_short = len(readings) < len(in_group)
                return None
            alarm_reply = await self._ask(
                master, CID2_ALARMS, bytes([WHOLE_BANK]), check=decode_pylontech_bank_alarms
            )
            states = decode_pylontech_bank_alarms(alarm_reply.info)
        except ReturnCodeError as err:
            self._note_whole_bank_refusal(err)
            return None
        except (PackNotResponding, FrameError, BusUnavailable):
            # A link lost here (a gateway that resets the connection) is
            # opened again by the pack-by-pack reads, which fail the poll
            # if it stays down.
            return None
        if len(states) != len(readings):
            return None
        return {
            reading.address: with_alarms(reading, state)
            for reading, state in zip(readings, states, strict=True)
        }

    def _bank_analog_check(self, master: int) -> Callable[[bytes], object]:
        return lambda info: decode_bank_analog(info, first_address=master, profile=self.profile)

    def _note_whole_bank_refusal(self, err: ReturnCodeError) -> None:
        """Stop asking for the whole group once the master has refused it.

        Firmware that only answers pack by pack refuses INFO = 0xFF as an
        unknown command, a format error or invalid data; it will not change
        its mind, so neither a poll nor a scan asks it again.
        """
        if err.code == RTN_CID2_INVALID or err.code in range(0x05, 0x07):
            self._whole_bank_refused = True

    # --- Control: 0x94 charge and discharge management ---------------------
    #
    # A pack keeps limits sent by 0x94 only while the command is repeated:
    # 10 s without it, and it returns to its own. So a limit is a hold kept
    # here and sent again by ``send_holds`` every poll turn; releasing it is
    # ceasing to send. 0 A one way asks the inverter to stop that way: it is
    # how a path is opened on this family.

    @property
    def holds(self) -> Mapping[int, CurrentHold]:
        """Return the limits held, by pack address."""
        return dict(self._holds)

    @property
    def own_limits(self) -> Mapping[int, tuple[float | None, float | None]]:
        """Return each pack's own (charge, discharge) current limits, A, as last read unheld."""
        return {
            address: (limits.charge_current_limit, limits.discharge_current_limit)
            for address, limits in self._own_limits.items()
        }

    def hold(self, address: int, hold: CurrentHold) -> None:
        """Keep ``hold`` on a pack from the next ``send_holds``; both None releases it."""
        if hold.charge is None and hold.discharge is None:
            self._holds.pop(address, None)
        else:
            self._holds[address] = hold

    def release(self, address: int | None = None) -> None:
        """Stop holding a pack's limits (every pack's, address None)."""
        if address is None:
            self._holds.clear()
        else:
            self._holds.pop(address, None)

    async def set_current_limits(
        self, address: int, *, charge: float | None, discharge: float | None
    ) -> None:
        """Hold a pack's charge and discharge current limits (A) and send them now."""
        self.hold(address, CurrentHold(charge=charge, discharge=discharge))
        if address in self._holds:
            await self._send_hold(address, self._holds[address])

    async def set_paths(
        self, address: int, *, charge: bool | None = None, discharge: bool | None = None
    ) -> None:
        """Open a path by holding its limit at 0 A; close it by letting its own limit back."""
        held = self._holds.get(address, CurrentHold())
        new = CurrentHold(
            charge=held.charge if charge is None else (None if charge else 0.0),
            discharge=held.discharge if discharge is None else (None if discharge else 0.0),
        )
        self.hold(address, new)
        if address in self._holds:
            await self._send_hold(address, new)

    async def send_holds(self) -> dict[int, ProtocolError]:
        """Send every held limit again; return the packs it failed for, with why.

        The coordinator calls this every poll turn, well inside the pack's
        10 s; one pack failing does not stop the others.
        """
        failed: dict[int, ProtocolError] = {}
        for address, hold in list(self._holds.items()):
            try:
                await self._send_hold(address, hold)
            except ProtocolError as err:
                failed[address] = err
        return failed

    async def _send_hold(self, address: int, hold: CurrentHold) -> None:
        own = self._own_limits.get(address)
        if own is None:
            reply = await self._ask(address, CID2_CHARGE_MANAGEMENT, bytes([address]))
            own = decode_charge_management(reply.info, expect_command=address)
            self._own_limits[address] = own
            self.limits.store(address, own)
        if own.charge_voltage_limit is None or own.discharge_voltage_limit is None:
            raise FrameError(f"pack {address} reports no voltage limits to send back with 0x94")
        charge = _at_most(hold.charge, own.charge_current_limit)
        discharge = _at_most(hold.discharge, own.discharge_current_limit)
        if charge is None or discharge is None:
            raise FrameError(f"pack {address} reports no current limit to keep with 0x94")
        info = encode_charge_management_command(
            address,
            charge_voltage=own.charge_voltage_limit,
            discharge_voltage=own.discharge_voltage_limit,
            charge_current=charge,
            discharge_current=discharge,
        )
        await self._ask(address, CID2_SET_CHARGE_MANAGEMENT, info)
        self._last_sent[address] = (round(charge, 1), round(discharge, 1))


def _at_most(held: float | None, own: float | None) -> float | None:
    """Return the limit to send one way: the held one, never above the pack's own."""
    if held is None:
        return own
    return held if own is None else min(held, own)
