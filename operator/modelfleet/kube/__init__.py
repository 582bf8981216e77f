"""Talking to the API server: a small client, the watch cache of children, Events, and the
Jobs' ServiceAccount in each namespace."""
