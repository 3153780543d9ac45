"""A parallel bank of rack packs that answers like the real thing.

The physics lives in :mod:`simulator.bank`; each BMS family's wire format is
a personality that serves the same bank over a real transport.
"""
