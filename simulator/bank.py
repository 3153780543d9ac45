"""Physics of packs wired in parallel.

All packs share one bus voltage. Each pack has an open-circuit voltage that
follows its state of charge along the LiFePO4 curve, an internal resistance
and a connection resistance (cable, terminals). For a bank load current I
(discharge positive)::

    V_bus = (sum(OCV_i / R_i) - I) / sum(1 / R_i)
    I_i   = (OCV_i - V_bus) / R_i

so a pack behind a poor connection carries less, and a fuller pack feeds an
emptier one at zero load.

Each pack's BMS has a charge path and a discharge path (its two FETs), each
open or closed on its own. An open path acts as a diode: a pack whose charge
path is open can still discharge, and the other way round. The share is
solved again without every pack whose current would flow through an open
path, until no such pack is left. A path that closes joins the pack to the
bus, and the first settle after it carries the inrush, (OCV - V_bus) over
the pack's and the rest's resistance in series; a BMS whose inrush exceeds
its own limit trips on over-current, opens both paths and reports the
protection. A Pylontech hold (0x94) keeps a limit the pack was sent for
10 s of the bank's clock unless it is sent again. The bank keeps its own clock and is deterministic
for a given seed: nothing here reads wall time.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
import math
import random

CELLS = 16

# Cell open-circuit voltage of LiFePO4 against state of charge (fraction).
_OCV_CURVE: tuple[tuple[float, float], ...] = (
    (0.00, 2.90),
    (0.10, 3.20),
    (0.20, 3.25),
    (0.30, 3.28),
    (0.50, 3.30),
    (0.70, 3.32),
    (0.80, 3.34),
    (0.90, 3.35),
    (0.99, 3.40),
    (1.00, 3.45),
)


def cell_ocv(soc: float) -> float:
    """Return a cell's open-circuit voltage at a state of charge (0..1)."""
    soc = min(max(soc, 0.0), 1.0)
    socs = [point[0] for point in _OCV_CURVE]
    index = bisect_left(socs, soc)
    if index == 0:
        return _OCV_CURVE[0][1]
    (s0, v0), (s1, v1) = _OCV_CURVE[index - 1], _OCV_CURVE[index]
    return v0 + (v1 - v0) * (soc - s0) / (s1 - s0)


@dataclass(frozen=True)
class PackMaker:
    """Who a simulated pack says it is: its maker's name as the BMS sends it, its model."""

    manufacturer: str
    model: str


# A Pylontech BMS sends its maker as "PYLON".
PYLONTECH_PACK = PackMaker("PYLON", "US3000C")
# A 16-cell, 100 A PACE BMS, the board inside many rebadged rack packs.
PACE_PACK = PackMaker("PACE", "P16S100A")


