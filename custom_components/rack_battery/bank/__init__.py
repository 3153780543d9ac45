"""What a bank of parallel packs is, independent of any wire or of Home Assistant."""
