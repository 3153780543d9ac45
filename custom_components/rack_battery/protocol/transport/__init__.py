"""Byte pipes to a bus: they move frames and know nothing of their content."""
