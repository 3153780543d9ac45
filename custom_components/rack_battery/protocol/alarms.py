"""The names of the conditions a BMS reports, shared by every family.

Each family has its own bit layout, but a user (and the bank's rules) wants
"cell overvoltage" to mean the same whichever pack says it. Drivers map
their bits onto these names and put them in ``PackReading.warnings`` (a
limit is being approached) or ``PackReading.protections`` (the BMS has
acted, or found a fault in itself). The values are stable snake_case: they
end up in entity attributes, events and automations.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Alarm(StrEnum):
    """A condition a BMS can report, whatever its family."""

    CELL_OVERVOLTAGE = "cell_overvoltage"
    CELL_UNDERVOLTAGE = "cell_undervoltage"
    PACK_OVERVOLTAGE = "pack_overvoltage"
    PACK_UNDERVOLTAGE = "pack_undervoltage"
    CHARGER_OVERVOLTAGE = "charger_overvoltage"
    CHARGE_OVERCURRENT = "charge_overcurrent"
    DISCHARGE_OVERCURRENT = "discharge_overcurrent"
    SHORT_CIRCUIT = "short_circuit"
    CHARGE_OVERTEMPERATURE = "charge_overtemperature"
    CHARGE_UNDERTEMPERATURE = "charge_undertemperature"
    DISCHARGE_OVERTEMPERATURE = "discharge_overtemperature"
    DISCHARGE_UNDERTEMPERATURE = "discharge_undertemperature"
    MOSFET_OVERTEMPERATURE = "mosfet_overtemperature"
    ENVIRONMENT_OVERTEMPERATURE = "environment_overtemperature"
    ENVIRONMENT_UNDERTEMPERATURE = "environment_undertemperature"
    LOW_CAPACITY = "low_capacity"
    CELL_IMBALANCE = "cell_imbalance"
    # Faults of the BMS itself: reported with the protections, as a pack
    # with a failed MOSFET or sensor cannot be trusted to protect itself.
    CHARGE_MOSFET_FAULT = "charge_mosfet_fault"
    DISCHARGE_MOSFET_FAULT = "discharge_mosfet_fault"
    TEMPERATURE_SENSOR_FAULT = "temperature_sensor_fault"
    CURRENT_SENSOR_FAULT = "current_sensor_fault"
    CELL_FAULT = "cell_fault"
    INTERNAL_COMMUNICATION_FAULT = "internal_communication_fault"
    BALANCER_WIRE_FAULT = "balancer_wire_fault"
    CELL_COUNT_MISMATCH = "cell_count_mismatch"
    # A fault the BMS reports without saying where (Pylontech CAN's "system
    # error", the "BMS internal" and "contactor" alarms of protocol V1.3).
    SYSTEM_FAULT = "system_fault"


# The same names as module constants, for tables that read better as
# ``alarms.CELL_OVERVOLTAGE``.
CELL_OVERVOLTAGE: Final = Alarm.CELL_OVERVOLTAGE
CELL_UNDERVOLTAGE: Final = Alarm.CELL_UNDERVOLTAGE
PACK_OVERVOLTAGE: Final = Alarm.PACK_OVERVOLTAGE
PACK_UNDERVOLTAGE: Final = Alarm.PACK_UNDERVOLTAGE
CHARGER_OVERVOLTAGE: Final = Alarm.CHARGER_OVERVOLTAGE
CHARGE_OVERCURRENT: Final = Alarm.CHARGE_OVERCURRENT
DISCHARGE_OVERCURRENT: Final = Alarm.DISCHARGE_OVERCURRENT
SHORT_CIRCUIT: Final = Alarm.SHORT_CIRCUIT
CHARGE_OVERTEMPERATURE: Final = Alarm.CHARGE_OVERTEMPERATURE
CHARGE_UNDERTEMPERATURE: Final = Alarm.CHARGE_UNDERTEMPERATURE
DISCHARGE_OVERTEMPERATURE: Final = Alarm.DISCHARGE_OVERTEMPERATURE
DISCHARGE_UNDERTEMPERATURE: Final = Alarm.DISCHARGE_UNDERTEMPERATURE
MOSFET_OVERTEMPERATURE: Final = Alarm.MOSFET_OVERTEMPERATURE
ENVIRONMENT_OVERTEMPERATURE: Final = Alarm.ENVIRONMENT_OVERTEMPERATURE
ENVIRONMENT_UNDERTEMPERATURE: Final = Alarm.ENVIRONMENT_UNDERTEMPERATURE
LOW_CAPACITY: Final = Alarm.LOW_CAPACITY
CELL_IMBALANCE: Final = Alarm.CELL_IMBALANCE
CHARGE_MOSFET_FAULT: Final = Alarm.CHARGE_MOSFET_FAULT
DISCHARGE_MOSFET_FAULT: Final = Alarm.DISCHARGE_MOSFET_FAULT
TEMPERATURE_SENSOR_FAULT: Final = Alarm.TEMPERATURE_SENSOR_FAULT
CURRENT_SENSOR_FAULT: Final = Alarm.CURRENT_SENSOR_FAULT
CELL_FAULT: Final = Alarm.CELL_FAULT
INTERNAL_COMMUNICATION_FAULT: Final = Alarm.INTERNAL_COMMUNICATION_FAULT
BALANCER_WIRE_FAULT: Final = Alarm.BALANCER_WIRE_FAULT
CELL_COUNT_MISMATCH: Final = Alarm.CELL_COUNT_MISMATCH
SYSTEM_FAULT: Final = Alarm.SYSTEM_FAULT
