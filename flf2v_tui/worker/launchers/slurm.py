"""The Slurm launcher: one sbatch per attempt, watched with squeue/sacct, cancelled with scancel.

The worker runs on a login node (or any machine with Slurm's client commands) and never on the compute
nodes; it reads events.jsonl and the rank logs from the attempt folder, which must therefore be on a file
system every node mounts. Its jobs are found again after a restart from the attempt rows (the Slurm job id,
or, when the worker died before recording it, the job name), so nothing is submitted twice.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import BadInputError
from flf2v_tui.shim import LOG_FILE
from flf2v_tui.worker import launch
from flf2v_tui.worker.classify import read_exit
from flf2v_tui.worker.launchers import LauncherRefused, LaunchingWorker, slurm_status
from flf2v_tui.worker.launchers.slurm_script import (
    SCRIPT_FILE,
    SHARED_TOKEN,
    SlurmOptions,
    batch_script,
    engine_command,
    job_name,
    rdzv_port,
)
from flf2v_tui.worker.launchers.slurm_status import (
    INFRASTRUCTURE,
    NOT_SHARED_EXIT,
    NOT_SHARED_FIX,
    SlurmCommandError,
    SlurmStatus,
)
from flf2v_tui.worker.pool import Pool
from flf2v_tui.worker.running import Running
from storage import slurm_attempts
from storage.attempts import Outcome
from storage.claim import Assignment

_NODE_OF_RANK = re.compile(r"rank (\d+) of \d+ on node (\S+)")


class SlurmPool(Pool):
    """Slots for Slurm jobs this worker keeps submitted at once: one per job, whatever its nodes and GPUs
    (Slurm itself decides when and where they run)."""

    def fit(self, ranks: int) -> Assignment | str:
        free = self.free()
        if free:
            return Assignment(self.device, (free[0],))
        return f"waiting: this worker already has {len(self.slots)} Slurm jobs submitted (--cpu-slots / max jobs)"

    def refresh(self) -> None:
        return None  # no local GPUs to look at


def slurm_pool(options: SlurmOptions) -> SlurmPool:
    slots = [f"slurm{i}" for i in range(options.max_jobs)]
    return SlurmPool(options.device, slots, note=f"Slurm ({options.device} nodes, up to {options.max_jobs} jobs)")


# Slurm commands failing this many polls in a row about one job are said on the worker's output; the worker
# keeps asking at its poll rate (a controller restart is routine on a cluster).
SILENT_POLLS = 10


@dataclass
class _Watched:
    job_id: str  # "" until found by its name (a restarted worker that could not ask Slurm at once)
    name: str = ""
    failing_since: float | None = None  # when Slurm's commands began failing about it, in a row
    polled: float = 0.0
    status: SlurmStatus | None = None
    missing: int = 0  # polls in a row that found the job nowhere
    said: str = ""


class SlurmLauncher:
    name = "slurm"
    max_nodes = 1 << 16
    warm_groups = False  # one sbatch per attempt: --keep-warm does not apply on Slurm

    def __init__(self, options: SlurmOptions, env: dict[str, str] | None = None) -> None:
        self.options, self.env, self.poll_s = options, env, options.poll_s
        self.jobs: dict[int, _Watched] = {}

    # ---- start -------------------------------------------------------------------------------------------
    def start(self, worker: LaunchingWorker, r: Running, plan: launch.Launch, job: dict[str, Any]) -> None:
        home_root = str(worker.home.root)
        name = job_name(home_root, r.attempt_id)
        (r.folder / SHARED_TOKEN).write_text(f"{name}\n")
        script = batch_script(
            job_id=r.job_id, number=r.number, attempt_id=r.attempt_id, name=name, folder=r.folder,
            nodes=int(job.get("nodes") or 1), ranks_per_node=int(job["gpus"]), torchrun=launch.torchrun_prefix(),
            engine=engine_command(plan.argv), env=plan.env_delta, options=self.options,
        )  # fmt: skip
        path = r.folder / SCRIPT_FILE
        path.write_text(script)
        (r.folder / "command.txt").write_text(f"# flf2v job {r.job_id}, attempt {r.number}\nsbatch {path}\n")
        if not worker.storage.write(lambda: slurm_attempts.mark_slurm(worker.conn, r.attempt_id)):
            raise RuntimeError("could not record the attempt as a Slurm one before submitting it")
        slurm_job = self._submit(worker, r, path, name)
        self.jobs[r.attempt_id] = _Watched(slurm_job, name)
        r.port = rdzv_port(slurm_job)
        save_file = plan.save_file
        # Not recorded now: the job name finds it again (reconcile), so a failed write submits nothing twice.
        worker.storage.write(lambda: slurm_attempts.set_submitted(worker.conn, r.attempt_id, slurm_job, save_file))

    def _submit(self, worker: LaunchingWorker, r: Running, script: Path, name: str) -> str:
        """sbatch the script, once. When sbatch fails or does not answer, the job may still have been queued (a
        slow controller): it is looked up by its name and adopted, so that a retry never submits it twice."""
        try:
            done = slurm_status.run(["sbatch", "--parsable", str(script)], self.env)
        except SlurmCommandError as exc:
            done, trouble = None, str(exc)
        else:
            if done.returncode == 0 and done.stdout.strip():
                return done.stdout.strip().split(";")[0]
            trouble = done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}"
        found = _find(name, self.env)
        if found:
            worker.say(f"job {r.job_id}: sbatch said {trouble!r}, but Slurm job {found} ({name}) is queued: watched")
            return found
        if done is not None and done.returncode != 0:
            raise LauncherRefused(
                f"sbatch refused the job: {trouble}: fix the worker's Slurm settings (--partition, --account, "
                "--time, --sbatch-arg, FLF2V_SLURM_*, worker.toml) and start the worker again"
            )
        raise RuntimeError(f"{trouble}, and no Slurm job named {name} is queued: it was not submitted")

    def where(self, r: Running) -> str:
        watched = self.jobs.get(r.attempt_id)
        return f"as Slurm job {watched.job_id if watched else '?'}, rendezvous port {r.port}"

    # ---- stop --------------------------------------------------------------------------------------------
    def stop(self, r: Running) -> None:
        self._scancel(r, kill=False)

    def kill(self, r: Running) -> int:
        self._scancel(r, kill=True)
        return 1

    def _scancel(self, r: Running, kill: bool) -> None:
        watched = self.jobs.get(r.attempt_id)
        if watched is not None and not watched.job_id:
            watched.job_id = _find(watched.name, self.env) or ""
        if watched is None or not watched.job_id:
            return  # not found yet: the cancel is sent again after the grace period (kill)
        # A failed scancel is tried again after the grace period (kill), and the job's end is watched either way.
        with contextlib.suppress(SlurmCommandError):
            slurm_status.cancel(watched.job_id, self.env, kill=kill)

    # ---- watch -------------------------------------------------------------------------------------------
    def ended(self, worker: LaunchingWorker, r: Running) -> bool:
        watched = self.jobs.get(r.attempt_id)
        if watched is None:
            return True  # nothing was submitted
        now = time.monotonic()
        if now - watched.polled < self.poll_s:
            return False
        watched.polled = now
        try:
            if not watched.job_id:
                found = slurm_status.find_by_name(watched.name, self.env)
                if found is None:  # no job by its name: it was never submitted
                    del self.jobs[r.attempt_id]
                    return True
                watched.job_id = found
            status = slurm_status.status(watched.job_id, self.env)
        except SlurmCommandError as exc:
            watched.failing_since = watched.failing_since or now
            if now - watched.failing_since >= SILENT_POLLS * self.poll_s:
                took = now - watched.failing_since
                self._say_once(worker, r, watched, f"Slurm has not answered about job {watched.job_id or watched.name} "
                               f"for {took:.0f} s ({exc}); still asking every {self.poll_s:g} s")  # fmt: skip
            return False
        watched.failing_since = None
        if status is None:
            watched.missing += 1
            return watched.missing >= 2  # gone from squeue and from accounting: nothing runs
        watched.missing = 0
        if status.state == "PENDING" or (watched.status is not None and watched.status.state == "PENDING"):
            r.tracker.progress_at = time.time()  # the stall timer counts from the start, not from the queue
        changed = watched.status is None or (watched.status.state, watched.status.reason, watched.status.nodes) != (
            status.state, status.reason, status.nodes
        )  # fmt: skip
        watched.status = status
        if changed:
            worker.storage.write(
                lambda: slurm_attempts.set_status(
                    worker.conn,
                    r.attempt_id,
                    watched.job_id,
                    status.state,
                    status.reason or None,
                    status.nodes or None,
                    status.elapsed or None,
                    status.max_rss or None,
                )
            )
            why = f" ({status.reason})" if status.reason and status.state == "PENDING" else ""
            on = f" on {status.nodes}" if status.nodes and status.state != "PENDING" else ""
            self._say_once(worker, r, watched, f"Slurm job {watched.job_id} {status.state}{why}{on}")
        return status.ended

    def _say_once(self, worker: LaunchingWorker, r: Running, watched: _Watched, text: str) -> None:
        if text != watched.said:
            watched.said = text
            worker.say(f"job {r.job_id}: {text}")

    # ---- classify ----------------------------------------------------------------------------------------
    def outcome(self, r: Running) -> Outcome:
        watched = self.jobs.get(r.attempt_id)
        status = watched.status if watched else None
        returncode = read_exit(r.folder)
        base = r.outcome(returncode)
        if base.state in ("succeeded", "cancelled") or r.stalled:
            return base
        if watched is None:
            return Outcome("interrupted", failure_class="worker_lost", message="it was never submitted to Slurm")
        outcome = slurm_outcome(watched.job_id, status, returncode, r.folder)
        if outcome is not None and status is not None and status.state == "NODE_FAIL":
            lost = slurm_status.lost_nodes(status.nodes, self.env)
            outcome.message += f"; lost: {lost}" if lost else ""
        if outcome is None:
            outcome = base
        if outcome.failing_rank is not None:
            node = node_of_rank(r.folder, outcome.failing_rank)
            if node and f"node {node}" not in outcome.message:
                outcome.message = f"rank {outcome.failing_rank} on node {node}: {outcome.message}"[:1000]
        return outcome

    def adopted(self, worker: LaunchingWorker, r: Running, attempt: dict[str, Any]) -> None:
        # An unrecorded job id is looked up by the job's name on the first poll (which Slurm may fail).
        name = job_name(str(worker.home.root), r.attempt_id)
        self.jobs[r.attempt_id] = _Watched(str(attempt.get("slurm_job") or ""), name)
        r.port = rdzv_port(str(attempt.get("slurm_job") or "")) or r.port


def _find(name: str, env: dict[str, str] | None) -> str | None:
    with contextlib.suppress(SlurmCommandError):
        return slurm_status.find_by_name(name, env)
    return None


class UnwatchedJob:
    """For `flf2v cancel` with no worker: the Slurm job of a running attempt row, found by its recorded id or
    else by its job name, and asked about at most once per poll_s. A job Slurm cannot be asked about counts as
    alive: a cancel must never record as ended a render that may still run."""

    def __init__(self, attempt: dict[str, Any], home_root: str, env: dict[str, str] | None = None) -> None:
        self.attempt, self.home_root, self.env = attempt, home_root, env
        self.poll_s = _poll_s(home_root)
        self.job_id = str(attempt.get("slurm_job") or "")
        self._asked, self._alive = -math.inf, True

    def _job(self) -> str:
        """The Slurm job id, or "" when no job carries the attempt's name (raises SlurmCommandError)."""
        if not self.job_id:
            self.job_id = slurm_status.find_by_name(job_name(self.home_root, self.attempt["id"]), self.env) or ""
        return self.job_id

    def alive(self) -> bool:
        now = time.monotonic()
        if now - self._asked < self.poll_s:
            return self._alive
        self._asked = now
        try:
            job = self._job()
            status = slurm_status.status(job, self.env) if job else None
        except SlurmCommandError:
            self._alive = True
        else:
            self._alive = status is not None and not status.ended
        return self._alive

    def cancel(self, kill: bool = False) -> str:
        """scancel it; what happened, for the user."""
        try:
            job = self._job()
            if not job:
                return f"no Slurm job named {job_name(self.home_root, self.attempt['id'])}: nothing of it runs"
            slurm_status.cancel(job, self.env, kill=kill)
        except SlurmCommandError as exc:
            return f"could not scancel its Slurm job {self.job_id or '(id unknown)'}: {exc}"
        return f"{'SIGKILL to' if kill else 'scancel of'} its Slurm job {job}"


