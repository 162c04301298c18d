"""`flf2v cancel` of a render that no worker supervises: SIGTERM to its group, a grace period, SIGKILL.

A worker stopped with SIGTERM leaves its renders running for the next worker to re-attach. Until one starts,
nothing acts on a cancel flag, so the command does the worker's job itself. It first takes the attempt over
in the database exactly as a re-attaching worker would (store.reattach: only if its owner is dead, in one
write transaction), so a worker that starts meanwhile sees a live owner and leaves it alone; and it records
the end through the same path as reconciliation (settle_unwatched), whose conditional finish lets only one
writer record an attempt.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from flf2v_tui.worker.procs import attempt_tag, kill_all, leader_alive, signal_group, tagged, tree
from flf2v_tui.worker.settle import settle_unwatched
from storage import attempts as store
from storage.workers import WorkerIdentity, live_workers, process_alive

POLL_S = 0.2


def running_attempt(conn: sqlite3.Connection, job_id: int) -> dict[str, Any] | None:
    return next((a for a in store.running_attempts(conn) if a["job_id"] == job_id), None)


def supervisor(conn: sqlite3.Connection, attempt: dict[str, Any]) -> str | None:
    """Who acts on the attempt's cancel flag: a description of its live owner, or None when nobody does."""
    host, pid, started = attempt["worker_host"], attempt["worker_pid"], attempt["worker_started"]
    alive = process_alive(host, pid, started)
    if alive is None:
        return f"the worker on {host} (pid {pid})"
    if not alive:
        return None
    if any((w["pid"], w["pid_started"]) == (pid, started) for w in live_workers(conn)):
        return f"the worker (pid {pid})"
    return f"process {pid} (another flf2v cancel)"


def _count(pgid: int | None, tag: str) -> int:
    pids = {p.pid for p in tree(pgid)} if pgid else set()
    pids |= {p.pid for p in tagged(tag)}
    return len(pids)


def stop_unwatched(
    conn: sqlite3.Connection,
    home_root: str,
    attempt: dict[str, Any],
    grace_s: float,
    say: Callable[[str], None],
    waiting: Callable[[float, int], None],
) -> str | None:
    """Stop and record a running attempt whose worker is gone; returns the line for the user, or None when a
    live worker (or another flf2v cancel) took it over first and so acts on the flag. During the grace
    period `waiting(seconds_left, processes_left)` is called a few times a second."""
    job_id, attempt_id = attempt["job_id"], attempt["id"]
    if not store.reattach(conn, attempt_id, WorkerIdentity.current()):
        return None
    tag = attempt_tag(home_root, attempt_id)
    pgid, started = attempt["pgid"], attempt["pgid_started"]
    began = time.monotonic()
    if leader_alive(pgid, started):
        say(f"job {job_id}: no worker watches it; SIGTERM to its process group {pgid}, SIGKILL after {grace_s:g} s")
        signal_group(pgid, signal.SIGTERM)
        deadline = began + grace_s
        counted, count = 0.0, 0
        try:
            while leader_alive(pgid, started) and time.monotonic() < deadline:
                if time.monotonic() - counted >= 1.0:  # a count reads every process's environment
                    counted, count = time.monotonic(), _count(pgid, tag)
                waiting(deadline - time.monotonic(), count)
                time.sleep(POLL_S)
        except KeyboardInterrupt:
            # The cancel flag stays: the attempt's owner (this process) is now gone, so the next worker
            # re-attaches it and finishes the job of stopping it.
            say(f"job {job_id}: interrupted; still cancelling, and the next flf2v worker finishes the job")
            raise
        if leader_alive(pgid, started):
            killed = kill_all(pgid, tag)
            say(f"job {job_id}: grace period over, SIGKILL sent to {killed} process(es)")
    with_flag = {**attempt, "cancel_requested": 1}  # this call set it, whatever the row was read with
    settled, _ = settle_unwatched(conn, home_root, with_flag)
    took = time.monotonic() - began
    if settled.new_state is None:
        return f"job {job_id}: stopped; a worker had already recorded its end"
    if settled.new_state == "cancelled":
        return f"job {job_id} cancelled: its render stopped after {took:.1f} s and its slots are free"
    # It ended on its own before the signal mattered (a success stands, as it does for the worker).
    return f"job {job_id}: its render had already ended ({settled.outcome.state}) -> {settled.new_state}"
