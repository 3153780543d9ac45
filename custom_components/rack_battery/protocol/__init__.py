"""Bytes and registers of the supported BMS families; never Home Assistant."""
