"""The system service: ping, version and info of the engine (no state of its own)."""
