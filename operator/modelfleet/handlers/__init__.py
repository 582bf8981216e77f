"""Thin kopf handlers: parse, build, apply server-side, observe children, write status."""
