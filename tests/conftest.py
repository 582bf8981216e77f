"""Shared pytest configuration: tests/unit, tests/integration and tests/e2e add their own."""
