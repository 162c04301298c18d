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
from dataclasses import dataclass
from typing import Any

from flf2v_tui.worker.launchers import slurm
from flf2v_tui.worker.procs import attempt_tag, kill_all, leader_alive, signal_group, tagged_by, victims
from flf2v_tui.worker.settle import settle_unwatched
from storage import attempts as store
from storage import ops
from storage.workers import WorkerIdentity, live_workers, process_alive

POLL_S = 0.2  # a Slurm job is asked about at its own, slower rate (slurm.UnwatchedJob)


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


def request_cancel(conn: sqlite3.Connection, job_id: int) -> tuple[str, dict[str, Any] | None]:
    """Set the job's cancel flag (the CLI's and the TUI's cancel): the line to show, and its running attempt
    when nobody acts on the flag, which the caller then stops (None when nothing runs or a worker does)."""
    text = ops.cancel(conn, job_id)
    attempt = running_attempt(conn, job_id)
    if attempt is None:
        return text, None
    owner = supervisor(conn, attempt)
    if owner is not None:
        return f"job {job_id}: cancel requested; {owner} stops its processes (SIGTERM, then SIGKILL)", None
    return text, attempt


@dataclass
class _Stopping:
    attempt: dict[str, Any]
    tag: str
    began: float
    slurm_job: slurm.UnwatchedJob | None = None  # its Slurm job, when it runs on Slurm

    def alive(self) -> bool:
        if self.slurm_job is not None:
            return self.slurm_job.alive()
        return leader_alive(self.attempt["pgid"], self.attempt["pgid_started"])


def stop_unwatched(
    conn: sqlite3.Connection,
    home_root: str,
    attempts: list[dict[str, Any]],
    grace_s: float,
    say: Callable[[str], None],
    waiting: Callable[[float, int], None],
) -> list[str | None]:
    """Stop and record running attempts whose worker is gone, all at once: every one gets its SIGTERM before
    any grace period is waited out, so ten hung renders take one grace period, not ten. Returns a line for
    the user per attempt, or None for one a live worker (or another flf2v cancel) took over first and so acts
    on the flag. During the grace period `waiting(seconds_left, processes_left)` is called a few times a
    second."""
    stopping: list[_Stopping | None] = []
    for attempt in attempts:
        if not store.reattach(conn, attempt["id"], WorkerIdentity.current()):
            stopping.append(None)
            continue
        on_slurm = slurm.UnwatchedJob(attempt, home_root) if attempt.get("backend") == "slurm" else None
        stop = _Stopping(attempt, attempt_tag(home_root, attempt["id"]), time.monotonic(), on_slurm)
        stopping.append(stop)
        if stop.slurm_job is not None:
            say(f"job {attempt['job_id']}: no worker watches it; {stop.slurm_job.cancel()}")
        elif stop.alive():
            job_id, pgid = attempt["job_id"], attempt["pgid"]
            say(f"job {job_id}: no worker watches it; SIGTERM to its group {pgid}, SIGKILL after {grace_s:g} s")
            signal_group(pgid, signal.SIGTERM)
    _wait_out([s for s in stopping if s is not None], grace_s, say, waiting)
    return [None if s is None else _record(conn, home_root, s) for s in stopping]


def _wait_out(
    stopping: list[_Stopping], grace_s: float, say: Callable[[str], None], waiting: Callable[[float, int], None]
) -> None:
    deadline = time.monotonic() + grace_s
    counted, count = 0.0, 0
    try:
        while (alive := [s for s in stopping if s.alive()]) and time.monotonic() < deadline:
            if time.monotonic() - counted >= 1.0:  # a count reads every process's environment, once for all
                counted = time.monotonic()
                by_tag = tagged_by({s.tag for s in alive})
                count = sum(len(victims(s.attempt["pgid"], s.tag, by_tag.get(s.tag, []))) for s in alive)
            waiting(deadline - time.monotonic(), count)
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        # The cancel flags stay: the attempts' owner (this process) is now gone, so the next worker
        # re-attaches them and finishes the job of stopping them.
        say("interrupted; still cancelling, and the next flf2v worker finishes the job")
        raise
    for stop in stopping:
        if not stop.alive():  # asked once: a second look could ask Slurm again and read a failed answer as alive
            continue
        if stop.slurm_job is not None:
            say(f"job {stop.attempt['job_id']}: grace period over, {stop.slurm_job.cancel(kill=True)}")
        else:
            killed = kill_all(stop.attempt["pgid"], stop.tag)
            say(f"job {stop.attempt['job_id']}: grace period over, SIGKILL sent to {killed} process(es)")


def _record(conn: sqlite3.Connection, home_root: str, stop: _Stopping) -> str:
    job_id = stop.attempt["job_id"]
    with_flag = {**stop.attempt, "cancel_requested": 1}  # this call set it, whatever the row was read with
    settled, _ = settle_unwatched(conn, home_root, with_flag)
    took = time.monotonic() - stop.began
    if settled.new_state is None:
        return f"job {job_id}: stopped; a worker had already recorded its end"
    if settled.new_state == "cancelled":
        return f"job {job_id} cancelled: its render stopped after {took:.1f} s and its slots are free"
    # It ended on its own before the signal mattered (a success stands, as it does for the worker).
    return f"job {job_id}: its render had already ended ({settled.outcome.state}) -> {settled.new_state}"
