"""Browser tests: the real frontend against a running Home Assistant (scripts/e2e)."""
