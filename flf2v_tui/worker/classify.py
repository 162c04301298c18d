"""How an attempt ended, from torchrun's exit status, the engine's events, torchrun's report and rank logs."""

from __future__ import annotations

import json
import re
import signal
from dataclasses import dataclass
from pathlib import Path

from engine.diskspace import free_bytes, nearly_full
from flf2v_tui.shim import EXIT_FILE, LOG_FILE
from flf2v_tui.worker.tracker import Tracker
from storage.attempts import Outcome
from storage.errors import DISK_FULL, StorageFault

# Classes that name a cause; "comm" and "killed" on a rank are often only the echo of another rank's death.
_PRIMARY = ("user_input", "oom", "disk_full", "engine_error")
_ROOT = re.compile(r"Root Cause \(first observed failure\):(.*?)(?:={20,}|\Z)", re.S)
_OTHERS = re.compile(r"Failures:(.*?)^-{20,}", re.S | re.M)
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # First: a full disk breaks pipes and sockets too, and must not read as the network's fault.
    ("disk_full", re.compile(r"No space left on device|Disk quota exceeded|database or disk is full", re.I)),
    ("oom", re.compile(r"out of memory|OutOfMemoryError|CUDA error: out of memory|Cannot allocate memory", re.I)),
    (
        "comm",
        re.compile(
            r"NCCL|gloo|rendezvous|EADDRINUSE|address already in use|Connection (?:refused|reset|closed)|"
            r"timed out|DistNetworkError|DistStoreError",
            re.I,
        ),
    ),
)


@dataclass
class RootCause:
    rank: int | None
    exitcode: int | None
    traceback: str


def read_exit(attempt_dir: Path) -> int | None:
    """torchrun's return code as the shim recorded it (negative: killed by that signal), or None."""
    try:
        return int(json.loads((attempt_dir / EXIT_FILE).read_text())["returncode"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _tail(path: Path, size: int = 65536) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - size))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _parse_block(block: str) -> RootCause:
    rank = re.search(r"^\s*rank\s*:\s*(\d+)", block, re.M)
    code = re.search(r"^\s*exitcode\s*:\s*(-?\d+)", block, re.M)
    trace = re.search(r"^\s*traceback\s*:\s*(.*)$", block, re.M)
    return RootCause(
        rank=int(rank.group(1)) if rank else None,
        exitcode=int(code.group(1)) if code else None,
        traceback=trace.group(1).strip() if trace else "",
    )


def reported_failures(attempt_dir: Path) -> list[RootCause]:
    """Every failed rank in torchrun's last report, the one it names as the first observed failure first."""
    text = _tail(attempt_dir / LOG_FILE, 262144)
    found = _ROOT.findall(text)
    if not found:
        return []
    root = _parse_block(found[-1])
    others_at = text.rfind("Failures:", 0, text.rfind("Root Cause (first observed failure):"))
    others = _OTHERS.search(text, others_at) if others_at >= 0 else None
    blocks = re.split(r"^\[\d+\]:\s*$", others.group(1), flags=re.M)[1:] if others else []
    return [root, *(_parse_block(b) for b in blocks)]


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _from_logs(attempt_dir: Path) -> str | None:
    text = _tail(attempt_dir / LOG_FILE) + "".join(_tail(p, 16384) for p in sorted(attempt_dir.glob("rank*.log")))
    for failure, pattern in _PATTERNS:
        if pattern.search(text):
            return failure
    return None


def _last_lines(path: Path, n: int = 3) -> str:
    lines = [line for line in _tail(path, 8192).splitlines() if line.strip()]
    return " | ".join(lines[-n:])


