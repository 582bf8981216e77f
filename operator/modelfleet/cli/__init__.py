"""The `modelfleet` command."""
