"""Order book snapshots."""
