"""The modelfleet API."""