@dataclass(kw_only=True)
class SimPack:
    """One simulated pack: its chemistry, its wiring and what its BMS reports."""

    address: int
    serial: str
    model: str = "US3000C"
    manufacturer: str = "PYLON"
    firmware: str = "V1.4"
    design_capacity: float = 100.0  # Ah
    full_capacity: float = 100.0  # Ah, fades with age
    internal_resistance: float = 0.012  # ohm, cells and BMS MOSFETs
    connection_resistance: float = 0.006  # ohm, cable and terminals
    soc: float = 0.6  # fraction
    cycles: int = 120
    ambient: float = 25.0  # degC
    temperature: float = 25.0  # degC
    cell_offsets: tuple[float, ...] = (0.0,) * CELLS  # V, sum to zero
    # On the communication bus: a pack taken off it stops answering, but its
    # cells stay wired to the power bus.
    online: bool = True
    # Power path: both FETs on. An isolated pack carries no current.
    connected: bool = True
    # The BMS's own switches: its charge FET and discharge FET.
    charge_path: bool = True
    discharge_path: bool = True
    # The currents the BMS bears before it trips on over-current (A).
    charge_current_limit: float = 50.0
    discharge_current_limit: float = 100.0
    # Limits held by a command (Pylontech 0x94): (charge A, discharge A, the
    # bank clock when last sent); None when the BMS uses its own.
    hold: tuple[float, float, float] | None = None
    # How the BMS takes a write: None carries it out; see WriteFault.
    write_fault: WriteFault | None = None
    # The current of the first settle after the pack last joined (A).
    last_inrush: float | None = None
    # Conditions its BMS reports, by the shared names of
    # custom_components.rack_battery.protocol.alarms: a limit approached
    # (warning), or one the BMS acted on (protection).
    warnings: set[str] = field(default_factory=set)
    protections: set[str] = field(default_factory=set)
    # Cells (numbered from 1) whose balancing resistor the BMS has switched on.
    balancing_cells: set[int] = field(default_factory=set)
    current: float = 0.0  # A, positive while charging (as a BMS reports it)
    _throughput: float = field(default=0.0, repr=False)  # Ah discharged
    # A connection that makes and breaks contact (see simulator.faults): the
    # voltage the BMS measures jumps by up to this much either way, drawn
    # anew each time the bank settles, from noise_rng so it is repeatable.
    voltage_noise: float = 0.0  # V
    voltage_error: float = 0.0  # V, the draw in force now
    noise_rng: random.Random = field(
        default_factory=lambda: random.Random(0), repr=False, compare=False
    )

    @property
    def charge_on(self) -> bool:
        """Return whether current may flow into the pack: wired, charge FET on, not held at 0 A."""
        return self.connected and self.charge_path and (self.hold is None or self.hold[0] > 0)

    @property
    def discharge_on(self) -> bool:
        """Return whether current may flow out of the pack."""
        return self.connected and self.discharge_path and (self.hold is None or self.hold[1] > 0)

    @property
    def reported_charge_limit(self) -> float:
        """Return the charge current limit the BMS reports: its own, or a held one."""
        return self.charge_current_limit if self.hold is None else self.hold[0]

    @property
    def reported_discharge_limit(self) -> float:
        """Return the discharge current limit the BMS reports."""
        return self.discharge_current_limit if self.hold is None else self.hold[1]

    @property
    def resistance(self) -> float:
        """Return the resistance seen from the bus."""
        return self.internal_resistance + self.connection_resistance

    @property
    def ocv(self) -> float:
        """Return the pack's open-circuit voltage."""
        return CELLS * cell_ocv(self.soc)

    @property
    def voltage(self) -> float:
        """Return the voltage the BMS measures at its own terminals."""
        return self.ocv + self.current * self.internal_resistance + self.voltage_error

    @property
    def cell_voltages(self) -> tuple[float, ...]:
        """Return the sixteen cell voltages, summing to the pack voltage."""
        mean = self.voltage / CELLS
        return tuple(mean + offset for offset in self.cell_offsets)

    @property
    def remaining_capacity(self) -> float:
        """Return the charge left, in Ah."""
        return self.soc * self.full_capacity

    @property
    def soh(self) -> float:
        """Return the state of health in percent."""
        return 100.0 * self.full_capacity / self.design_capacity

    @property
    def cell_temperatures(self) -> tuple[float, float, float, float]:
        """Return four cell-group temperatures with the small gradient of a rack."""
        t = self.temperature
        return (t, t - 0.4, t - 0.8, t - 0.3)

    @property
    def mosfet_temperature(self) -> float:
        """Return the MOSFET temperature, warmer under load."""
        return self.temperature + 0.002 * self.current**2


class WriteFault(Enum):
    """How a BMS may fail a write."""

    ACK_ONLY = "ack_only"  # acknowledges the write, does not switch
    IGNORE = "ignore"  # does not answer the write at all


def takes_write(pack: SimPack) -> bool | None:
    """Return how a BMS meets a write: True do it, False only acknowledge, None stay silent."""
    if pack.write_fault is WriteFault.IGNORE:
        return None
    return pack.write_fault is not WriteFault.ACK_ONLY


# The protections after which a BMS keeps its paths open until reset.
TRIPS = frozenset({"charge_overcurrent", "discharge_overcurrent"})

# A Pylontech pack falls back to its own limits when 0x94 is not sent again
# within this many seconds.
HOLD_SECONDS = 10.0


LoadProfile = Callable[[float], float]
"""Bank load current (A, discharge positive) at a time on the bank's clock (s)."""


def constant_load(amps: float) -> LoadProfile:
    """Return a load that draws the same current all the time."""
    return lambda _t: amps


