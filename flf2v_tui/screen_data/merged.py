"""The "all ranks" log: every rank's recent lines merged by time, prefixed with the rank, kept in memory.

Merging whole multi-gigabyte logs would need a time index over every line of every rank, so this view starts
from the last TAIL_BYTES of each rank's log and follows from there; the rank tabs hold the full history.
"""

from __future__ import annotations

import bisect
import heapq
import os
import re
import threading
from pathlib import Path

from flf2v_tui.logs import STAMP, Follower

TAIL_BYTES = 1 << 20
MAX_LINES = 200_000
_RANK = re.compile(r"^\[r(\d+)\] ")


def tail_offset(path: Path, tail_bytes: int) -> int:
    """Where the first whole line within the last `tail_bytes` of the file starts (0 for a smaller file)."""
    try:
        size = os.path.getsize(path)
        if size <= tail_bytes:
            return 0
        with open(path, "rb") as fh:
            fh.seek(size - tail_bytes)
            newline = fh.read(tail_bytes).find(b"\n")
    except OSError:
        return 0  # not there (yet): the follower reports a log that went
    return size if newline < 0 else size - tail_bytes + newline + 1


def rank_of(line: str) -> int | None:
    m = _RANK.match(line)
    return int(m.group(1)) if m else None


class MergedLines:
    """Same reading interface as lineindex.FileLines, so one log view shows either."""

    def __init__(self, files: dict[int, Path], tail_bytes: int = TAIL_BYTES, max_lines: int = MAX_LINES) -> None:
        """Touches no file: it is made where the widgets are composed, on the UI thread. The first refresh
        (in the view's thread) finds where each rank's tail starts."""
        self.files = files
        self.tail_bytes = tail_bytes
        self.truncated = False
        self.follower: Follower | None = None
        self.lines: list[str] = []
        self.keys: list[tuple[str, int]] = []  # (time stamp, rank) of each line, in order
        self._stamps: dict[int, str] = {}
        self.max_lines = max_lines
        self.dropped = 0  # lines let go from the front to stay within max_lines; the view shifts by as many
        self.problem: str | None = None  # which ranks' logs went or cannot be read; the lines read stay
        # One refresh at a time: two would each read the same new lines and merge them in twice (a view's
        # tail thread is replaced on every tab change, and the old one may still be mid-refresh).
        self._refreshing = threading.Lock()

    def _key(self, line: str) -> tuple[str, int]:
        """A line's time, or for an untimed one (a traceback) the time of its rank's line before it."""
        prefix = _RANK.match(line)
        rank = int(prefix.group(1)) if prefix else 0
        stamped = STAMP.match(line[prefix.end() :] if prefix else line)
        if stamped:
            self._stamps[rank] = stamped.group(1)
        return self._stamps.get(rank, ""), rank

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
        """Take the lines appended since the last call and merge them in by time: a rank that flushes late
        still has its lines placed among the other ranks' lines of the same moment."""
        with self._refreshing:
            return self._refresh()

    def _refresh(self) -> bool:
        if self.follower is None:
            offsets = {rank: tail_offset(path, self.tail_bytes) for rank, path in self.files.items()}
            self.truncated = any(offsets.values())
            self.follower = Follower(self.files, prefix=True, offsets=offsets)
        new = [line.rstrip("\n") for line in self.follower.poll()]
        problem = self._problem(self.follower)
        if problem != self.problem:
            self.problem = problem
            if not new:
                return True  # nothing new to merge, but the status line has news
        if not new:
            return False
        batch = sorted(((self._key(line), line) for line in new), key=lambda kv: kv[0])
        keys, lines = self.keys, self.lines
        cut = bisect.bisect_right(keys, batch[0][0])
        tail = heapq.merge(zip(keys[cut:], lines[cut:], strict=True), batch, key=lambda kv: kv[0])
        merged = list(tail)
        keys = keys[:cut] + [k for k, _ in merged]
        lines = lines[:cut] + [x for _, x in merged]
        if len(lines) > self.max_lines:
            drop = len(lines) - self.max_lines + self.max_lines // 4
            self.dropped += drop
            keys, lines = keys[drop:], lines[drop:]
        self.keys = keys
        self.lines = lines  # one assignment, so a reader on another thread sees the old list or the new one
        return True

    @staticmethod
    def _problem(follower: Follower) -> str | None:
        lost = follower.unreadable
        if not lost:
            return None
        if len(lost) == len(follower.files) and len(set(lost.values())) == 1:
            return f"{next(iter(lost.values()))} (every rank's; the lines read before stay)"
        return "; ".join(f"rank {rank}: {why}" for rank, why in sorted(lost.items()))

    def search(self, needle: str, from_line: int, backwards: bool = False) -> int | None:
        needle = needle.lower()
        lines = self.lines
        order = range(min(from_line - 1, len(lines) - 1), -1, -1) if backwards else range(from_line + 1, len(lines))
        return next((i for i in order if needle in lines[i].lower()), None)
