"""A job's life in a warm group, as the worker's loop sees it: handed, over, and how it ended.

The hand-over is recorded in the attempt row (group folder, job number, the group's process group) before the
job file is written, so a job is never lost between "handed" and "started": a later worker re-attaches to the
group if it lives, and requeues the job if the group died before the job's start event (warm.job_outcome).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flf2v_tui.worker import launch
from flf2v_tui.worker.groups import WarmGroups
from flf2v_tui.worker.running import Running
from flf2v_tui.worker.warm import Group, job_outcome
from storage import attempts as store
from storage.claim import Assignment


def prepare(
    groups: WarmGroups,
    r: Running,
    job: dict[str, Any],
    assignment: Assignment,
    warm: bool,
    port: int,
    cpu_threads: int,
    videos: Path,
) -> Group:
    """Pick the job's group (an idle one of its key, else a new one on its slots, after stopping the idle
    groups that hold them) and its number there; the job is handed once that is recorded (hand)."""
    group = groups.idle_for(job) if warm else None
    if group is None:
        groups.stop_for(assignment)
        group = groups.start(job, assignment, port, cpu_threads)
    group.attempt_id = r.attempt_id
    r.group, r.seq = group, group.next_seq
    r.tracker.waited_for_load = r.seq == 1
    r.tracker.load_dir = group.folder if r.seq == 1 else None
    group.next_seq += 1
    r.save_file = launch.output_path(job, videos, r.number)
    r.hand_pending = launch.engine_args(job, r.folder, r.save_file, assignment.device)
    r.pgid, r.pgid_started, r.popen, r.port, r.tag = group.pgid, group.pgid_started, None, group.port, group.tag
    r.launch_unrecorded = True
    # command.txt: the one-shot command that renders the same job, for a person who wants to run it by hand.
    plan = launch.Launch(
        argv=[*launch.torchrun_args(int(job["gpus"]), port), "-m", launch.ENGINE_MODULE, *r.hand_pending],
        env_delta=launch.environment(assignment, cpu_threads, r.tag, job_id=job["id"]),
        cwd=r.folder, save_file=r.save_file, port=port,
    )  # fmt: skip
    launch.write_command_as(plan, f"flf2v job {job['id']}, attempt {r.number}, job {r.seq} of {group.name}")
    return group


def hand(r: Running) -> None:
    """Write the job file, once its hand-over is recorded."""
    if r.group is not None and r.seq is not None and r.hand_pending is not None:
        r.group.hand(r.seq, r.attempt_id, r.hand_pending)
        r.hand_pending = None


def over(r: Running, now: float) -> bool:
    """The group wrote the job's end and stays up, or the group is gone, or (a job an earlier worker recorded as
    handed but died before handing) the group never got it. After a job that left it unhealthy, the group's
    exit is waited for (it says more: torchrun's report names a rank killed from outside), SIGTERM after the
    kill grace."""
    group, seq = r.group, r.seq
    if group is None or seq is None:
        return False
    if not group.alive():
        return True
    end = group.end_of(seq)
    if end is not None:
        if end.ok or end.healthy:
            return True
        r.group_asked_at = r.group_asked_at or now
        return False
    return r.hand_pending is None and group.adopted and not group.handed(seq)


def outcome(r: Running) -> tuple[store.Outcome, bool]:
    """How the job ended, and whether its group is still fit for the next job."""
    group, seq = r.group, r.seq
    assert group is not None and seq is not None
    alive = group.alive()
    if alive and group.adopted and not group.handed(seq) and group.end_of(seq) is None:
        lost = store.Outcome(
            "interrupted", failure_class="worker_lost", requeue_always=True,
            message="its worker stopped between recording the hand-over to a warm group and handing it; it runs again",
        )  # fmt: skip
        return lost, False
    result = job_outcome(
        group.folder, seq, r.tracker, r.folder, group_alive=alive, cancelled=r.cancelled, stalled=r.stalled,
        save_file=r.save_file, ranks=r.ranks,
    )  # fmt: skip
    end = group.end_of(seq)
    healthy = alive and end is not None and end.healthy and r.term_at is None
    return result, healthy
