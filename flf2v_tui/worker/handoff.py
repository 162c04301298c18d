"""The worker's way out, and `--once`'s question whether anything is left for it.

Stopping (SIGTERM, Ctrl-C, or --once with nothing left), the worker leaves its live renders to the next worker.
Every write here is a last write (outage.py): tried once, and a failure is said in one line with what happens
anyway, so that what the worker says about each render is what the next worker will do with it.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Mapping
from typing import Protocol

from flf2v_tui.worker.hooks import Hooks
from flf2v_tui.worker.outage import StorageGuard
from flf2v_tui.worker.pool import Pool
from flf2v_tui.worker.running import Running, WorkerConfig
from storage import attempts as store
from storage import workers
from storage.claim import Assignment
from storage.deps import UNMET


class Leaving(Protocol):
    """What the way out needs of the worker (flf2v_tui.worker.loop.Worker is one)."""

    conn: sqlite3.Connection
    config: WorkerConfig
    storage: StorageGuard
    hooks: Hooks
    pool: Pool
    worker_id: int  # 0 until registered
    tick_at: float  # when the last tick began
    unsaid: int  # lines of output that could not be written

    @property
    def running(self) -> Mapping[int, Running]: ...

    def record_launch(self, r: Running, last: bool = False) -> None: ...

    def say(self, text: str) -> None: ...


RE_ATTACHES = "the next flf2v worker re-attaches it"


def shut_down(worker: Leaving) -> None:
    live = [r for r in worker.running.values() if r.ended is None]
    if live and not worker.config.stop_jobs:
        for r in live:
            if r.launch_unrecorded:  # its pgid, which re-attaching needs, is one write away: try it once more
                worker.record_launch(r, last=True)
        recorded = [r for r in live if not r.launch_unrecorded]
        if recorded:
            hand_off = functools.partial(store.hand_off, worker.conn, [r.attempt_id for r in recorded])
            worker.storage.last_write(hand_off, "the hand-off", "the next flf2v worker re-attaches the renders anyway")
        for r in live:
            worker.say(_fate(r))
    for r in worker.running.values():
        if r.ended is not None:
            worker.say(f"job {r.job_id}: its end is not recorded yet; the next flf2v worker records it")
    worker.hooks.wait_all()
    if worker.worker_id:
        stopped = functools.partial(workers.stop, worker.conn, worker.worker_id)
        worker.storage.last_write(stopped, "that this worker stopped", "its process is gone, which shows it anyway")
    if worker.unsaid:
        worker.say(f"{worker.unsaid} earlier line(s) of this worker's output could not be written and were dropped")


def _fate(r: Running) -> str:
    """What the next worker will do with a render left running."""
    if not r.launch_unrecorded:
        held = f"pgid {r.pgid}" if r.pgid is not None else "its Slurm job"
        return f"job {r.job_id} keeps running ({held}); {RE_ATTACHES}"
    # Reconciliation finds an attempt without a pgid whose worker is gone: it cannot tell the render's
    # processes from a reused pid, so it stops them by their tag and records the attempt as worker_lost.
    return (
        f"job {r.job_id}: its render (pgid {r.pgid}) was never recorded as started, so the next flf2v worker "
        "cannot re-attach it: it stops the render and records the attempt as worker_lost (retried if the job's "
        "--retries and --retry-on allow)"
    )


def work_left(worker: Leaving) -> bool:
    """For --once, asked when nothing runs right after this tick's claims found nothing to start: only a
    retry still waiting out its back-off (and able to run here) keeps the worker."""
    if workers.is_paused(worker.conn):
        return False
    sql = (
        "SELECT id, gpus FROM jobs j WHERE state = 'queued' AND held = 0 AND cancel_requested = 0 "
        f"AND not_before > ? AND NOT EXISTS ({UNMET})"
    )
    only = worker.config.only_jobs
    for job_id, gpus in worker.conn.execute(sql, (worker.tick_at,)).fetchall():
        if only is not None and job_id not in only:
            continue
        answer = worker.pool.fit(gpus)
        if isinstance(answer, Assignment) or not answer.startswith("never:"):
            return True
    return False


def left_behind(worker: Leaving) -> None:
    rows = worker.conn.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY id")
    left = [r[0] for r in rows if worker.config.only_jobs is None or r[0] in worker.config.only_jobs]
    if left:
        ids = ", ".join(str(job_id) for job_id in left[:10]) + (" ..." if len(left) > 10 else "")
        worker.say(f"--once: nothing more this worker can start; still queued: {ids} (flf2v ls says why)")
