"""Pylontech's inverter protocol on CAN (V1.2 of 2018-04-08, and V1.3).

This is what the bank tells the inverter, not what each pack measures: the
master pack broadcasts the bank's aggregate every second (500 kbit/s,
standard 11-bit IDs, little-endian fields) whether anyone listens or not.
Per-pack values are not on this bus at all. The driver therefore has one
"pack", address 0, standing for the bank as the inverter sees it, and it
only listens: it never asks, because there is nothing to ask.

The frames are described in ``protocol/can/pylontech.dbc`` and decoded with
cantools; this module says which signal goes where, and what the wire's
habits mean:

- The discharge current limit in 0x351 is sent as a positive number, while
  the RS485 protocol sends the same limit negative. Clones are not all
  careful about that, so the magnitude is taken whatever the sign.
- Newer firmware speaks protocol V1.3: 0x359 (protections, alarms, module
  count) and 0x35C (charge requests) are no longer sent, 0x35A (alarms and
  warnings in the SMA/Victron layout, two bits per condition) and 0x35F
  (chemistry, versions, capacity) are, and 0x355 grows from four bytes to
  six. The driver reads both and says which one the bank speaks.
- The 2018 table ends 0x351 at the discharge current limit, but real packs
  add the discharge voltage in bytes 6 and 7; it is read when present.
- The inverter is expected to answer every second with 0x305 (eight zero
  bytes). The real inverter on the bus already does that, and a second
  sender adds nothing, so the driver only sends it when asked to: for a
  bank that has no inverter on its CAN port and stops talking without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, Self

import cantools

from ...bank.model import PackIdentity, PackReading
from ..alarms import Alarm
from ..errors import BusUnavailable, FrameError, PackNotResponding
from ..transport.can import DEFAULT_BITRATE, CanFrame, CanTransport
from .base import BmsDriver

if TYPE_CHECKING:
    from cantools.database.can import Database

FAMILY: Final = "pylontech_can"
# The bank, as the inverter sees it: the only "pack" on this bus.
BANK_ADDRESS: Final = 0

DBC_PATH: Final = Path(__file__).resolve().parent.parent / "can" / "pylontech.dbc"

KEEP_ALIVE_ID: Final = 0x305
LIMITS_ID: Final = 0x351
SOC_SOH_ID: Final = 0x355
MEASUREMENTS_ID: Final = 0x356
PROTECTIONS_ID: Final = 0x359  # V1.2
ALARMS_ID: Final = 0x35A  # V1.3
REQUESTS_ID: Final = 0x35C  # V1.2
MANUFACTURER_ID: Final = 0x35E
INFO_ID: Final = 0x35F  # V1.3

# Frames a reading is built from; the others add to it when present.
CORE_IDS: Final = frozenset({LIMITS_ID, SOC_SOH_ID, MEASUREMENTS_ID})
KNOWN_IDS: Final = frozenset(
    {
        LIMITS_ID,
        SOC_SOH_ID,
        MEASUREMENTS_ID,
        PROTECTIONS_ID,
        ALARMS_ID,
        REQUESTS_ID,
        MANUFACTURER_ID,
        INFO_ID,
    }
)
# Bytes a frame must carry to be of any use: the 2018 table's fields for
# V1.2 frames, the alarm half of 0x35A.
MINIMUM_LENGTH: Final[Mapping[int, int]] = {
    LIMITS_ID: 6,
    SOC_SOH_ID: 4,
    MEASUREMENTS_ID: 6,
    PROTECTIONS_ID: 5,
    ALARMS_ID: 4,
    REQUESTS_ID: 1,
    MANUFACTURER_ID: 1,
    INFO_ID: 2,
}

# Every frame is sent each second; a bank silent for three has stopped.
SILENCE_WINDOW: Final = 3.0
# How often the optional keep-alive goes out, as an inverter sends it.
KEEP_ALIVE_PERIOD: Final = 1.0

V12: Final = "1.2"
V13: Final = "1.3"

# 0x359, V1.2: "protection" bits mean the BMS has acted, "alarm" bits that
# a limit is near. The document does not split cell temperature limits into
# charge and discharge; the BMS stops both, so both names are raised.
PROTECTION_SIGNALS: Final[Mapping[str, tuple[Alarm, ...]]] = {
    "ProtectCellOvervoltage": (Alarm.CELL_OVERVOLTAGE,),
    "ProtectCellUndervoltage": (Alarm.CELL_UNDERVOLTAGE,),
    "ProtectCellOvertemperature": (Alarm.CHARGE_OVERTEMPERATURE, Alarm.DISCHARGE_OVERTEMPERATURE),
    "ProtectCellUndertemperature": (
        Alarm.CHARGE_UNDERTEMPERATURE,
        Alarm.DISCHARGE_UNDERTEMPERATURE,
    ),
    "ProtectDischargeOvercurrent": (Alarm.DISCHARGE_OVERCURRENT,),
    "ProtectChargeOvercurrent": (Alarm.CHARGE_OVERCURRENT,),
    "ProtectSystemError": (Alarm.SYSTEM_FAULT,),
}
WARNING_SIGNALS: Final[Mapping[str, tuple[Alarm, ...]]] = {
    "AlarmCellHighVoltage": (Alarm.CELL_OVERVOLTAGE,),
    "AlarmCellLowVoltage": (Alarm.CELL_UNDERVOLTAGE,),
    "AlarmCellHighTemperature": (Alarm.CHARGE_OVERTEMPERATURE, Alarm.DISCHARGE_OVERTEMPERATURE),
    "AlarmCellLowTemperature": (Alarm.CHARGE_UNDERTEMPERATURE, Alarm.DISCHARGE_UNDERTEMPERATURE),
    "AlarmDischargeHighCurrent": (Alarm.DISCHARGE_OVERCURRENT,),
    "AlarmChargeHighCurrent": (Alarm.CHARGE_OVERCURRENT,),
}
# A fault of the BMS itself goes with the protections, as alarms.py has it,
# although 0x359 sends this one in its alarm half.
FAULT_SIGNALS: Final[Mapping[str, tuple[Alarm, ...]]] = {
    "AlarmInternalCommunication": (Alarm.INTERNAL_COMMUNICATION_FAULT,),
}

# 0x35A, V1.3: the same conditions twice, as "Alarm..." (the BMS has acted:
# protections) in bytes 0-3 and as "Warning..." in bytes 4-7. The general
# flag only sums up the others and is left out. The plain temperature pair
# is the one that is not the charge-specific one: discharge.
CONDITION_SIGNALS: Final[Mapping[str, Alarm]] = {
    "HighVoltage": Alarm.PACK_OVERVOLTAGE,
    "LowVoltage": Alarm.PACK_UNDERVOLTAGE,
    "HighTemperature": Alarm.DISCHARGE_OVERTEMPERATURE,
    "LowTemperature": Alarm.DISCHARGE_UNDERTEMPERATURE,
    "HighTemperatureCharge": Alarm.CHARGE_OVERTEMPERATURE,
    "LowTemperatureCharge": Alarm.CHARGE_UNDERTEMPERATURE,
    "HighDischargeCurrent": Alarm.DISCHARGE_OVERCURRENT,
    "HighChargeCurrent": Alarm.CHARGE_OVERCURRENT,
    "Contactor": Alarm.SYSTEM_FAULT,
    "ShortCircuit": Alarm.SHORT_CIRCUIT,
    "BmsInternal": Alarm.SYSTEM_FAULT,
    "CellImbalance": Alarm.CELL_IMBALANCE,
}
# Two bits per condition: 01 raised, 10 normal, 00 and 11 not supported.
CONDITION_ACTIVE: Final = 0b01


def _load_database() -> Database:
    database = cantools.database.load_file(str(DBC_PATH), strict=True)
    if not isinstance(database, cantools.database.can.Database):
        raise TypeError(f"{DBC_PATH} is not a CAN database")
    return database


DATABASE: Final = _load_database()


@dataclass(frozen=True, kw_only=True)
class BankInfo:
    """What the bank says about itself on CAN, beside its measurements."""

    protocol_version: str  # "1.2" or "1.3"
    manufacturer: str | None = None
    module_count: int | None = None  # V1.2, 0x359
    chemistry: str | None = None  # V1.3, 0x35F ("LI")
    hardware_version: str | None = None  # V1.3, 0x35F
    software_version: int | None = None  # V1.3, 0x35F, as sent
    capacity: float | None = None  # Ah, V1.3, 0x35F
    force_charge_requested: bool | None = None  # V1.2, 0x35C bit 5 or 4
    full_charge_requested: bool | None = None  # V1.2, 0x35C bit 3


def decode_frame(arbitration_id: int, data: bytes) -> dict[str, Any]:
    """Decode one frame with the DBC; raise FrameError if it is too short or unknown.

    Signals past the end of a shorter frame are left out rather than taken
    as zero: a V1.2 bank's 0x355 has no high-resolution SoC, and the 2018
    table's 0x351 no discharge voltage.
    """
    if arbitration_id not in KNOWN_IDS:
        raise FrameError(f"0x{arbitration_id:03X} is not a Pylontech CAN frame")
    needed = MINIMUM_LENGTH[arbitration_id]
    if not needed <= len(data) <= 8:
        raise FrameError(
            f"0x{arbitration_id:03X} carries {len(data)} bytes, expected {needed} to 8"
        )
    message = DATABASE.get_message_by_frame_id(arbitration_id)
    try:
        decoded = message.decode(
            bytes(data), decode_choices=False, scaling=True, allow_truncated=True
        )
    except (cantools.database.DecodeError, ValueError) as err:
        raise FrameError(f"0x{arbitration_id:03X}: {err}") from err
    if not isinstance(decoded, dict):  # only multiplexed containers decode otherwise
        raise FrameError(f"0x{arbitration_id:03X} did not decode to signals")
    return decoded


def protocol_version(frames: Mapping[int, bytes]) -> str:
    """Return the protocol version the frames are in: 1.3 has 0x35A/0x35F or a longer 0x355."""
    if ALARMS_ID in frames or INFO_ID in frames:
        return V13
    if len(frames.get(SOC_SOH_ID, b"")) >= 6:
        return V13
    return V12


def _percent(value: Any) -> float | None:
    """Return a percentage; anything past 100 is no reading."""
    return float(value) if 0 <= value <= 100 else None


def _text(signals: Mapping[str, Any], prefix: str, count: int) -> str | None:
    """Return the ASCII text held one byte per signal, without its padding."""
    raw = bytes(
        int(signals[f"{prefix}{index}"]) for index in range(count) if f"{prefix}{index}" in signals
    )
    text = raw.strip(b"\x00\xff ")
    if not text or any(not 0x20 <= byte <= 0x7E for byte in text):
        return None
    return text.decode("ascii")


def _flags(signals: Mapping[str, Any], table: Mapping[str, tuple[Alarm, ...]]) -> set[str]:
    return {str(name) for signal, names in table.items() if signals.get(signal) for name in names}


def _conditions(signals: Mapping[str, Any], prefix: str) -> set[str]:
    return {
        str(name)
        for signal, name in CONDITION_SIGNALS.items()
        if signals.get(f"{prefix}{signal}") == CONDITION_ACTIVE
    }


def decode_bank(frames: Mapping[int, bytes]) -> tuple[PackReading, BankInfo]:
    """Decode the latest frame of each ID into the bank's reading and what it says of itself.

    Frames the bank did not send (or a V1.2 bank does not know) leave their
    fields unknown. Raises FrameError if a frame is malformed.
    """
    signals = {
        arbitration_id: decode_frame(arbitration_id, data)
        for arbitration_id, data in frames.items()
    }
    limits = signals.get(LIMITS_ID, {})
    soc_soh = signals.get(SOC_SOH_ID, {})
    measured = signals.get(MEASUREMENTS_ID, {})
    protections_v12 = signals.get(PROTECTIONS_ID, {})
    alarms_v13 = signals.get(ALARMS_ID, {})
    requests = signals.get(REQUESTS_ID, {})
    info = signals.get(INFO_ID, {})

    warnings = _flags(protections_v12, WARNING_SIGNALS) | _conditions(alarms_v13, "Warning")
    protections = (
        _flags(protections_v12, PROTECTION_SIGNALS)
        | _flags(protections_v12, FAULT_SIGNALS)
        | _conditions(alarms_v13, "Alarm")
    )
    soc = _percent(soc_soh["StateOfCharge"]) if "StateOfCharge" in soc_soh else None
    capacity = float(info["Capacity"]) if info.get("Capacity") else None
    discharge_limit = limits.get("DischargeCurrentLimit")
    discharge_voltage = limits.get("DischargeVoltage")
    reading = PackReading(
        address=BANK_ADDRESS,
        voltage=measured.get("Voltage"),
        current=measured.get("Current"),
        soc=soc,
        soh=_percent(soc_soh["StateOfHealth"]) if "StateOfHealth" in soc_soh else None,
        # Only V1.3 tells the capacity; the charge left follows from the SoC.
        full_capacity=capacity,
        remaining_capacity=(
            round(capacity * soc / 100, 1) if capacity is not None and soc is not None else None
        ),
        temperatures=(measured["Temperature"],) if "Temperature" in measured else (),
        charge_enabled=bool(requests["ChargeEnable"]) if "ChargeEnable" in requests else None,
        discharge_enabled=(
            bool(requests["DischargeEnable"]) if "DischargeEnable" in requests else None
        ),
        warnings=frozenset(warnings),
        protections=frozenset(protections),
        charge_voltage_limit=limits.get("ChargeVoltage"),
        charge_current_limit=(
            abs(limits["ChargeCurrentLimit"]) if "ChargeCurrentLimit" in limits else None
        ),
        # Positive on CAN (negative on RS485): the magnitude, whatever the sign.
        discharge_current_limit=abs(discharge_limit) if discharge_limit is not None else None,
        # A pack that leaves bytes 6-7 at zero does not send a voltage.
        discharge_voltage_limit=discharge_voltage or None,
    )
    version = protocol_version(frames)
    major, minor = info.get("HardwareVersionMajor"), info.get("HardwareVersionMinor")
    bank = BankInfo(
        protocol_version=version,
        manufacturer=(
            _text(signals[MANUFACTURER_ID], "Name", 8) if MANUFACTURER_ID in signals else None
        ),
        module_count=(
            int(protections_v12["ModuleCount"]) if "ModuleCount" in protections_v12 else None
        ),
        chemistry=_text(info, "Chemistry", 2) if info else None,
        hardware_version=f"{major}.{minor}" if major is not None and minor is not None else None,
        software_version=int(info["SoftwareVersion"]) if "SoftwareVersion" in info else None,
        capacity=capacity,
        force_charge_requested=(
            bool(requests.get("ForceChargeI") or requests.get("ForceChargeII"))
            if requests
            else None
        ),
        full_charge_requested=(
            bool(requests["FullChargeRequest"]) if "FullChargeRequest" in requests else None
        ),
    )
    return reading, bank


def bank_identity(bank: BankInfo) -> PackIdentity:
    """Return the identity of the bank: who made it, how many modules, which protocol."""
    modules = f"{bank.module_count} modules, " if bank.module_count else ""
    return PackIdentity(
        address=BANK_ADDRESS,
        family=FAMILY,
        manufacturer=bank.manufacturer,
        model=f"Bank ({modules}CAN protocol V{bank.protocol_version})",
        design_capacity=bank.capacity,
    )


class PylontechCanDriver(BmsDriver):
    """Listens to a Pylontech bank's CAN broadcast; one "pack", the bank, at address 0."""

    family: ClassVar[str] = FAMILY
    addresses: ClassVar[range] = range(BANK_ADDRESS, BANK_ADDRESS + 1)

    def __init__(
        self,
        transport: CanTransport,
        *,
        window: float = SILENCE_WINDOW,
        keep_alive: bool = False,
    ) -> None:
        """Listen on ``transport``; send the inverter's keep-alive only if ``keep_alive``."""
        self.transport = transport
        self.window = window
        self.keep_alive = keep_alive
        self._frames: dict[int, CanFrame] = {}
        # Whether a whole cycle has been heard since listening began: some
        # ID has come round a second time.
        self._cycle_heard = False
        # Frames counted as they arrive, and the count at the last read: a
        # read wants the bank to have spoken since the one before.
        self._received = 0
        self._read_mark = 0
        self._arrived = asyncio.Event()
        self._unsubscribe: Callable[[], None] | None = None
        self._keep_alive_task: asyncio.Task[None] | None = None

    @classmethod
    def over_can(
        cls,
        interface: str,
        channel: str,
        *,
        bitrate: int = DEFAULT_BITRATE,
        window: float = SILENCE_WINDOW,
        keep_alive: bool = False,
    ) -> Self:
        """Return a driver with a CAN transport of its own."""
        transport = CanTransport(interface, channel, bitrate=bitrate, timeout=window)
        return cls(transport, window=window, keep_alive=keep_alive)

    @property
    def protocol_version(self) -> str | None:
        """Return the protocol version the bank speaks, once frames have arrived."""
        return protocol_version(self._latest()) if self._frames else None

    async def connect(self) -> None:
        """Open the CAN interface; raise BusUnavailable if it cannot be opened."""
        await self.transport.connect()
        if self._unsubscribe is None:
            self._unsubscribe = self.transport.subscribe(self._on_frame)
        if self.keep_alive and self._keep_alive_task is None:
            self._keep_alive_task = asyncio.create_task(self._send_keep_alive())

    async def close(self) -> None:
        """Stop listening (and sending), and release the interface."""
        task, self._keep_alive_task = self._keep_alive_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self.transport.close()

    async def read_identity(self, address: int) -> PackIdentity:
        """Return the bank's identity from the frames it broadcasts."""
        _, bank = await self.read_bank(address)
        return bank_identity(bank)

    async def read_pack(self, address: int) -> PackReading:
        """Return the bank's latest reading (address 0 is the bank)."""
        reading, _ = await self.read_bank(address)
        return reading

    async def read_bank(self, address: int = BANK_ADDRESS) -> tuple[PackReading, BankInfo]:
        """Return the bank's reading and what it says of itself.

        Waits, for at most the silence window, until the bank has sent a
        frame since the previous read, a fresh frame of each core ID (0x351,
        0x355, 0x356) is in, and a whole cycle has been heard since listening
        began, so that the first read after connecting also has the frames
        that tell the version and the maker. A bank that sends only some of
        them is read from what it sends; a bank that has sent nothing new
        within the window is not responding, however recent its last frames.
        """
        if address != BANK_ADDRESS:
            raise PackNotResponding(f"CAN carries the bank only (address 0), not pack {address}")
        await self.connect()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window
        while not (self._spoke() and self._cycle_heard and self._fresh_ids() >= CORE_IDS):
            self._arrived.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()
            except TimeoutError:
                break
        if not (self._spoke() and self._fresh_ids()):
            if self.transport.failure is None:
                # Quiet, with no error: perhaps the far end went away
                # without python-can noticing. Reopen on the next read.
                await self.transport.reopen_later()
                self._cycle_heard = False
            raise PackNotResponding(
                f"no frame from the bank on {self.transport.where} within {self.window:g} s"
            )
        self._read_mark = self._received
        return decode_bank(self._latest())

    def _spoke(self) -> bool:
        return self._received > self._read_mark

    def _latest(self) -> dict[int, bytes]:
        return {arbitration_id: frame.data for arbitration_id, frame in self._frames.items()}

    def _fresh_ids(self) -> set[int]:
        now = asyncio.get_running_loop().time()
        stale = [i for i, frame in self._frames.items() if now - frame.received_at > self.window]
        for arbitration_id in stale:
            # A frame the bank stopped sending (after a firmware update, or
            # another bank on the cable) must not linger in its reading.
            del self._frames[arbitration_id]
        return set(self._frames)

    def _on_frame(self, frame: CanFrame) -> None:
        if frame.arbitration_id in KNOWN_IDS:
            if frame.arbitration_id in self._frames:
                self._cycle_heard = True
            self._frames[frame.arbitration_id] = frame
            self._received += 1
            self._arrived.set()

    async def _send_keep_alive(self) -> None:
        while True:
            # A failed send is tried again next second; the poll reports the bus.
            with contextlib.suppress(BusUnavailable):
                await self.transport.send(KEEP_ALIVE_ID, bytes(8))
            await asyncio.sleep(KEEP_ALIVE_PERIOD)
