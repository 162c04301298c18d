"""Load generators for the concurrency test, run as separate processes:

  python -m tests.functional.queue_load submit HOME FIRST LAST COUNT TAG
  python -m tests.functional.queue_load claim HOME TOTAL SLOTS

Both go through the same storage functions as `flf2v submit` and `flf2v worker`. Each prints one JSON line
with what it did and every error it met, so the test can assert there was none.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from storage.attempts import Outcome, finish
from storage.claim import Assignment, claim_next
from storage.db import connect
from storage.jobs import insert_jobs
from storage.paths import Home
from storage.spec import JobSpec
from storage.workers import WorkerIdentity


def submit(home: Home, first: str, last: str, count: int, tag: str) -> dict[str, object]:
    conn = connect(home.db)
    ids, errors = [], []
    for n in range(count):
        spec = JobSpec(
            task="flf2v-tiny", size="64*64", frame_num=9, ckpt_dir="/ckpt", sample_solver="unipc",
            sample_steps=4, sample_shift=16.0, sample_guide_scale=5.0, base_seed=n, first_frame=first,
            last_frame=last, prompt=f"{tag} {n}", labels=[tag],
        )  # fmt: skip
        try:
            ids += insert_jobs(conn, home, [spec])
        except Exception as exc:  # reported, not raised: the test wants the full count of errors
            errors.append(f"{type(exc).__name__}: {exc}")
    return {"ids": ids, "errors": errors}


def claim(home: Home, total: int, slots: int) -> dict[str, object]:
    """Claim like a worker with `slots` slots, finishing each job shortly after, until `total` jobs in the
    database are finished (the submitters may still be adding them)."""
    conn = connect(home.db)
    me = WorkerIdentity.current()
    running: list[tuple[int, float]] = []
    claimed, errors = [], []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            while len(running) < slots:
                got = claim_next(conn, me, lambda n: Assignment("cpu", ("cpu0",)), lambda j, k: f"/logs/{j}/{k}")
                if got is None:
                    break
                claimed.append(got.job["id"])
                running.append((got.attempt_id, time.monotonic()))
            still = []
            for attempt_id, started in running:
                if time.monotonic() - started > 0.005:
                    finish(conn, attempt_id, Outcome("succeeded", exit_code=0, output_path="/v.mp4"))
                else:
                    still.append((attempt_id, started))
            running = still
            done = conn.execute("SELECT COUNT(*) FROM jobs WHERE state = 'succeeded'").fetchone()[0]
            if done >= total and not running:
                break
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        time.sleep(0.001)
    return {"claimed": claimed, "errors": errors, "pid": os.getpid()}


def main(argv: list[str]) -> int:
    mode, home = argv[0], Home(Path(argv[1]))
    if mode == "submit":
        result = submit(home, argv[2], argv[3], int(argv[4]), argv[5])
    else:
        result = claim(home, int(argv[2]), int(argv[3]))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