def classify(
    returncode: int | None,
    tracker: Tracker,
    attempt_dir: Path,
    *,
    cancelled: bool = False,
    stalled: str = "",
    save_file: str | None = None,
    ranks: int = 1,
) -> Outcome:
    """`save_file`: the video the attempt was to write, whose folder is checked for space with the attempt's.
    `ranks`: the attempt's rank count, for a render that stalled before its start event said its world size."""
    output = tracker.done.get("output") if tracker.done else None
    if returncode == 0 and output and Path(output).exists():
        return Outcome("succeeded", exit_code=0, output_path=str(output))  # even if a cancel came too late
    if cancelled:
        return Outcome("cancelled", exit_code=returncode, message="cancelled by user")
    full = _full_folder(attempt_dir, save_file)
    if returncode == 0:
        why = "no done event" if not tracker.done else f"its output {output} is missing"
        if full is not None:  # the done event or the video itself could not be written
            return Outcome("failed", exit_code=0, failure_class="disk_full", message=f"{full}; exited 0 but with {why}")
        return Outcome("failed", exit_code=0, failure_class="engine_error", message=f"exited 0 but with {why}")
    if stalled:
        nproc = int((tracker.start or {}).get("world_size") or ranks)
        failure = "comm" if nproc > 1 else "engine_error"
        return Outcome("failed", exit_code=returncode, failure_class=failure, message=stalled)
    if returncode is None:
        if full is not None:  # the shim could not write torchrun's exit status
            return Outcome("failed", failure_class="disk_full", message=f"{full}; the render's exit status is lost")
        return Outcome(
            "interrupted",
            failure_class="worker_lost",
            message="the render's processes ended without an exit status (killed from outside or a reboot)",
        )
    outcome = _failure(returncode, tracker, attempt_dir)
    if full is not None and outcome.failure_class in ("comm", "engine_error"):
        # Checked before the network or the engine is blamed: with the disk full, the ranks could not write
        # their events or logs, and ffmpeg's pipe broke.
        outcome.failure_class, outcome.message = "disk_full", f"{full}; {outcome.message}"[:1000]
    return outcome


def _full_folder(attempt_dir: Path, save_file: str | None) -> str | None:
    """`disk full on FOLDER (N free)` for the first of the attempt's folders that has next to no space left."""
    folders = [attempt_dir, *([Path(save_file).parent] if save_file else [])]
    for folder in folders:
        if nearly_full(folder):
            return StorageFault(DISK_FULL, folder, "next to no space left", free_bytes(folder)).summary()
    return None


def _silent_death(failures: list[RootCause], by_rank: dict[int, dict[str, object]]) -> RootCause | None:
    """A rank that died by a signal without writing an error event of its own."""
    for failure in failures:
        if failure.exitcode is not None and failure.exitcode < 0 and failure.rank not in by_rank:
            return failure
    return None


def _failure(returncode: int, tracker: Tracker, attempt_dir: Path) -> Outcome:
    failures = reported_failures(attempt_dir)
    root = failures[0] if failures else None
    by_rank: dict[int, dict[str, object]] = {}
    for e in sorted(tracker.errors, key=lambda e: float(e.get("t") or 0)):
        by_rank.setdefault(int(e.get("rank") or 0), e)
    primary = [e for e in by_rank.values() if e.get("class") in _PRIMARY]
    silent = _silent_death(failures, by_rank)
    if silent is not None and not primary:
        # torchrun's "first observed" is by whole seconds, ties to the lowest rank: a peer that saw the death
        # and exited at once can be named first, though its own comm error only echoes the death.
        root = silent
    rank = root.rank if root and root.rank is not None else None
    event = by_rank.get(rank) if rank is not None else None
    if event is None or (event.get("class") not in _PRIMARY and primary):
        event = primary[0] if primary else event
    if event is None and by_rank:
        event = next(iter(by_rank.values()))
    if rank is None and event is not None:
        rank = int(event.get("rank") or 0)
    failure = str(event.get("class")) if event and event.get("class") else None
    message = str(event.get("message") or "") if event else ""
    if root and root.exitcode is not None and root.exitcode < 0 and (event is None or event.get("rank") != root.rank):
        # A rank died by a signal without a word: nothing inside it could report, so it came from outside.
        name = _signal_name(root.exitcode)
        failure = "killed"
        message = f"rank {root.rank} was killed by {name}" + (
            " (the kernel's OOM killer also sends SIGKILL)" if name == "SIGKILL" else ""
        )
    if failure is None and root and root.exitcode == 2:
        failure = "user_input"
    if failure is None and returncode < 0:
        failure, message = "killed", f"torchrun was killed by {_signal_name(returncode)}"
    if failure is None:
        failure = _from_logs(attempt_dir) or "engine_error"
    if not message:
        message = (root.traceback if root else "") or _last_lines(attempt_dir / LOG_FILE)
    # The failing rank's own status says more than torchrun's (always 1 on failure): 2 is bad input, -9 SIGKILL.
    code = root.exitcode if root and root.exitcode is not None else returncode
    return Outcome("failed", exit_code=code, failure_class=failure, failing_rank=rank, message=message)
