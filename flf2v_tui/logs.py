"""Reading an attempt's logs: one rank, all ranks merged by time, or torchrun's own output; and following."""

from __future__ import annotations

import codecs
import heapq
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# The engine's log lines start with "[2025-01-31 12:00:00,123] INFO: ..."; others (tracebacks) do not.
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")
_RANK_FILE = re.compile(r"^rank(\d+)\.log$")


def problem_of(exc: OSError) -> str:
    """What a viewer says about a log it cannot read."""
    if isinstance(exc, FileNotFoundError):
        return "the log is gone"
    return f"the log cannot be read ({exc.strerror or exc})"


def rank_logs(log_dir: Path) -> dict[int, Path]:
    found = {}
    if log_dir.is_dir():
        for path in log_dir.iterdir():
            m = _RANK_FILE.match(path.name)
            if m:
                found[int(m.group(1))] = path
    return dict(sorted(found.items()))


def _keyed(lines: Iterable[str], rank: int, carry: str = "") -> Iterator[tuple[str, int, int, str]]:
    """(timestamp, rank, line number, text); untimed lines keep the previous line's time, so a traceback
    stays right after the line that announced it."""
    stamp = carry
    for n, line in enumerate(lines):
        m = STAMP.match(line)
        if m:
            stamp = m.group(1)
        yield stamp, rank, n, line


def merged(files: dict[int, Path]) -> Iterator[str]:
    """All ranks' lines in time order, each prefixed with its rank; reads the files lazily."""
    handles = [open(p, encoding="utf-8", errors="replace") for p in files.values()]  # noqa: SIM115
    try:
        streams = [_keyed(h, r) for h, r in zip(handles, files, strict=True)]
        for _, rank, _, line in heapq.merge(*streams):
            yield f"[r{rank}] {line}" if line.endswith("\n") else f"[r{rank}] {line}\n"
    finally:
        for h in handles:
            h.close()


@dataclass
class Follower:
    """Reads the lines appended to several files since the last call, by byte offset."""

    files: dict[int, Path]
    prefix: bool
    offsets: dict[int, int] = field(default_factory=dict)
    partial: dict[int, str] = field(default_factory=dict)
    stamps: dict[int, str] = field(default_factory=dict)
    # rank -> why its file could not be read at the last poll (one not written yet is not listed)
    unreadable: dict[int, str] = field(default_factory=dict)
    opened: set[int] = field(default_factory=set)  # ranks whose file was read at least once
    # One UTF-8 decoder per rank, carrying a character split between two reads to the next (the official
    # negative prompt is Chinese, and it is logged); decoding each read alone would make both halves U+FFFD.
    decoders: dict[int, codecs.IncrementalDecoder] = field(default_factory=dict)

    def poll(self) -> list[str]:
        batch: list[tuple[str, int, int, str]] = []
        for rank, path in self.files.items():
            try:
                with open(path, "rb") as fh:
                    fh.seek(self.offsets.get(rank, 0))
                    chunk = fh.read(8 << 20)
            except OSError as exc:
                if rank in self.opened or not isinstance(exc, FileNotFoundError):
                    self.unreadable[rank] = problem_of(exc)
                continue
            self.opened.add(rank)
            self.unreadable.pop(rank, None)
            self.offsets[rank] = self.offsets.get(rank, 0) + len(chunk)
            decoder = self.decoders.setdefault(rank, codecs.getincrementaldecoder("utf-8")(errors="replace"))
            text = self.partial.pop(rank, "") + decoder.decode(chunk)
            complete, _, rest = text.rpartition("\n")
            if rest:
                self.partial[rank] = rest
            if not complete and not text.endswith("\n"):
                continue
            keyed = list(_keyed(complete.split("\n"), rank, self.stamps.get(rank, "")))
            if keyed:
                self.stamps[rank] = keyed[-1][0]
            batch += keyed
        batch.sort()
        return [f"[r{rank}] {line}\n" if self.prefix else f"{line}\n" for _, rank, _, line in batch]

    def flush(self) -> list[str]:
        """The last lines without a final newline (a process killed mid-line)."""
        for rank, decoder in self.decoders.items():
            rest = decoder.decode(b"", final=True)  # a character cut short for good
            if rest:
                self.partial[rank] = self.partial.get(rank, "") + rest
        out = [f"[r{r}] {t}\n" if self.prefix else f"{t}\n" for r, t in sorted(self.partial.items()) if t]
        self.partial.clear()
        return out