def _poll_s(home_root: str) -> float:
    from flf2v_tui.worker.launchers.settings import resolve

    try:
        return resolve(Path(home_root), backend="slurm").slurm.poll_s
    except BadInputError:
        return SlurmOptions.poll_s


def slurm_outcome(job_id: str, status: SlurmStatus | None, returncode: int | None, folder: Path) -> Outcome | None:
    """What Slurm's end of the job says beyond the render's own files, or None when those tell it all."""
    state = status.state if status else ""
    where = f" on {status.nodes}" if status and status.nodes else ""
    if state in INFRASTRUCTURE:
        return Outcome(
            "interrupted", failure_class="worker_lost",
            message=f"Slurm job {job_id} ended {state}{where}: the cluster's failure, not the job's",
        )  # fmt: skip
    if state == "OUT_OF_MEMORY":
        return Outcome("failed", failure_class="oom", message=f"Slurm job {job_id} ran out of memory{where}")
    if state in ("TIMEOUT", "DEADLINE"):
        took = f" after {status.elapsed}" if status and status.elapsed else ""
        return Outcome(
            "failed", failure_class="timeout",
            message=f"Slurm job {job_id} reached its time limit{took}: raise the worker's --time",
        )  # fmt: skip
    code = returncode if returncode is not None else (status.exit_code if status else None)
    # A job that FAILED on nodes it was given, with no torchrun.log: sbatch could not write into the folder there.
    # One that never ran (cancelled or held while pending) has no log either, and is not the folder's fault.
    unwritable = returncode is None and state == "FAILED" and bool(where) and not (folder / LOG_FILE).exists()
    if code == NOT_SHARED_EXIT or unwritable:
        return Outcome(
            "failed", exit_code=code, failure_class="user_input",
            message=f"a node of Slurm job {job_id} cannot see {folder}: {NOT_SHARED_FIX}",
        )  # fmt: skip
    if returncode is None and status is not None and state:
        # The batch script never recorded srun's status: Slurm ended it from outside.
        return Outcome("failed", exit_code=status.exit_code, failure_class="killed",
                       message=f"Slurm job {job_id} ended {state}{where} before the render could finish")  # fmt: skip
    return None


def node_of_rank(folder: Path, rank: int) -> str | None:
    """The node a rank ran on, from the line every rank's log starts with."""
    try:
        with open(folder / f"rank{rank}.log", encoding="utf-8", errors="replace") as fh:
            head = fh.read(16384)
    except OSError:
        return None
    for found in _NODE_OF_RANK.finditer(head):
        if int(found.group(1)) == rank:
            return found.group(2)
    return None
