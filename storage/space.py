"""A job whose attempt failed for a full disk (disk_full) waits, queued, until that disk has room again.

What to wait for is read from the failed attempt's row, which already says it: its message names the folder
that was full (the engine's `no space left in FOLDER for NAME: ... about SIZE needed`, or the worker's
`disk full on FOLDER (N free)`), that folder is the attempt's video folder or its attempt folder (both in the
row), and the engine's message gives the bytes it needed. The job waits for those bytes, and never for less
than LOW_SPACE_BYTES, under which a disk counts as full and the next attempt would fail the same way at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from engine.diskspace import LOW_SPACE_BYTES, free_bytes, human_size

WAITS_FOR_SPACE = "disk_full"  # the failure class whose retry waits for room

_NEEDED = re.compile(r"about (\d+(?:\.\d+)?) (B|KiB|MiB|GiB|TiB) needed")
_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


@dataclass(frozen=True)
class SpaceWait:
    folder: Path
    needed: int  # bytes
    free: int | None  # bytes free there now; None if the file system cannot say

    @property
    def ready(self) -> bool:
        """Room enough; a folder whose free space cannot be read is not waited for (it could be forever)."""
        return self.free is None or self.free >= self.needed

    def note(self) -> str:
        """For `flf2v ls`'s NOTE (the job's state_reason)."""
        free = human_size(self.free) if self.free is not None else "unknown space"
        return f"waits for space: {free} free on {self.folder}, about {human_size(self.needed)} needed"


def needed_bytes(message: str) -> int | None:
    """The bytes a failure message says were needed (`about 1.2 MiB needed`), or None."""
    found = _NEEDED.search(message)
    return int(float(found[1]) * _UNITS[found[2]]) if found else None


def space_wait(message: str | None, save_file: str | None, log_dir: str | None) -> SpaceWait | None:
    """What a disk_full attempt's job waits for: the folder its message names (else, of its video folder and
    its attempt folder, the one with less room) and the bytes needed. None without either folder."""
    text = message or ""
    folders = [Path(f) for f in (str(Path(save_file).parent) if save_file else None, log_dir) if f]
    if not folders:
        return None
    free = {f: free_bytes(f) for f in folders}
    named = [f for f in folders if str(f) in text]
    folder = named[0] if named else min(folders, key=lambda f: float("inf") if free[f] is None else free[f])
    needed = max(needed_bytes(text) or 0, LOW_SPACE_BYTES)
    return SpaceWait(folder, needed, free[folder])
