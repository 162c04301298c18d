"""Crash reconciliation: what became of running attempts whose worker is gone.

Checked on start and every half minute: if an attempt's shim (pid plus start time) still runs, this worker
re-attaches and supervises it to the end. If the shim ended while nobody watched, its exit file says how,
and the attempt is finished normally (a render can succeed during a worker restart). Otherwise the attempt
is interrupted (worker_lost) and the job requeued by its retry policy.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Container
from typing import TYPE_CHECKING, Any, Protocol

from flf2v_tui.worker.procs import leader_alive
from flf2v_tui.worker.settle import settle_unwatched
from storage import attempts as store
from storage.paths import Home
from storage.workers import WorkerIdentity, process_alive

if TYPE_CHECKING:
    from flf2v_tui.worker.launchers import Launcher


class Reconciling(Protocol):
    """What reconciliation needs of the worker (flf2v_tui.worker.loop.Worker is one)."""

    conn: sqlite3.Connection
    home: Home
    me: WorkerIdentity
    launcher: Launcher

    @property
    def running(self) -> Container[int]: ...  # the attempts this worker watches, by id

    def adopt(self, attempt: dict[str, Any]) -> None: ...  # supervise a live render re-attached to this worker

    def say(self, text: str) -> None: ...


def reconcile(worker: Reconciling, quiet: bool = False) -> None:
    me = worker.me
    for attempt in store.running_attempts(worker.conn):
        if attempt["id"] in worker.running:
            continue
        owner = (attempt["worker_host"], attempt["worker_pid"], attempt["worker_started"])
        if (owner[1], owner[2]) != (me.pid, me.started) and process_alive(*owner) is not False:
            continue  # its own worker is alive (or on another host): not ours to touch
        backend = attempt.get("backend") or "local"
        if backend != "local":
            # Its processes run elsewhere: only a worker of the same backend can ask about them. Re-attached
            # whether it still runs or not; supervision then finds its end and records it as usual.
            if backend == worker.launcher.name and store.reattach(worker.conn, attempt["id"], me):
                worker.adopt(attempt)
                job = attempt.get("slurm_job") or "its job name"
                worker.say(f"job {attempt['job_id']}: re-attached to its {backend} job ({job})")
            continue
        if leader_alive(attempt["pgid"], attempt["pgid_started"]):
            if store.reattach(worker.conn, attempt["id"], me):
                worker.adopt(attempt)
                worker.say(f"job {attempt['job_id']}: re-attached to its running render (pgid {attempt['pgid']})")
            continue
        settled, leftovers = settle_unwatched(worker.conn, str(worker.home.root), attempt)
        if leftovers and not quiet:
            worker.say(f"job {attempt['job_id']}: stopped {leftovers} leftover process(es) of its last attempt")
        new_state, outcome = settled.new_state, settled.outcome
        if new_state is not None:
            worker.say(f"job {attempt['job_id']}: attempt {attempt['number']} {outcome.state} while no worker "
                       f"watched -> {new_state}")  # fmt: skip
