"""One driver per BMS family; framing is shared where the wire is shared."""
