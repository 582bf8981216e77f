"""``python -m modelfleet.downloader``: the download Job's entrypoint."""

import os
import sys

# huggingface_hub reads these once, at import: a mirror or test hub does not speak Xet.
if os.environ.get("HF_ENDPOINT"):
    os.environ.setdefault("HF_HUB_DISABLE_XET", "1")

from modelfleet.downloader.job import main

sys.exit(main())
