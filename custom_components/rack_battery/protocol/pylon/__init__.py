"""The Pylon ASCII-hex framing shared by Pylontech RS485, PACE ASCII and Seplos V2."""
