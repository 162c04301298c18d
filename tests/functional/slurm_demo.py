"""`make slurm-demo`: the demo job rendered on 2 nodes × 1 rank through a real Slurm on this machine.

Brings up the test cluster (tests/functional/slurm_cluster.py: slurmctld, and two slurmd in network namespaces
of their own), queues the demo job with --nodes 2 --gpus-per-node 1, runs `flf2v worker --backend slurm` until
the job is done, prints the Slurm job id, its sacct line and the video path, and tears the cluster down. The
queue (and the video) stay in /tmp/flf2v-slurm-demo/home. Without root, or where Slurm cannot be installed,
it says why and exits 1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from flf2v_tui.demo import DEMO_PROMPT, DEMO_SIZE, draw_frames
from tests.functional.slurm_cluster import SlurmCluster, unavailable

ROOT = Path("/tmp/flf2v-slurm-demo")
REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    why = unavailable()
    if why:
        print(f"slurm-demo: cannot run a Slurm cluster here: {why}", file=sys.stderr)
        return 1
    home = ROOT / "home"
    shutil.rmtree(ROOT / "cluster", ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    first, last = draw_frames(ROOT / "frames")
    print("slurm-demo: starting slurmctld and 2 slurmd nodes (flf2v-n1, flf2v-n2) ...", flush=True)
    try:
        cluster = SlurmCluster(ROOT / "cluster", nodes=2).__enter__()  # stops what it started if it fails
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"slurm-demo: could not start the Slurm cluster: {exc}", file=sys.stderr)
        return 1
    try:
        return _render(cluster, home, first, last)
    finally:
        cluster.stop()


def _render(cluster: SlurmCluster, home: Path, first: Path, last: Path) -> int:
    env = {**cluster.env, "FLF2V_HOME": str(home), "PYTHONPATH": str(REPO), "FLF2V_SLURM_POLL_S": "0.5"}

    def flf2v(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flf2v_tui.cli", *args], env=env, text=True,
                              capture_output=True, check=False)  # fmt: skip

    submitted = flf2v("submit", "--task", "flf2v-tiny", "--first_frame", str(first), "--last_frame", str(last),
                      "--prompt", DEMO_PROMPT, "--size", DEMO_SIZE, "--frame_num", "9", "--sample_steps", "8",
                      "--nodes", "2", "--gpus-per-node", "1", "-q")  # fmt: skip
    if submitted.returncode != 0:
        print(submitted.stderr, file=sys.stderr)
        return 1
    job = submitted.stdout.strip()
    print(f"slurm-demo: queued job {job} (2 nodes × 1 rank); flf2v worker --backend slurm runs it", flush=True)
    worker = [sys.executable, "-m", "flf2v_tui.cli", "worker", "--backend", "slurm", "--cpu-slots", "1", "--once"]
    if subprocess.run(worker, env=env, check=False).returncode != 0:
        return 1
    shown = flf2v("show", job, "--json")
    record = json.loads(shown.stdout)
    attempt = record["attempts"][-1]
    slurm_job = attempt.get("slurm_job") or "?"
    sacct = cluster.command("sacct", "-c", "-j", slurm_job, "-P", "--format=JobID,State,ExitCode,NodeList,Elapsed")
    print(f"slurm job: {slurm_job}")
    print(f"sacct:     {sacct.stdout.strip().splitlines()[-1] if sacct.stdout.strip() else sacct.stderr.strip()}")
    print(f"logs:      {attempt['log_dir']} (job.sbatch, torchrun.log, rank0.log, rank1.log, events.jsonl)")
    print(f"state:     {record['state']}")
    print(f"video:     {record.get('output_path') or '-'}")
    print("slurm-demo: stopping the cluster", flush=True)
    return 0 if record["state"] == "succeeded" else 1


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
