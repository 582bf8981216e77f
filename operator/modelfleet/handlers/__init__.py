"""Thin kopf handlers: parse, build, apply server-side, observe children, write status.

Importing this package registers the handlers, so `kopf run -m modelfleet.handlers` works.
"""

from modelfleet.handlers import operator as operator

__all__ = ["operator"]