def step_load(steps: Sequence[tuple[float, float]]) -> LoadProfile:
    """Return a load that repeats (duration s, current A) steps."""
    period = sum(duration for duration, _ in steps)

    def load(t: float) -> float:
        phase = t % period if period > 0 else 0.0
        for duration, amps in steps:
            if phase < duration:
                return amps
            phase -= duration
        return steps[-1][1]

    return load


def solar_day(*, base_load: float = 12.0, peak_charge: float = 60.0) -> LoadProfile:
    """Return a day of a solar home: a house load, and sun from 06:00 to 18:00."""

    def load(t: float) -> float:
        hour = (t / 3600.0) % 24.0
        sun = 0.0
        if 6.0 <= hour <= 18.0:
            sun = peak_charge * math.sin(math.pi * (hour - 6.0) / 12.0)
        return base_load - sun

    return load


@dataclass(kw_only=True)
class SimBank:
    """A bank of packs on one power bus, advanced on its own clock."""

    packs: list[SimPack]
    load: LoadProfile = field(default_factory=lambda: constant_load(0.0))
    clock: float = 0.0  # s since the simulation started
    bus_voltage: float = 0.0

    def __post_init__(self) -> None:
        """Settle the currents for the initial state."""
        self._settle()

    def pack(self, address: int) -> SimPack:
        """Return the pack at a bus address."""
        for pack in self.packs:
            if pack.address == address:
                return pack
        raise KeyError(address)

    def answering(self, address: int) -> SimPack | None:
        """Return the pack at an address if it is on the communication bus, else None."""
        pack = next((pack for pack in self.packs if pack.address == address), None)
        return pack if pack is not None and pack.online else None

    def take_off_bus(self, address: int) -> None:
        """Make a pack stop answering on the communication bus."""
        self.pack(address).online = False

    def put_on_bus(self, address: int) -> None:
        """Make a pack answer again."""
        self.pack(address).online = True

    def set_paths(
        self, address: int, *, charge: bool | None = None, discharge: bool | None = None
    ) -> None:
        """Switch a pack's charge and/or discharge path (None leaves it), as its BMS would.

        A path that closes joins the pack to the bus at once: the settle
        that follows carries the inrush, and a BMS whose inrush exceeds its
        limit trips. A tripped BMS opens a path when asked but does not
        close one until ``reset_trip``.
        """
        pack = self.pack(address)
        if pack.protections & TRIPS:
            # Latched: a tripped BMS keeps its paths open until reset; it
            # still opens one when asked.
            charge = None if charge else charge
            discharge = None if discharge else discharge
        joining = (charge and not pack.charge_path) or (discharge and not pack.discharge_path)
        if charge is not None:
            pack.charge_path = charge
        if discharge is not None:
            pack.discharge_path = discharge
        self._settle(joined=pack if joining else None)

    def reset_trip(self, address: int) -> None:
        """Clear a pack's over-current trip, as its BMS does after a while or a button press."""
        self.pack(address).protections -= TRIPS

    def set_hold(self, address: int, charge: float, discharge: float) -> None:
        """Hold a pack's limits (a Pylontech 0x94), from now on the bank's clock."""
        pack = self.pack(address)
        before = (pack.charge_on, pack.discharge_on)
        pack.hold = (max(charge, 0.0), max(discharge, 0.0), self.clock)
        after = (pack.charge_on, pack.discharge_on)
        joined = any(now and not was for was, now in zip(before, after, strict=True))
        self._settle(joined=pack if joined else None)

    def _expire_holds(self) -> None:
        for pack in self.packs:
            if pack.hold is not None and self.clock - pack.hold[2] > HOLD_SECONDS:
                before = (pack.charge_on, pack.discharge_on)
                pack.hold = None
                after = (pack.charge_on, pack.discharge_on)
                # A path the lapse lets carry current again joins the pack
                # as a write that closes it would: the settle carries the inrush.
                if any(now and not was for was, now in zip(before, after, strict=True)):
                    self._settle(joined=pack)

    def _solve(self, wired: list[SimPack], load: float) -> None:
        """Share ``load`` among ``wired``, leaving out packs whose flow an open path blocks."""
        active = list(wired)
        while active:
            conductance = sum(1.0 / pack.resistance for pack in active)
            self.bus_voltage = (
                sum(pack.ocv / pack.resistance for pack in active) - load
            ) / conductance
            blocked = []
            for pack in active:
                pack.current = -(pack.ocv - self.bus_voltage) / pack.resistance
                if (pack.current > 0 and not pack.charge_on) or (
                    pack.current < 0 and not pack.discharge_on
                ):
                    blocked.append(pack)
            if not blocked:
                return
            # The pack pushed hardest against its open path drops out first;
            # the others are solved again without it.
            worst = max(blocked, key=lambda pack: abs(pack.current))
            worst.current = 0.0
            active.remove(worst)
        self.bus_voltage = 0.0

    def _settle(self, joined: SimPack | None = None) -> None:
        """Share the load current between the connected packs."""
        wired = [pack for pack in self.packs if pack.charge_on or pack.discharge_on]
        for pack in self.packs:
            pack.current = 0.0
        if not wired:
            self.bus_voltage = 0.0
            return
        load = self.load(self.clock)
        self._solve(wired, load)
        if joined is not None:
            joined.last_inrush = joined.current
            tripped: str | None = None
            if joined.current > joined.charge_current_limit:
                tripped = "charge_overcurrent"
            elif -joined.current > joined.discharge_current_limit:
                tripped = "discharge_overcurrent"
            if tripped is not None:
                joined.protections.add(tripped)
                joined.charge_path = joined.discharge_path = False
                for pack in self.packs:
                    pack.current = 0.0
                self._solve(
                    [pack for pack in self.packs if pack.charge_on or pack.discharge_on], load
                )
        for pack in self.packs:
            if pack.voltage_noise > 0:
                pack.voltage_error = pack.noise_rng.uniform(-1.0, 1.0) * pack.voltage_noise
            else:
                pack.voltage_error = 0.0

    def step(self, seconds: float, *, resolution: float = 10.0) -> None:
        """Advance the clock, integrating charge and heat in small steps."""
        remaining = seconds
        while remaining > 0:
            dt = min(resolution, remaining)
            self._expire_holds()
            self._settle()
            for pack in self.packs:
                delta_ah = pack.current * dt / 3600.0
                pack.soc = min(max(pack.soc + delta_ah / pack.full_capacity, 0.0), 1.0)
                if delta_ah < 0:
                    pack._throughput -= delta_ah
                    while pack._throughput >= pack.full_capacity:
                        pack._throughput -= pack.full_capacity
                        pack.cycles += 1
                # Heat grows with I^2 R; the rack sheds it toward ambient.
                heating = pack.current**2 * pack.resistance  # W
                cooling = 2.0 * (pack.temperature - pack.ambient)  # W at 2 W/K
                pack.temperature += (heating - cooling) * dt / 20000.0  # J/K
            self.clock += dt
            remaining -= dt
        self._expire_holds()
        self._settle()


