"""The "all ranks" log: every rank's recent lines merged by time, prefixed with the rank, kept in memory.

Merging whole multi-gigabyte logs would need a time index over every line of every rank, so this view starts
from the last TAIL_BYTES of each rank's log and follows from there; the rank tabs hold the full history.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from flf2v_tui.logs import Follower

TAIL_BYTES = 1 << 20
MAX_LINES = 200_000
_RANK = re.compile(r"^\[r(\d+)\] ")


def tail_offset(path: Path, tail_bytes: int) -> int:
    """Where the first whole line within the last `tail_bytes` of the file starts (0 for a smaller file)."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return 0
    if size <= tail_bytes:
        return 0
    with open(path, "rb") as fh:
        fh.seek(size - tail_bytes)
        newline = fh.read(tail_bytes).find(b"\n")
    return size if newline < 0 else size - tail_bytes + newline + 1


def rank_of(line: str) -> int | None:
    m = _RANK.match(line)
    return int(m.group(1)) if m else None


class MergedLines:
    """Same reading interface as lineindex.FileLines, so one log view shows either."""

    def __init__(self, files: dict[int, Path], tail_bytes: int = TAIL_BYTES, max_lines: int = MAX_LINES) -> None:
        offsets = {rank: tail_offset(path, tail_bytes) for rank, path in files.items()}
        self.truncated = any(offsets.values())
        self.follower = Follower(files, prefix=True, offsets=offsets)
        self.lines: list[str] = []
        self.max_lines = max_lines
        self.dropped = 0  # lines let go from the front to stay within max_lines; the view shifts by as many

    @property
    def count(self) -> int:
        return len(self.lines)

    @property
    def complete(self) -> bool:
        return True

    def cached(self, line: int) -> str | None:
        lines = self.lines
        return lines[line] if 0 <= line < len(lines) else None

    def load(self, first: int, stop: int) -> None:
        """Everything is in memory already."""

    def refresh(self, budget: int | None = None) -> bool:
        new = [line.rstrip("\n") for line in self.follower.poll()]
        if not new:
            return False
        lines = self.lines + new
        if len(lines) > self.max_lines:
            cut = len(lines) - self.max_lines + self.max_lines // 4
            self.dropped += cut
            lines = lines[cut:]
        self.lines = lines  # one assignment, so a reader on another thread sees the old list or the new one
        return True

    def search(self, needle: str, from_line: int, backwards: bool = False) -> int | None:
        needle = needle.lower()
        lines = self.lines
        order = range(min(from_line - 1, len(lines) - 1), -1, -1) if backwards else range(from_line + 1, len(lines))
        return next((i for i in order if needle in lines[i].lower()), None)
