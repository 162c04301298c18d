"""Test-only stand-in for `engine.generate` under torchrun: same flags, same events and log format, and it
fails on demand in ways the real engine cannot be made to fail on CPU. Never used for a happy path.

The script is read from the prompt, e.g. "script: steps=20 step_s=0.05 fail=sigkill fail_rank=1 fail_at=3".
  steps, step_s     number and duration of denoise steps
  fail              sigkill | oom | exit | hang | badinput (nothing: succeed)
  fail_rank         which rank fails (default 0); fail_at: at which step (default 1)
  lines_per_s       extra log lines per second per rank while stepping (for the log-following benchmark)
  frames, side      the saved video's frame count and size (default 9 grey 16x16 frames; more are noise)
  gate              a file: before its last step, the engine waits until it exists (a render that lasts as
                    long as the test needs, however slow or fast the machine)
  save_gate         a file: rank 0's save stops half-way, its partial file open, until it exists
  exit_gate         a file: after the done event, the engine waits until it exists before it exits
  done_frames       the frame count the done event reports (default: the true one), to make a bad video
It does not import torch, so a run costs only torchrun's own start-up.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from engine.cli_args import build_parser
from engine.mp4 import write_mp4


def wait_for_file(path: Path) -> None:
    while not path.exists():
        time.sleep(0.02)


class GatedFrames(np.ndarray):
    """Frames that write_mp4 receives up to half-way, then only once `gate` exists: a save that is still
    going, its partial file on disk, for as long as the test needs."""

    gate: Path

    def __iter__(self) -> Iterator[np.ndarray]:
        frames = self.view(np.ndarray)
        for i, frame in enumerate(frames):
            if i == len(frames) // 2:
                wait_for_file(self.gate)
            yield frame


def parse_script(prompt: str) -> dict[str, str]:
    text = prompt.split("script:", 1)[1] if "script:" in prompt else ""
    return dict(item.split("=", 1) for item in text.split() if "=" in item)


class Out:
    def __init__(self, rank: int, events: str | None, log_dir: str | None) -> None:
        self.rank = rank
        self.events = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if events else None
        self.log = open(Path(log_dir) / f"rank{rank}.log", "a", buffering=1) if log_dir else None  # noqa: SIM115

    def emit(self, kind: str, **fields: object) -> None:
        if self.events is not None:
            line = json.dumps({"v": 1, "t": time.time(), "rank": self.rank, "kind": kind, **fields}) + "\n"
            os.write(self.events, line.encode())

    def job(self, kind: str, **fields: object) -> None:
        if self.rank == 0:
            self.emit(kind, **fields)

    def info(self, message: str, level: str = "INFO") -> None:
        t = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f",{int(t % 1 * 1000):03d}"
        if self.log:
            self.log.write(f"[{stamp}] {level}: {message}\n")


def main() -> int:
    args = build_parser().parse_args()
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    script = parse_script(args.prompt or "")
    out = Out(rank, args.events, args.log_dir)

    def on_term(signum: int, _frame: object) -> None:
        out.emit("error", type="Killed", message=f"stopped by signal {signum}", traceback="", **{"class": "killed"})
        out.info("Generation failed (killed)", "ERROR")
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    steps, step_s = int(script.get("steps", 4)), float(script.get("step_s", 0.05))
    fail, fail_rank, fail_at = script.get("fail", ""), int(script.get("fail_rank", 0)), int(script.get("fail_at", 1))
    lines_per_s = float(script.get("lines_per_s", 0))
    gate = Path(script["gate"]) if "gate" in script else None
    out.job("start", task=args.task, world_size=world, device="cpu", args=vars(args), engine_version="scripted")
    out.info(f"Generation job args: {args}")
    if fail == "badinput" and rank == 0:
        out.emit("error", type="BadInputError", message="first frame x.png is corrupt", traceback="",
                 **{"class": "user_input"})  # fmt: skip
        sys.stderr.write("error: first frame x.png is corrupt\n")
        return 2
    out.job("stage", name="denoise", phase="begin")
    started = time.time()
    for i in range(1, steps + 1):
        if fail and rank == fail_rank and i == fail_at:
            if fail == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            if fail == "hang":
                while True:
                    time.sleep(1)
            kind = "oom" if fail == "oom" else "engine_error"
            message = "CUDA out of memory. Tried to allocate 2.00 GiB" if fail == "oom" else "scripted failure"
            out.emit("error", type="RuntimeError", message=message, traceback="Traceback ...", **{"class": kind})
            out.info(f"Generation failed ({kind}): {message}", "ERROR")
            return 1
        if gate is not None and i == steps:
            wait_for_file(gate)
        step_start = time.time()
        deadline = step_start + step_s
        n = 0
        while lines_per_s and time.time() < deadline:
            out.info(f"log line {n} of step {i} " + "x" * 60)
            n += 1
            # Paced against the clock, not by fixed sleeps, so the rate holds whatever a write costs.
            time.sleep(max(0.0, step_start + n / lines_per_s - time.time()))
        time.sleep(max(0.0, deadline - time.time()))
        out.job("step", i=i, n=steps, seconds=step_s, eta_seconds=step_s * (steps - i))
        out.emit("memory", rss=100_000_000 + rank, peak_rss=120_000_000 + rank, step=i)
        out.info(f"Sampling {i:>3}/{steps} {step_s:.2f} s/it")
    out.job("stage", name="denoise", phase="end", seconds=round(time.time() - started, 3))
    if rank == 0 and args.save_file:
        # A real (tiny, grey) mp4, so that the worker's check of the output and the catalogue see a true video.
        count, side = int(script.get("frames", 9)), int(script.get("side", 16))
        frames = np.full((count, side, side, 3), 128, dtype=np.uint8)
        if count > 9:
            frames[9:] = np.random.default_rng(0).integers(0, 256, (count - 9, side, side, 3), dtype=np.uint8)
        if "save_gate" in script:
            frames = frames.view(GatedFrames)
            frames.gate = Path(script["save_gate"])
        path = write_mp4(frames, args.save_file, fps=16)
        reported = int(script.get("done_frames", count))
        out.job("done", output=str(path.resolve()), frames=reported, fps=16, seconds=time.time() - started,
                width=side, height=side)  # fmt: skip
    if "exit_gate" in script:
        wait_for_file(Path(script["exit_gate"]))
    out.info("Finished.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
