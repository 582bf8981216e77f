"""The training program run inside a FinetuneJob's Job: ``python -m modelfleet.trainer``.

Importing this package (or its settings, dataset, progress and result modules) never imports
torch, transformers or peft; only running the training does.
"""
