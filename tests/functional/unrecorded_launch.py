"""A worker that starts a render while the queue's database is locked, so that the render's process group is
not recorded, and then stops: `python -m tests.functional.unrecorded_launch HOME RELEASE (locked|unlocked)`.

With `locked` the lock is still held when it stops; with `unlocked` it is gone by then. A process of its own,
so that the next worker finds this one gone, as it would after a real stop. It prints what the worker says,
and exits 3 if the render's start was recorded after all (the test would then prove nothing).
"""

from __future__ import annotations

import sys
from pathlib import Path

from flf2v_tui.worker.handoff import shut_down
from flf2v_tui.worker.loop import Worker, WorkerConfig
from flf2v_tui.worker.pool import Pool
from storage.claim import claim_next
from storage.db import connect
from storage.paths import Home
from tests.functional.lock_helpers import held_lock


def main(root: str, release: str, lock: str) -> int:
    home = Home(Path(root).resolve())
    conn = connect(home.db)  # with the busy timeout of FLF2V_BUSY_TIMEOUT_MS, which the test shortens
    worker = Worker(home, conn, Pool("cpu", ["cpu0"]), WorkerConfig(quiet=True), lambda line: print(line, flush=True))
    worker.start_up()
    claimed = claim_next(conn, worker.me, worker.pool.fit, lambda j, n: str(home.attempt_dir(j, n)))
    assert claimed is not None, "no job to claim"
    with held_lock(home.db, Path(release)):
        worker._launch(claimed.job, claimed.attempt_id, claimed.number, claimed.assignment)
        if not all(r.launch_unrecorded for r in worker.running.values()):
            return 3
        if lock == "locked":
            shut_down(worker)
    if lock == "unlocked":
        shut_down(worker)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
