"""Warm groups against one torchrun per job, side by side in one run (figures for bench/RESULTS.md).

The same jobs go through the real queue twice, each time in a fresh FLF2V_HOME: `flf2v worker --keep-warm 10`
and `flf2v worker --keep-warm 0`. The jobs: 6 of the tiny preset (all one engine key, varied sizes, seeds and
prompts) and 3 of the medium preset (84 MB DiT), queued at once, rendered on one CPU slot with 1 rank each.

Per job it prints the overhead: from the claim (the job could start) to its first denoising step, and that
less the job's own compute before the first step (encoding text, image and condition), which leaves what the
warm group saves: torchrun's start, the imports, reading and placing the weights. For the first job of the
queue the submit-to-first-step time is the same as the claim's plus a worker poll. Then the total wall time of
the 6 tiny jobs (worker start to the 6th done) and of the 3 medium ones (first claim to last done), and the
load seconds the groups measured (ready.json) with the checkpoint's size, which give the read rate.

Usage: .venv/bin/python bench/warm.py [--tiny 6] [--medium 3] [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.tiny import write_tiny_checkpoint  # noqa: E402
from storage.db import connect  # noqa: E402
from tests.functional.engine_helpers import draw_frame  # noqa: E402
from tests.functional.queue_helpers import env_for  # noqa: E402

TINY_SHAPES = (("64*64", 9), ("96*64", 9), ("64*64", 13), ("64*96", 9), ("64*64", 5), ("96*64", 13))
MEDIUM_SHAPE = ("128*128", 9)
ENCODE = ("encode_text", "encode_image", "encode_condition")
LOAD = ("load_text_encoder", "load_image_encoder", "load_vae", "load_transformer", "shard")


def flf2v(home: Path, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "flf2v_tui.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env_for(home), cwd=REPO)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"flf2v {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
    return proc


def submit_all(home: Path, ckpts: dict[str, Path], frames: tuple[Path, Path], tiny: int, medium: int, steps: int):
    jobs = []
    plan = [("tiny", TINY_SHAPES[i % len(TINY_SHAPES)]) for i in range(tiny)] + [("medium", MEDIUM_SHAPE)] * medium
    for n, (preset, (size, frame_num)) in enumerate(plan):
        out = flf2v(home, "submit", "--task", "flf2v-tiny", "--ckpt_dir", str(ckpts[preset]), "--first_frame",
                    str(frames[0]), "--last_frame", str(frames[1]), "--prompt", f"bird number {n} over the sea",
                    "--size", size, "--frame_num", str(frame_num), "--sample_steps", str(steps), "--base_seed",
                    str(n), "--gpus", "1", "-q")  # fmt: skip
        jobs.append((int(out.stdout.strip()), preset))
    return jobs


def events(folder: Path) -> list[dict]:
    path = folder / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def measure(home: Path, jobs: list[tuple[int, str]], started: float) -> list[dict]:
    conn = connect(home / "flf2v.db")
    rows = []
    for job_id, preset in jobs:
        job = dict(conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())
        attempt = dict(conn.execute("SELECT * FROM attempts WHERE id = ?", (job["current_attempt_id"],)).fetchone())
        if job["state"] != "succeeded":
            raise SystemExit(f"job {job_id} {job['state']}: {job['state_reason']}")
        evs = events(Path(attempt["log_dir"]))
        first_step = next(e["t"] - e["seconds"] for e in evs if e.get("kind") == "step" and e.get("rank") == 0)
        encode = sum(e["seconds"] for e in evs if e.get("kind") == "stage" and e.get("name") in ENCODE
                     and e.get("phase") == "end" and e.get("rank") == 0)  # fmt: skip
        load = sum(e["seconds"] for e in evs if e.get("kind") == "stage" and e.get("name") in LOAD
                   and e.get("phase") == "end" and e.get("rank") == 0)  # fmt: skip
        overhead = first_step - attempt["started_at"]
        rows.append({
            "job": job_id, "preset": preset, "warm": bool(attempt["warm"]), "overhead": overhead,
            "not_rendering": overhead - encode, "submitted": job["created_at"], "claimed": attempt["started_at"],
            "ended": attempt["ended_at"], "first_step": first_step, "worker_start": started, "load": load,
        })  # fmt: skip
    conn.close()
    return rows


def loads(home: Path) -> list[float]:
    found = []
    for ready in sorted((home / "groups").glob("*/ready.json")):
        found.append(float(json.loads(ready.read_text())["load_seconds"]))
    return found


def run_mode(work: Path, name: str, keep_warm: str, ckpts, frames, args) -> tuple[list[dict], list[float]]:
    home = work / name
    home.mkdir()
    jobs = submit_all(home, ckpts, frames, args.tiny, args.medium, args.steps)
    started = time.time()
    flf2v(home, "worker", "--once", "--cpu-slots", "1", "--keep-warm", keep_warm, "-q")
    return measure(home, jobs, started), loads(home)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", type=int, default=6)
    parser.add_argument("--medium", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flf2v-bench-warm-") as tmp:
        work = Path(tmp)
        ckpts = {p: write_tiny_checkpoint(work / p, layout="official", preset=p, seed=0) for p in ("tiny", "medium")}
        frames = (draw_frame(work / "first.png", (64, 64), 0.8, 0), draw_frame(work / "last.png", (64, 64), 0.2, 60))
        results = {}
        for name, keep in (("warm", "10"), ("cold", "0")):
            results[name] = run_mode(work, name, keep, ckpts, frames, args)
            print(f"{name}: done", flush=True)
        report(results, ckpts, args)


def report(results: dict[str, tuple[list[dict], list[float]]], ckpts: dict[str, Path], args) -> None:
    print(f"\n{args.tiny} tiny + {args.medium} medium jobs, {args.steps} steps, 1 rank each, one CPU slot, gloo")
    print(f"{'job':>4} {'preset':<7} {'warm: overhead':>15} {'(not rendering)':>16} {'cold: overhead':>15} "
          f"{'(not rendering)':>16}")  # fmt: skip
    warm_rows, cold_rows = results["warm"][0], results["cold"][0]
    for w, c in zip(warm_rows, cold_rows, strict=True):
        tag = "warm" if w["warm"] else "cold"
        print(f"{w['job']:>4} {w['preset']:<7} {w['overhead']:>9.2f} s {tag} {w['not_rendering']:>14.2f} s "
              f"{c['overhead']:>13.2f} s {c['not_rendering']:>14.2f} s")  # fmt: skip
    for preset in ("tiny", "medium"):
        ws = [r for r in warm_rows if r["preset"] == preset]
        cs = [r for r in cold_rows if r["preset"] == preset]
        if not ws:
            continue
        warm_only = [r["overhead"] for r in ws if r["warm"]]
        print(f"\n{preset}: median overhead, warm jobs only {statistics.median(warm_only):.2f} s; "
              f"cold (--keep-warm 0) {statistics.median(r['overhead'] for r in cs):.2f} s")  # fmt: skip
        start_w = ws[0]["worker_start"] if preset == "tiny" else ws[0]["claimed"]
        start_c = cs[0]["worker_start"] if preset == "tiny" else cs[0]["claimed"]
        wall_w, wall_c = ws[-1]["ended"] - start_w, cs[-1]["ended"] - start_c
        print(f"{preset}: total wall warm {wall_w:.1f} s, cold {wall_c:.1f} s, warm/cold {wall_w / wall_c:.2f}")
        first = ws[0]
        print(f"{preset}: first job submit to first step {first['first_step'] - first['submitted']:.2f} s (warm run)")
    group_loads = ", ".join(f"{s:.2f}" for s in results["warm"][1])
    print(f"warm run: the groups' load seconds (ready.json): {group_loads}")
    for preset, path in ckpts.items():
        size = folder_bytes(path)
        cold_loads = [r["load"] for r in cold_rows if r["preset"] == preset]
        if cold_loads:
            load = statistics.median(cold_loads)
            print(f"{preset} checkpoint: {size / 1e6:.1f} MB; a cold job's load stages {load:.2f} s (median), "
                  f"{size / 1e6 / load:.0f} MB/s read and placed")  # fmt: skip


if __name__ == "__main__":
    main()
