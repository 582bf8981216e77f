"""The program inside the download Job, and the library behind ``modelfleet model``.

It resolves a revision to a commit, lists the files at that commit, transfers them with resume,
retries and a stall watchdog, verifies sizes and hashes, and writes ``.modelfleet-manifest.json``
last, into ``<root>/<org>/<name>/<sha>/``.
"""
