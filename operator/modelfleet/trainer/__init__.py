"""The training program run inside a FinetuneJob's Job; heavy imports stay lazy."""
