"""Queue benchmarks, side by side in one run (figures for bench/RESULTS.md):

  - `flf2v ls` wall time with 100 and with 10,000 jobs in the database;
  - `flf2v submit` latency;
  - submit → torchrun spawned, on an idle worker;
  - worker CPU while it follows 2 ranks that log 1,000 lines/s each (and `flf2v logs --all --follow`'s).

Usage: .venv/bin/python bench/queue_speed.py [--quick]
Everything runs in a temporary FLF2V_HOME; the render in the last two uses the test-only scripted engine
(no weights), since what is measured is the queue, not the model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from storage.db import connect, write_tx  # noqa: E402
from storage.paths import Home  # noqa: E402
from storage.states import FINISHED, QUEUED, RUNNING  # noqa: E402
from tests.functional.engine_helpers import draw_frame  # noqa: E402
from tests.functional.queue_helpers import SCRIPTED, write_stub_checkpoint  # noqa: E402
from tests.functional.queue_helpers import env_for as _env_for  # noqa: E402


def env_for(home: Path, engine: str | None = None) -> dict[str, str]:
    env = _env_for(home, engine)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure with .pyc caches, as an installed flf2v runs
    return env


def fill(home: Path, count: int, finished_share: float) -> None:
    """`count` jobs straight into the table (as a long history would leave them), with running attempts."""
    Home(home).ensure()
    conn = connect(home / "flf2v.db")
    now = time.time()
    rows = []
    for n in range(count):
        finished = n < count * finished_share
        state = FINISHED[n % 3] if finished else (RUNNING if n % 50 == 0 else QUEUED)
        rows.append((n + 1, state, n + 1, f"a prompt about bird number {n} flying over the sea at dawn", now - n,
                     now - n, now - n if finished else None, json.dumps(["bench"])))  # fmt: skip
    with write_tx(conn):
        conn.executemany(
            "INSERT INTO jobs (id, state, seq, prompt, created_at, queued_at, finished_at, labels, task, size, "
            "frame_num, ckpt_dir, sample_solver, sample_steps, sample_shift, sample_guide_scale, base_seed, "
            "first_frame, last_frame, first_frame_src, last_frame_src) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
            "'flf2v-14B', '1280*720', 81, '/ckpt', 'unipc', 50, 16.0, 5.0, 1, '/f.png', '/l.png', '/f.png', '/l.png')",
            rows,
        )
    conn.close()


def timed(cmd: list[str], env: dict[str, str], runs: int) -> float:
    """Median wall time; one untimed run first so bytecode caches exist, as on an installed system."""
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def flf2v(*args: str) -> list[str]:
    return [sys.executable, "-m", "flf2v_tui.cli", *args]


def bench_ls(root: Path, runs: int) -> list[tuple[str, str]]:
    out = []
    for label, count, share, args in (
        ("ls, 100 jobs", 100, 0.5, ()),
        ("ls, 10,000 jobs (9,900 finished)", 10_000, 0.99, ()),
        ("ls, 10,000 jobs (all queued: 10,000 rows)", 10_000, 0.0, ()),
        ("ls --all, 10,000 jobs", 10_000, 0.99, ("--all",)),
        ("ls --json --all, 10,000 jobs", 10_000, 0.99, ("--all", "--json")),
    ):
        home = root / f"ls-{count}-{share}"
        if not home.exists():
            fill(home, count, share)
        out.append((label, f"{timed(flf2v('ls', *args), env_for(home), runs) * 1000:.0f} ms"))
    return out


def submit_args(ckpt: Path, frames: tuple[Path, Path], prompt: str) -> list[str]:
    return flf2v("submit", "--task", "flf2v-tiny", "--ckpt_dir", str(ckpt), "--first_frame", str(frames[0]),
                 "--last_frame", str(frames[1]), "--prompt", prompt, "--gpus", "2", "-q")  # fmt: skip


def bench_submit_and_spawn(root: Path, ckpt: Path, frames: tuple[Path, Path], runs: int) -> list[tuple[str, str]]:
    home = root / "spawn"
    env = env_for(home, SCRIPTED)
    latency = timed(submit_args(ckpt, frames, "script: steps=1 step_s=0"), env_for(root / "submit"), runs)
    worker = subprocess.Popen(flf2v("worker", "--quiet", "--cpu-slots", "1"), env=env, stdout=subprocess.DEVNULL)
    spawn, returned = [], []
    try:
        time.sleep(1.5)  # idle
        for _ in range(runs):
            started = time.time()
            job = subprocess.run(submit_args(ckpt, frames, "script: steps=1 step_s=0"), env=env, capture_output=True,
                                 text=True, check=True).stdout.strip()  # fmt: skip
            back = time.time()
            marker = home / "jobs" / job / "attempt-1" / "shim.json"
            while not marker.exists():
                time.sleep(0.005)
            spawn.append(marker.stat().st_mtime - started)
            returned.append(marker.stat().st_mtime - back)
            conn = connect(home / "flf2v.db")
            while conn.execute("SELECT state FROM jobs WHERE id = ?", (int(job),)).fetchone()[0] == "running":
                time.sleep(0.05)
            conn.close()
            time.sleep(1.0)  # idle again
    finally:
        worker.terminate()
        worker.wait()
    return [
        ("submit latency (CLI, validated + copied)", f"{latency * 1000:.0f} ms"),
        ("submit start → torchrun spawned (idle worker)", f"{statistics.median(spawn) * 1000:.0f} ms"),
        ("submit returned → torchrun spawned", f"{statistics.median(returned) * 1000:.0f} ms"),
    ]


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def bench_follow(root: Path, ckpt: Path, frames: tuple[Path, Path], seconds: float) -> list[tuple[str, str]]:
    home = root / "follow"
    env = env_for(home, SCRIPTED)
    steps = int(seconds)
    script = f"script: steps={steps} step_s=1 lines_per_s=1000"
    job = subprocess.run(submit_args(ckpt, frames, script), env=env, capture_output=True, text=True,
                         check=True).stdout.strip()  # fmt: skip
    worker = subprocess.Popen(flf2v("worker", "--quiet", "--cpu-slots", "1"), env=env, stdout=subprocess.DEVNULL)
    folder = home / "jobs" / job / "attempt-1"
    while not (folder / "rank1.log").exists():
        time.sleep(0.05)
    logs = subprocess.Popen(flf2v("logs", job, "--all", "--follow"), env=env, stdout=subprocess.DEVNULL)
    time.sleep(1.5)
    w, f = psutil.Process(worker.pid), psutil.Process(logs.pid)
    w0, f0, t0 = cpu_seconds(w), cpu_seconds(f), time.monotonic()
    lines0 = sum(len((folder / f"rank{r}.log").read_bytes().splitlines()) for r in (0, 1))
    time.sleep(seconds - 3)
    w1, f1, t1 = cpu_seconds(w), cpu_seconds(f), time.monotonic()
    lines1 = sum(len((folder / f"rank{r}.log").read_bytes().splitlines()) for r in (0, 1))
    rate = (lines1 - lines0) / (t1 - t0)
    logs.terminate()
    worker.terminate()
    logs.wait()
    worker.wait()
    return [
        ("log lines written by 2 ranks", f"{rate:,.0f} lines/s"),
        ("worker CPU while following them", f"{(w1 - w0) / (t1 - t0) * 100:.1f} % of one core"),
        ("`flf2v logs --all --follow` CPU", f"{(f1 - f0) / (t1 - t0) * 100:.1f} % of one core"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    runs = 3 if args.quick else 7
    with tempfile.TemporaryDirectory(prefix="flf2v-bench-") as tmp:
        root = Path(tmp)
        ckpt = write_stub_checkpoint(root / "ckpt")
        frames = (draw_frame(root / "a.png", (64, 64), 0.8, 0), draw_frame(root / "b.png", (64, 64), 0.2, 60))
        results = [
            *bench_ls(root, runs),
            *bench_submit_and_spawn(root, ckpt, frames, runs),
            *bench_follow(root, ckpt, frames, 10.0 if args.quick else 20.0),
        ]
    width = max(len(k) for k, _ in results)
    print(f"flf2v queue benchmark — {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, median of {runs}")
    for key, value in results:
        print(f"  {key:<{width}}  {value}")


if __name__ == "__main__":
    main()
