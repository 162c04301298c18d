"""What sqlmodel would cost `flf2v ls` (the measurement behind dropping it; figures for bench/RESULTS.md):

  - the import of sqlmodel, and of the SQLModel classes that mirrored storage/schema.py until it was removed;
  - `flf2v ls` at 10,000 jobs as it is, and with those classes imported first (the least an ls read through
    them would cost);
  - in one process, all 10,000 jobs joined with their attempt through the ORM, against `storage.jobs.list_jobs`.

Usage: .venv/bin/python bench/orm_cost.py [--runs N]
sqlmodel is no longer a dependency: install it first (`.venv/bin/python -m pip install sqlmodel==0.0.50`, the
version last locked). The classes are read from the last commit that had them. Every command runs once
untimed, then all of them take turns, so a busy machine slows each alike; wall and CPU medians are printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.queue_speed import env_for, fill  # noqa: E402

MIRROR_COMMIT = "371d6fd21a5791534c115674526de0aafd324c75"  # the last commit with storage/models.py

ORM_READ = """
import sys, time
t0 = time.perf_counter()
import models
from sqlmodel import select
t1 = time.perf_counter()
from storage.db import connect
from storage.jobs import list_jobs
from storage.paths import Home
home = Home.resolve()
join = select(models.Job, models.Attempt).join(
    models.Attempt, models.Attempt.id == models.Job.current_attempt_id, isouter=True
)
with models.session(home) as s:
    rows = s.exec(join).all()
t2 = time.perf_counter()
conn = connect(home.db)
t3 = time.perf_counter()
listed = list_jobs(conn)
t4 = time.perf_counter()
assert len(rows) == len(listed) == 10_000
print(t1 - t0, t2 - t1, t4 - t3)
"""


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + system) and stdout of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=True, cwd=REPO).stdout
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, out


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="timed runs of each command")
    args = parser.parse_args()
    if importlib.util.find_spec("sqlmodel") is None:
        sys.exit("sqlmodel is not installed: .venv/bin/python -m pip install sqlmodel==0.0.50")
    with tempfile.TemporaryDirectory(prefix="flf2v-bench-") as tmp:
        root = Path(tmp)
        (root / "mirror").mkdir()
        mirror = subprocess.run(["git", "show", f"{MIRROR_COMMIT}:storage/models.py"], cwd=REPO, check=True,
                                capture_output=True, text=True).stdout  # fmt: skip
        (root / "mirror" / "models.py").write_text(mirror)
        finished, queued = root / "finished", root / "queued"
        fill(finished, 10_000, 0.99)
        fill(queued, 10_000, 0.0)
        py = sys.executable
        with_mirror = f"import sys; sys.path.insert(0, {str(root / 'mirror')!r}); import models"
        ls_with_mirror = f"{with_mirror}; from flf2v_tui.cli import main; sys.argv = ['flf2v', 'ls']; main()"
        cases = {
            "python -c pass": ([py, "-c", "pass"], finished),
            "python -c 'import sqlmodel'": ([py, "-c", "import sqlmodel"], finished),
            "import of the SQLModel classes (storage/models.py)": ([py, "-c", with_mirror], finished),
            "flf2v ls, 10,000 jobs (9,900 finished)": ([py, "-m", "flf2v_tui.cli", "ls"], finished),
            "the same, the SQLModel classes imported first": ([py, "-c", ls_with_mirror], finished),
            "flf2v ls, 10,000 jobs (all queued: 10,000 rows)": ([py, "-m", "flf2v_tui.cli", "ls"], queued),
            "the same, the SQLModel classes imported first ": ([py, "-c", ls_with_mirror], queued),
        }
        read = [py, "-c", f"import sys; sys.path.insert(0, {str(root / 'mirror')!r})\n{ORM_READ}"]
        for cmd, home in cases.values():
            run(cmd, env_for(home))
        walls: dict[str, list[float]] = {k: [] for k in cases}
        cpus: dict[str, list[float]] = {k: [] for k in cases}
        reads: list[list[float]] = []
        for _ in range(args.runs):
            for key, (cmd, home) in cases.items():
                wall, cpu, _ = run(cmd, env_for(home))
                walls[key].append(wall)
                cpus[key].append(cpu)
            reads.append([float(x) for x in run(read, env_for(queued))[2].split()])
    width = max(len(k) for k in cases)
    print(f"sqlmodel's cost to flf2v ls — Python {sys.version.split()[0]}, median of {args.runs}")
    for key in cases:
        print(f"  {key:<{width}}  wall {ms(walls[key]):>7}  CPU {ms(cpus[key]):>7}")
    print("  in one process, 10,000 jobs joined with their attempt:")
    for i, what in enumerate(("import the classes and sqlmodel.select", "ORM select, all rows", "list_jobs")):
        print(f"    {what:<40}  {ms([r[i] for r in reads]):>7}")


if __name__ == "__main__":
    main()
