"""The Model reconcile: ``observe``, ``decide``, ``status``, and ``act`` that runs them."""
