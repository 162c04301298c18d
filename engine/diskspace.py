"""Disk space: what is free where a file goes, whether an error means a full disk, and byte sizes for people.

Torch- and numpy-free: the engine's writers, the queue's storage errors and the app's views all use it."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

# Below this a file system is taken as full. A write that failed for want of space leaves next to nothing
# behind, while a writer that only reports it on its own stderr (ffmpeg) reaches us as a broken pipe; SQLite
# needs its 32 KiB shared-memory file and room to grow its write-ahead log.
LOW_SPACE_BYTES = 1 << 20

_NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_NO_SPACE_WORDS = ("no space left on device", "disk quota exceeded")


def human_size(n: float) -> str:
    """`n` bytes in binary units, e.g. `512 B`, `12.0 KiB`, `1.3 GiB`."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def nearest_existing(path: str | os.PathLike[str]) -> Path:
    """`path` or its nearest existing parent: a file not yet made is judged by the folder it goes into."""
    path = Path(path)
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return path


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Bytes free on the file system `path` (or the folder it would go into) lives on; None if unknown."""
    try:
        return shutil.disk_usage(nearest_existing(path)).free
    except OSError:
        return None


def nearly_full(path: str | os.PathLike[str]) -> bool:
    free = free_bytes(path)
    return free is not None and free < LOW_SPACE_BYTES


def exception_chain(exc: BaseException) -> list[BaseException]:
    """`exc`, then what caused it or was being handled when it was raised, and so on (a loop is cut)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def out_of_space(exc: BaseException, folder: str | os.PathLike[str] | None = None) -> bool:
    """ENOSPC or EDQUOT anywhere in the exception's cause or context, or the OS's words for them (a full disk
    reaches a writer as a broken pipe too, so callers ask this before they blame the network). With `folder`,
    also true when the error says neither but the folder is left with next to no space."""
    for current in exception_chain(exc):
        if isinstance(current, OSError) and current.errno in _NO_SPACE_ERRNOS:
            return True
        if any(words in str(current).lower() for words in _NO_SPACE_WORDS):
            return True
    return folder is not None and nearly_full(folder)
