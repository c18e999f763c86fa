"""scenarios: pure functions from an inventory and settings to named memory figures. No I/O."""
