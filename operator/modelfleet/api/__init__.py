"""The modelfleet API: its CRD types, one package per API version."""
