"""Helpers of the warm engine's tests: a group of `python -m engine.serve` ranks driven through its folder,
as the worker drives it (engine.warm_protocol), and the jobs handed to it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil

from engine.telemetry import read_events
from engine.warm_protocol import JobEnd, JobFile, serve_args
from tests.functional.engine_helpers import REPO, free_port, tiny_args

# Four jobs that differ in everything but the engine key: size, frames, seed, prompt, solver and steps.
JOBS = (
    {"size": "64*64", "frame_num": "9", "base_seed": "11", "prompt": "a small blue bird takes off",
     "sample_solver": "unipc", "sample_steps": "3"},
    {"size": "48*48", "frame_num": "5", "base_seed": "12", "prompt": "a heron lands on a pier",
     "sample_solver": "dpm++", "sample_steps": "2"},
    {"size": "32*32", "frame_num": "13", "base_seed": "13", "prompt": "gulls circle a fishing boat",
     "sample_solver": "unipc", "sample_steps": "2"},
    {"size": "64*64", "frame_num": "5", "base_seed": "14", "prompt": "a kite drifts at dusk",
     "sample_solver": "dpm++", "sample_steps": "3"},
)  # fmt: skip


def serve_command(args: list[str], nproc: int) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m", "engine.serve", *args]
    return [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "engine.serve", *args,
    ]  # fmt: skip


@contextlib.contextmanager
def warm_group(
    group: Path, ckpt: Path, nproc: int, flags: list[str] = (), idle_exit_s: float | None = None, **env: str
) -> Iterator[subprocess.Popen]:
    """A running group in `group`, loaded with the tiny checkpoint and `flags`; killed with all its ranks if
    it is still running when the block ends."""
    key = ["--task", "flf2v-tiny", "--ckpt_dir", str(ckpt), "--device", "cpu", *flags]
    environ = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **env}
    proc = subprocess.Popen(serve_command(serve_args(group, key, idle_exit_s), nproc), env=environ, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            for child in psutil.Process(proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    child.kill()
            proc.kill()
        proc.wait()


def job_argv(ckpt: Path, frames: tuple[Path, Path], attempt: Path, flags: list[str] = (), **extra: str) -> list[str]:
    """A one-shot attempt's engine arguments: its events, logs, mp4 and decoded video in `attempt`."""
    attempt.mkdir(parents=True, exist_ok=True)
    values = {"events": str(attempt / "events.jsonl"), "log_dir": str(attempt),
              "dump_video": str(attempt / "video.npy"), **extra}  # fmt: skip
    return [*tiny_args(ckpt, *frames, attempt / "v.mp4", **values), *flags]


def hand(group: Path, seq: int, argv: list[str]) -> None:
    JobFile(seq, 1000 + seq, argv).write(group)


def wait_end(group: Path, seq: int, proc: subprocess.Popen, timeout: float = 180) -> JobEnd:
    """Job `seq`'s end file, once written; fails if the group exits first."""
    deadline = time.monotonic() + timeout
    while (end := JobEnd.read(group, seq)) is None:
        assert proc.poll() is None, f"the group exited ({proc.returncode}) before job {seq} ended"
        assert time.monotonic() < deadline, f"job {seq} did not end within {timeout} s"
        time.sleep(0.1)
    return end


def wait_for(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def events(attempt: Path) -> list[dict]:
    return read_events(attempt / "events.jsonl")


def of_kind(attempt: Path, kind: str) -> list[dict]:
    return [e for e in events(attempt) if e["kind"] == kind]


def video(attempt: Path) -> np.ndarray:
    return np.load(attempt / "video.npy")


def freed_memory(attempt: Path, rank: int = 0) -> int:
    """The resident memory of `rank` once the job's memory was freed (its memory event with freed=true)."""
    (memory,) = [e for e in of_kind(attempt, "memory") if e.get("freed") and e["rank"] == rank]
    return int(memory["rss"])


def load_stages(group: Path) -> int:
    """How many times the group loaded its transformer (its own events)."""
    group_events = read_events(group / "events.jsonl")
    return sum(
        1 for e in group_events if e["kind"] == "stage" and (e["name"], e["phase"]) == ("load_transformer", "begin")
    )