def make_bank(
    count: int = 4,
    *,
    seed: int = 1,
    first_address: int = 1,
    capacity: float = 100.0,
    aged: Sequence[int] = (),
    load: LoadProfile | None = None,
    serial_prefix: str = "RBB",
    identity: PackMaker = PYLONTECH_PACK,
) -> SimBank:
    """Build a bank of similar packs with the small spread of real ones.

    Packs listed in ``aged`` (by position) have lost a fifth of their
    capacity and gained resistance, as a pack some years older would.
    """
    rng = random.Random(seed)
    packs: list[SimPack] = []
    for index in range(count):
        raw = [rng.uniform(-0.004, 0.004) for _ in range(CELLS)]
        mean = sum(raw) / CELLS
        offsets = tuple(round(value - mean, 4) for value in raw)
        old = index in aged
        packs.append(
            SimPack(
                address=first_address + index,
                serial=f"{serial_prefix}{seed:02d}{index + 1:04d}",
                manufacturer=identity.manufacturer,
                model=identity.model,
                design_capacity=capacity,
                full_capacity=capacity * (0.8 if old else rng.uniform(0.97, 1.0)),
                internal_resistance=(0.02 if old else rng.uniform(0.010, 0.014)),
                connection_resistance=rng.uniform(0.004, 0.008),
                soc=rng.uniform(0.55, 0.65),
                cycles=(1450 if old else rng.randint(80, 200)),
                temperature=rng.uniform(23.0, 26.0),
                cell_offsets=offsets,
            )
        )
    return SimBank(packs=packs, load=load or constant_load(0.0))
