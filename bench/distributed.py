"""The distributed engine on this machine's CPUs, side by side in one run, through the real entry point.

For the `medium` embedded checkpoint (84 MB DiT) it runs `python -m engine.generate` alone and under
torchrun (2 ranks, gloo) and reads the engine's own telemetry:
- seconds per denoising step (median, each run's first step dropped): 1 rank against 2 ranks with
  Ulysses 2, and batched CFG against two separate forwards;
- resident memory per rank while loading (peak during the load stages minus the figure just before them),
  and the peak over the whole run, with and without FSDP.

At 256*256 the 768 video tokens per sample outweigh the 1026 text and image tokens that cross-attention
projects on every rank, so splitting the sequence has something to split.

    .venv/bin/python bench/distributed.py [--steps 6] [--repeats 2] [--size 256*256] [--only NAME-PART]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.telemetry import LOAD_STAGES, read_events  # noqa: E402
from engine.tiny import write_tiny_checkpoint  # noqa: E402
from tests.functional.engine_helpers import draw_frame, engine_command, tiny_args  # noqa: E402


@dataclass
class Config:
    name: str
    nproc: int
    threads: int
    flags: list[str]
    env: dict[str, str] = field(default_factory=dict)
    steps: list[float] = field(default_factory=list)
    load_growth: dict[int, list[int]] = field(default_factory=dict)
    peak: dict[int, list[int]] = field(default_factory=dict)


CONFIGS = [
    # Explicit: --cfg_batch defaults to auto, which batches on the CPU only.
    Config("1 rank, 2 threads, batched CFG", 1, 2, ["--cfg_batch", "True"]),
    Config("1 rank, 2 threads, separate CFG forwards", 1, 2, ["--cfg_batch", "False"]),
    Config("1 rank, 1 thread, batched CFG", 1, 1, ["--cfg_batch", "True"]),
    Config("2 ranks x 1 thread, Ulysses 2", 2, 1, ["--ulysses_size", "2"]),
    Config("2 ranks x 1 thread, Ulysses 2 + FSDP DiT/T5", 2, 1, ["--ulysses_size", "2", "--dit_fsdp", "--t5_fsdp"]),
    Config("2 ranks x 1 thread, FSDP DiT/T5", 2, 1, ["--dit_fsdp", "--t5_fsdp"]),
    # glibc raises its mmap threshold after large frees, so freed all-gather buffers stay resident; a fixed
    # threshold shows what FSDP itself keeps.
    Config(
        "  same, MALLOC_MMAP_THRESHOLD_=65536", 2, 1, ["--dit_fsdp", "--t5_fsdp"], {"MALLOC_MMAP_THRESHOLD_": "65536"}
    ),
    Config("2 ranks x 1 thread, no FSDP", 2, 1, []),
]


def run_once(config: Config, ckpt: Path, frames: tuple[Path, Path], size: str, steps: int, out: Path) -> None:
    out.mkdir(parents=True)
    args = tiny_args(ckpt, *frames, out / "v.mp4", size=size, sample_steps=str(steps),
                     events=str(out / "events.jsonl"))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(config.threads), **config.env}
    proc = subprocess.run(engine_command([*args, *config.flags], config.nproc), env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"{config.name} failed:\n{proc.stderr[-3000:]}")
    events = read_events(out / "events.jsonl")
    config.steps += [e["seconds"] for e in events if e["kind"] == "step"][1:]
    for rank in range(config.nproc):
        memory = [e for e in events if e["kind"] == "memory" and e["rank"] == rank and "stage" in e]
        before = next(e["rss"] for e in memory if (e["stage"], e["phase"]) == ("load_text_encoder", "begin"))
        # Each stage's end event holds that stage's own peak (the peak starts again at each stage).
        loaded = max(e["peak_rss"] for e in memory if e["phase"] == "end" and e["stage"] in LOAD_STAGES)
        config.load_growth.setdefault(rank, []).append(loaded - before)
        config.peak.setdefault(rank, []).append(max(e["peak_rss"] for e in memory))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--size", default="256*256")
    parser.add_argument("--only", default="", help="run only the configurations whose name contains this")
    args = parser.parse_args()
    configs = [c for c in CONFIGS if args.only in c.name]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ckpt = write_tiny_checkpoint(work / "medium", layout="official", preset="medium")
        width, height = (int(v) for v in args.size.split("*"))
        frames = (
            draw_frame(work / "a.png", (width, height), 0.8, 0),
            draw_frame(work / "b.png", (width, height), 0.2, 60),
        )
        for repeat in range(args.repeats):  # interleaved, so background load hits every configuration alike
            for i, config in enumerate(configs):
                run_once(config, ckpt, frames, args.size, args.steps, work / f"run-{repeat}-{i}")
    mb = 1e6
    print(f"medium preset, {args.size}, 9 frames, {args.steps} steps x {args.repeats} runs, CPU, gloo")
    print(f"{'configuration':<46} {'s/step':>7} {'load growth MB per rank':>24} {'peak RSS MB per rank':>21}")
    for c in configs:
        growth = " / ".join(f"{min(v) / mb:.0f}" for _, v in sorted(c.load_growth.items()))
        peak = " / ".join(f"{min(v) / mb:.0f}" for _, v in sorted(c.peak.items()))
        print(f"{c.name:<46} {statistics.median(c.steps):>7.3f} {growth:>24} {peak:>21}")


if __name__ == "__main__":
    main()
