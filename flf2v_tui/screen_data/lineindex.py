"""A byte-offset index of a growing log file, so that a viewer reads only the lines it shows.

The index keeps the start of every STRIDE-th line (1 GB of 100-byte lines: 150,000 offsets, about 1 MB) and is
extended by scanning only the bytes appended since the last scan, with numpy finding the newlines (about
0.4 s for 1 GB from the page cache on one core). Reading line N seeks to the nearest indexed start and skips
at most STRIDE-1 lines. Every method may run in a thread; a lock guards the offsets.

A log can vanish under the viewer (its attempt folder removed, a disk unmounted) or become unreadable. No
method raises then: the index forgets the file, reads give nothing, and `problem` says why until the file
can be read again.
"""

from __future__ import annotations

import bisect
import functools
import os
import threading
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from flf2v_tui.logs import problem_of

STRIDE = 64
SCAN_CHUNK = 16 << 20
READ_CHUNK = 256 << 10
SEARCH_CHUNK = 4 << 20


T = TypeVar("T")


def decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _or_on_loss(default: Callable[[], T]) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """A reading method that gives `default()` instead of raising when the file went or cannot be read."""

    def wrap(method: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(method)
        def guarded(self: LineIndex, *args: Any, **kw: Any) -> T:
            try:
                return method(self, *args, **kw)
            except OSError as exc:
                self.lose(exc)
                return default()

        return guarded

    return wrap


class LineIndex:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        # Held for a whole update: two threads indexing the same new bytes would count their lines twice
        # (a view's tail thread is replaced on every tab change, and the old one may still be mid-update).
        self._updating = threading.Lock()
        self.problem: str | None = None  # why the file cannot be read, once it could
        self._reset()

    def _reset(self) -> None:
        self._starts = array("q", [0])  # start of line k*STRIDE
        self.newlines = 0
        self.scanned = 0  # bytes looked at so far
        self.tail_start = 0  # where the last, unfinished line starts
        self.size_seen = 0  # the file's size at the last update
        self._inode: int | None = None

    @property
    def line_count(self) -> int:
        """Complete lines, plus the unfinished last one (a rank mid-write, or one killed mid-line)."""
        return self.newlines + (1 if self.scanned > self.tail_start else 0)

    def lose(self, exc: OSError) -> None:
        """The file went or cannot be read: forget what was indexed, so that no view asks for its lines."""
        with self._lock:
            self._reset()
        self.problem = problem_of(exc)

    def update(self, budget: int | None = None) -> bool:
        """Index what was appended since the last call (at most `budget` bytes); True if anything changed
        (a lost file too). A file that shrank or was replaced is indexed again from the start."""
        with self._updating:
            return self._update(budget)

    @_or_on_loss(lambda: True)
    def _update(self, budget: int | None) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._inode is None:
                return False  # not written yet: nothing is lost
            raise
        with self._lock:
            if st.st_size < self.scanned or (self._inode is not None and st.st_ino != self._inode):
                self._reset()
            self._inode = st.st_ino
            self.size_seen = st.st_size
            start = self.scanned
        if st.st_size == start:
            self.problem = None
            return False
        end = st.st_size if budget is None else min(st.st_size, start + budget)
        with open(self.path, "rb") as fh:
            fh.seek(start)
            base = start
            while base < end:
                chunk = fh.read(min(SCAN_CHUNK, end - base))
                if not chunk:
                    break
                self._add(chunk, base)
                base += len(chunk)
        self.problem = None
        return True

    def _add(self, chunk: bytes, base: int) -> None:
        found = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
        with self._lock:
            if len(found):
                # Newline number g (0-based, over the file) ends line g, so line g+1 starts right after it.
                first = (STRIDE - (self.newlines + 1) % STRIDE) % STRIDE
                starts = found[first::STRIDE].astype("<i8") + (base + 1)
                self._starts.frombytes(starts.tobytes())
                self.newlines += len(found)
                self.tail_start = base + int(found[-1]) + 1
            self.scanned = base + len(chunk)

    def _anchor(self, line: int) -> tuple[int, int, int]:
        """(byte offset of an indexed line at or before `line`, that line's number, end of the scanned bytes)."""
        with self._lock:
            k = min(line // STRIDE, len(self._starts) - 1)
            return self._starts[k], k * STRIDE, self.scanned

    @_or_on_loss(lambda: 0)
    def offset_of(self, line: int) -> int:
        """Byte offset where `line` starts (the scanned end for a line past the last)."""
        offset, at, end = self._anchor(line)
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            while at < line and offset < end:
                chunk = fh.read(min(READ_CHUNK, end - offset))
                if not chunk:
                    break
                pos = -1
                while at < line:
                    pos = chunk.find(b"\n", pos + 1)
                    if pos < 0:
                        break
                    at += 1
                if at == line and pos >= 0:
                    return offset + pos + 1
                offset += len(chunk)
        return min(offset, end)

    @_or_on_loss(list)
    def lines(self, first: int, stop: int) -> list[str]:
        """Lines first..stop-1 as text (newline removed); fewer at the end of the indexed part."""
        if stop <= first:
            return []
        offset = self.offset_of(first)
        with self._lock:
            end = self.scanned
        out: list[str] = []
        pending = b""
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            while len(out) < stop - first and offset < end:
                chunk = fh.read(min(READ_CHUNK, end - offset))
                if not chunk:
                    break
                offset += len(chunk)
                parts = (pending + chunk).split(b"\n")
                pending = parts.pop()
                out += [decode(p) for p in parts[: stop - first - len(out)]]
        if pending and len(out) < stop - first:
            out.append(decode(pending))
        return out

    @_or_on_loss(lambda: 0)
    def line_at(self, offset: int) -> int:
        """The number of the line holding byte `offset`."""
        with self._lock:
            k = bisect.bisect_right(self._starts, offset) - 1
            start = self._starts[k]
        with open(self.path, "rb") as fh:
            fh.seek(start)
            return k * STRIDE + fh.read(offset - start).count(b"\n")

    @_or_on_loss(lambda: None)
    def search(self, needle: str, from_line: int, backwards: bool = False) -> int | None:
        """The next line after (or before) `from_line` containing `needle`, ignoring case; None if none."""
        pattern = needle.lower().encode("utf-8")
        if not pattern:
            return None
        with self._lock:
            end = self.scanned
        overlap = len(pattern) - 1
        with open(self.path, "rb") as fh:
            if not backwards:
                pos = self.offset_of(from_line + 1)
                while pos < end:
                    fh.seek(pos)
                    chunk = fh.read(min(SEARCH_CHUNK, end - pos)).lower()
                    hit = chunk.find(pattern)
                    if hit >= 0:
                        return self.line_at(pos + hit)
                    if pos + len(chunk) >= end:
                        break
                    pos += max(len(chunk) - overlap, 1)
                return None
            pos = self.offset_of(from_line)
            while pos > 0:
                low = max(pos - SEARCH_CHUNK, 0)
                fh.seek(low)
                chunk = fh.read(min(pos + overlap, end) - low).lower()
                hit = chunk.rfind(pattern)
                if hit >= 0 and low + hit < pos:
                    return self.line_at(low + hit)
                pos = low
        return None


class FileLines:
    """One rank's log as the log view reads it: an index, and a window of decoded lines around the view.

    Until the index covers the whole file, the view shows the file's last lines (read from the end), so a
    huge log opens at its tail at once while the index is built behind it."""

    def __init__(self, path: Path) -> None:
        self.index = LineIndex(path)
        self._window: tuple[int, list[str]] = (0, [])
        self._tail: list[str] | None = None
        self.complete = False

    def prime(self, tail_bytes: int = 64 << 10) -> None:
        """Read the last lines of the file, shown until the index is complete."""
        try:
            size = os.path.getsize(self.index.path)
            with open(self.index.path, "rb") as fh:
                fh.seek(max(size - tail_bytes, 0))
                lines = fh.read(tail_bytes).split(b"\n")
        except OSError:
            return  # not there yet, or gone: refresh() finds out which
        if size > tail_bytes:
            lines = lines[1:]  # cut mid-line
        if lines and not lines[-1]:
            lines.pop()
        self._tail = [decode(x) for x in lines]

    @property
    def problem(self) -> str | None:
        return self.index.problem

    @property
    def provisional(self) -> bool:
        return self._tail is not None and not self.complete

    @property
    def count(self) -> int:
        if self._tail is not None and not self.complete:
            return len(self._tail)
        return self.index.line_count

    def cached(self, line: int) -> str | None:
        if self._tail is not None and not self.complete:
            return self._tail[line] if 0 <= line < len(self._tail) else None
        first, lines = self._window
        i = line - first
        return lines[i] if 0 <= i < len(lines) else None

    def load(self, first: int, stop: int) -> None:
        if not self.provisional:
            self._window = (first, self.index.lines(first, stop))

    def refresh(self, budget: int | None = None) -> bool:
        before = self.index.line_count
        grew = self.index.update(budget)
        if self.index.problem is not None:
            self._window, self._tail = (0, []), None
        elif grew:
            first, lines = self._window
            if first + len(lines) >= before - 1:  # the window held the unfinished last line: read it again
                self._window = (0, [])
        done = self.index.scanned >= self.index.size_seen
        changed = grew or done != self.complete
        self.complete = done
        if done:
            self._tail = None
        return changed

    def search(self, needle: str, from_line: int, backwards: bool = False) -> int | None:
        return self.index.search(needle, from_line, backwards)
