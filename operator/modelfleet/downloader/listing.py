"""What a hub's listing may say before anything is planned from it: a bounded number of
entries, sizes that are whole numbers of bytes a volume could hold, one entry per path.

All refusals are VerificationFailed, like the other checks of what a hub answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, TypeVar

from modelfleet.conditions import Reason
from modelfleet.downloader.errors import DownloadError

MAX_DECLARED_BYTES = (1 << 63) - 1
"""The largest size a file can have (a signed 64-bit ``off_t``), and the most a listing may add
up to: anything larger is not a size. A large one that is a size meets the free-space check
(InsufficientStorage) instead."""
# What a hub may say, shown in a message: enough to recognise, not a wall of hostile text.
_SHOWN = 80
T = TypeVar("T")


class ListedFile(Protocol):
    """A file as a source lists it (hub.RemoteFile)."""

    @property
    def path(self) -> str:
        """Its path below the repo."""
        ...

    @property
    def size(self) -> int:
        """Its size in bytes."""
        ...


def _refuse(message: str) -> DownloadError:
    return DownloadError(Reason.VERIFICATION_FAILED, message)


def bounded(entries: Iterable[T], limit: int) -> Iterator[T]:
    """``entries`` one by one, refused as soon as there are more than ``limit``: a paging
    client is never asked for the page after the one that went over."""
    for count, entry in enumerate(entries, start=1):
        if count > limit:
            raise _refuse(
                f"the hub lists more than {limit} files and folders for this repo; refusing "
                "(MODELFLEET_MAX_LISTING_ENTRIES raises the limit for a repo really that large)"
            )
        yield entry


def declared_size(value: object, path: str) -> int:
    """A listed size: a whole number of bytes from 0 to :data:`MAX_DECLARED_BYTES`."""
    # type(), not isinstance: True is an int to Python, not a size to us.
    if type(value) is not int or not 0 <= value <= MAX_DECLARED_BYTES:
        raise _refuse(
            f"the hub lists size {str(value)[:_SHOWN]!r} for {path[:_SHOWN]!r}: "
            f"not a whole number of bytes from 0 to {MAX_DECLARED_BYTES}"
        )
    return value


def check_listing(files: Sequence[ListedFile]) -> None:
    """One entry per path, no file where another file's folder is, a total a volume could hold:
    otherwise two files would be written to one place, or one over the other's folder."""
    paths: set[str] = set()
    for listed in files:
        if listed.path in paths:
            raise _refuse(f"the hub lists {listed.path[:_SHOWN]!r} twice")
        paths.add(listed.path)
    for path in paths:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder in paths:
                raise _refuse(f"the hub lists {folder[:_SHOWN]!r} as a file and as a folder")
    total = sum(f.size for f in files)
    if total > MAX_DECLARED_BYTES:
        raise _refuse(f"the hub lists {total} bytes in all: more than {MAX_DECLARED_BYTES}")
