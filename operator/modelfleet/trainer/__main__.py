"""``python -m modelfleet.trainer``: the training Job's entrypoint."""

import os
import sys

# Everything is read from mounted volumes; a training pod never needs the Hugging Face hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from modelfleet.trainer.job import main

sys.exit(main())
