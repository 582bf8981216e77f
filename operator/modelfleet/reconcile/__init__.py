"""Level-based reconciles of Models and FinetuneJobs, each split into observe (reads), decide
(pure: the whole plan) and act (writes)."""
