"""The FinetuneJob reconcile: ``observe``, ``decide``, and ``act`` that runs them."""
