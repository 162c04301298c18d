"""`flf2v worker`: claims jobs that fit its slots, launches torchrun, supervises, and records the end.

One loop, one thread, one DB connection. Each tick: read new events of every running attempt (progress goes to
the DB at most PROGRESS_INTERVAL_S apart per job), act on cancel requests and stalls, finish attempts whose
shim has exited, then claim new work if there is room and the queue is not paused. A storage error (a full
disk, a lock held too long) never ends the loop: see outage.py.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from flf2v_tui.worker import launch, warm_jobs
from flf2v_tui.worker.groups import WarmGroups
from flf2v_tui.worker.handoff import left_behind, shut_down, work_left
from flf2v_tui.worker.hooks import Hooks, hook_env
from flf2v_tui.worker.launchers import Launcher, LauncherRefused
from flf2v_tui.worker.launchers.local import LocalLauncher
from flf2v_tui.worker.outage import StorageGuard, fault_of
from flf2v_tui.worker.pool import Pool
from flf2v_tui.worker.procs import attempt_tag, kill_all
from flf2v_tui.worker.reconcile import reconcile
from flf2v_tui.worker.running import Running, WorkerConfig
from flf2v_tui.worker.settle import Settled, remove_partials, settle
from flf2v_tui.worker.tracker import Tracker
from storage import attempts as store
from storage import workers
from storage.claim import Assignment, claim_next
from storage.jobs import get_job
from storage.paths import Home
from storage.states import FINISHED

PROGRESS_INTERVAL_S = 0.5
HEARTBEAT_S = workers.HEARTBEAT_S
RECONCILE_EVERY_S = 30.0
LAUNCH_RETRY_S = 30.0  # after a launch failed for want of storage, before the next claim


class Worker:
    def __init__(
        self,
        home: Home,
        conn: sqlite3.Connection,
        pool: Pool,
        config: WorkerConfig,
        say: Callable[[str], None],
        launcher: Launcher | None = None,
    ) -> None:
        self.home, self.conn, self.pool, self.config, self._say = home, conn, pool, config, say
        self.launcher: Launcher = launcher or LocalLauncher()  # starts, watches, stops and classifies attempts
        self.me = workers.WorkerIdentity.current()
        self.running: dict[int, Running] = {}
        self.hooks = Hooks(config.on_finish)
        self.stop_requested = False
        self.worker_id = 0  # 0 until registered
        self.reconciled = False  # no claim before the renders of earlier workers are re-attached
        self._last_version = -1
        self._next_claim = 0.0
        self._claim_after = 0.0
        self.tick_at = 0.0
        self.unsaid = 0  # lines of output that could not be written
        self.storage = StorageGuard(conn, home.db, self.say)
        # Warm groups are the local launcher's: a Slurm attempt is one sbatch job that loads the models itself.
        keep_warm_s = config.keep_warm_s if self.launcher.warm_groups else 0.0
        self.groups = WarmGroups(home.root, pool, keep_warm_s, config.kill_grace_s, self.me, self.say)

    # ---- lifecycle ---------------------------------------------------------------------------------------
    def run(self) -> int:
        self._install_signals()
        self.say(f"worker {self.me.pid} on {self.me.host}: {self.pool.note} [{', '.join(self.pool.slots)}]")
        last_beat = last_reconcile = time.monotonic()
        try:
            while True:
                self.start_up()
                # Writes inside a tick are guarded one by one; this catches what a read or a write outside
                # them raised, so that a tick cut short is tried again rather than the renders abandoned.
                self.storage.run(self.tick)
                if self.stop_requested and not self._stopping_jobs():
                    break
                if self.config.once and self._nothing_left():
                    self.storage.run(lambda: left_behind(self))
                    break
                now = time.monotonic()
                if self.worker_id and now - last_beat >= HEARTBEAT_S:
                    self.pool.refresh()
                    self.storage.write(lambda: workers.heartbeat(self.conn, self.worker_id, self.pool.describe()))
                    last_beat = now
                if self.reconciled and now - last_reconcile >= RECONCILE_EVERY_S:
                    self.storage.run(lambda: reconcile(self, quiet=True))
                    last_reconcile = now
                time.sleep(self.config.poll_s)
        finally:
            self.groups.shut_down()
            shut_down(self)
        return 0

    def start_up(self) -> None:
        """Register, then reconcile: writes that storage may fail (a lock held at start, a full disk), tried
        again after the guard's back-off until both are done."""
        if self.reconciled:
            return
        if not self.worker_id:
            ids: list[int] = []
            if not self.storage.write(lambda: ids.append(workers.register(self.conn, self.me, self.pool.describe()))):
                return
            self.worker_id = ids[0]
        self.reconciled = self.storage.write(lambda: reconcile(self))
        if self.reconciled:
            self.groups.stop_orphans({str(r.group.folder) for r in self.running.values() if r.group is not None})

    def _nothing_left(self) -> bool:
        """--once ends when nothing runs and nothing waits for this worker; never while storage fails (a claim
        it could not make is work left, not none) or before it has started up."""
        if self.running or not self.reconciled or self.storage.failing:
            return False
        found: list[bool] = []
        return self.storage.run(lambda: found.append(work_left(self))) and not found[0]

    def _install_signals(self) -> None:
        def on_signal(signum: int, _frame: object) -> None:
            if self.stop_requested:  # a second Ctrl-C: stop waiting for anything
                raise KeyboardInterrupt
            self.stop_requested = True
            if self.config.stop_jobs:
                for r in self.running.values():
                    r.stopping = True
                    self._terminate(r, time.time())

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, on_signal)

    def _stopping_jobs(self) -> bool:
        """With --stop-jobs the worker waits for its renders to end; otherwise it leaves them running."""
        return self.config.stop_jobs and bool(self.running)

    def say(self, text: str) -> None:
        """Never raises: a line that cannot be written (stdout on a full disk, a pipe nobody reads) is dropped
        and counted. The worker's output is a courtesy; its renders and records are what must go on."""
        try:
            self._say(f"[{time.strftime('%H:%M:%S')}] {text}")
        except OSError:
            self.unsaid += 1

    # ---- one tick ----------------------------------------------------------------------------------------
    def tick(self) -> None:
        now = self.tick_at = time.time()
        self.hooks.reap()
        cancels: set[int] = set()  # unread (a damaged database) is no reason to stop watching the renders
        self.storage.run(
            lambda: cancels.update(store.cancel_requests(self.conn, [r.job_id for r in self.running.values()]))
        )
        grace = self.config.kill_grace_s
        for r in list(self.running.values()):
            if r.job_id in cancels and not r.cancelled and r.ended is None:
                r.cancelled = True
                if r.group is not None and r.seq is not None and r.hand_pending is None:
                    self.say(f"job {r.job_id}: cancelling at the next step; its warm group stays loaded "
                             f"(SIGTERM to the group after {grace:g} s if it does not stop)")  # fmt: skip
                    r.group.cancel(r.seq)
                    r.group_asked_at = now
                else:
                    self.say(f"job {r.job_id}: cancelling (SIGTERM, then SIGKILL after {grace:g} s)")
                    self._terminate(r, now)
            self.supervise(r, now)
        self.groups.tick(now)
        if self.reconciled and not self.stop_requested and not self.storage.failing and now >= self._claim_after:
            self._claim_all(now)

    def _terminate(self, r: Running, now: float) -> None:
        if r.term_at is None:
            r.term_at = now
            self.launcher.stop(r)

    def supervise(self, r: Running, now: float) -> None:
        if r.ended is not None or self._ended(r):
            self._finish(r)
            return
        if r.launch_unrecorded:
            self.record_launch(r)
        if r.tracker.poll(now):
            r.dirty = True
        if now - r.last_write >= PROGRESS_INTERVAL_S:
            r.dirty |= r.tracker.log_activity(now)
            if r.dirty:
                if self.storage.write(lambda: store.write_progress(self.conn, r.attempt_id, r.tracker.progress())):
                    r.dirty = False
                r.last_write = now
                self._report(r)
        stall = self.config.stall_timeout_s
        idle = now - (r.tracker.progress_at or r.launched)
        if stall and r.term_at is None and idle > stall:
            r.stalled = f"stalled: no progress for {idle / 60:.1f} min (--stall-timeout), stopped"
            self.say(f"job {r.job_id}: {r.stalled}")
            self._terminate(r, now)
        if r.group_asked_at is not None and r.term_at is None and now - r.group_asked_at > self.config.kill_grace_s:
            self.say(f"job {r.job_id}: its warm group did not end it in time; SIGTERM to the group")
            self._terminate(r, now)
        if r.term_at is not None and not r.killed and now - r.term_at > self.config.kill_grace_s:
            r.killed = True
            count = self.launcher.kill(r)
            self.say(f"job {r.job_id}: grace period over, SIGKILL sent to {count} process(es)")

    def _ended(self, r: Running) -> bool:
        if r.group is not None:
            return warm_jobs.over(r, time.time())
        return self.launcher.ended(self, r)

    def _finish(self, r: Running) -> None:
        if r.ended is None:
            r.tracker.poll(time.time())
            if r.group is not None:
                outcome, healthy = warm_jobs.outcome(r)
                self.groups.job_ended(r.group, healthy, time.time())
            else:
                outcome = self.launcher.outcome(r)
            if r.stopping and outcome.state not in ("succeeded",):
                outcome.state, outcome.failure_class, outcome.requeue_always = "interrupted", "worker_lost", True
                outcome.message = "the worker was stopped with --stop-jobs"
            if r.group is None:
                kill_all(None, r.tag)  # nothing of the render may outlive it (a group is stopped as a whole)
            for partial in remove_partials(r.save_file):
                self.say(f"job {r.job_id}: removed {partial.name}, the unfinished video of a writer that was killed")
            r.ended = outcome  # kept: a failed record is written later as it was classified now
        ended, found = r.ended, list[Settled]()
        if not self.storage.write(lambda: found.append(settle(self.conn, r.job_id, r.attempt_id, ended, r.tracker))):
            return  # storage failed: this render stays watched, and its end is recorded when it can be
        settled = found[0]
        new_state, outcome = settled.new_state, settled.outcome
        self.pool.release(r.attempt_id)
        del self.running[r.attempt_id]
        self._next_claim = 0.0
        job = get_job(self.conn, r.job_id) or {"id": r.job_id, "state": new_state}
        took = time.time() - r.launched
        detail = job.get("output_path") if new_state == "succeeded" else job.get("state_reason")
        self.say(f"job {r.job_id} attempt {r.number} {outcome.state} after {took:.1f} s -> {new_state}: {detail}")
        if settled.video is not None:
            vid = settled.video["id"]
            self.say(f"job {r.job_id}: catalogued as video {vid} (flf2v videos show {vid})")
        if settled.problem:
            self.say(f"job {r.job_id}: {settled.problem}")
        if new_state in FINISHED:
            attempt = {"number": r.number, "log_dir": str(r.folder), "started_at": r.launched}
            error = self.hooks.fire(hook_env(job, attempt, self.home.root), r.folder / "hook.log")
            if error:
                self.say(error)

    def _report(self, r: Running) -> None:
        if self.config.quiet:
            return
        t = r.tracker
        text = t.stage or "starting"
        if t.step and t.steps_total and t.stage == "denoise":
            text += f" {t.step}/{t.steps_total}"
        if text != r.last_said:
            r.last_said = text
            self.say(f"job {r.job_id}: {text}")

    # ---- claiming ----------------------------------------------------------------------------------------
    def _db_changed(self) -> bool:
        version = self.conn.execute("PRAGMA data_version").fetchone()[0]
        changed = version != self._last_version
        self._last_version = version
        return changed

    def _claim_all(self, now: float) -> None:
        # A claim takes the write lock, so it is tried only when another connection wrote something, a slot
        # came free, or every few seconds (retry back-offs and GPU availability change with time).
        if not self._db_changed() and now < self._next_claim:
            return
        self._next_claim = now + 2.0
        self.pool.refresh()  # GPUs other programs took since the last look are not handed out
        warm = self.groups.enabled
        # a launch that failed may say: not now
        while (self.pool.free() or (warm and self.pool.warm)) and time.time() >= self._claim_after:
            claimed = claim_next(
                self.conn,
                self.me,
                self.groups.fit if warm else self.pool.fit,
                lambda job_id, number: str(self.home.attempt_dir(job_id, number)),
                only_jobs=self.config.only_jobs,
                reserve_after_s=self.config.reserve_after_s,
                warm_fit=self.groups.warm_fit if warm else None,
                max_nodes=self.launcher.max_nodes,
            )
            if claimed is None:
                return
            self._launch(claimed.job, claimed.attempt_id, claimed.number, claimed.assignment, claimed.warm)

    def _launch(
        self, job: dict[str, Any], attempt_id: int, number: int, assignment: Assignment, warm: bool = False
    ) -> None:
        folder = self.home.attempt_dir(job["id"], number)
        tag = attempt_tag(str(self.home.root), attempt_id)
        self.pool.take(assignment, attempt_id)
        r = Running(attempt_id, job["id"], number, folder, tag, assignment, Tracker(folder / "events.jsonl", folder))
        r.ranks = int(job["gpus"]) * int(job.get("nodes") or 1)
        self.running[attempt_id] = r
        taken = {x.port for x in self.running.values() if x.port}
        if self.groups.enabled:
            self._hand(r, job, assignment, warm, taken)
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
            plan = launch.build(
                job, attempt_id, number, folder, assignment, launch.free_port(taken), self.home.videos, tag,
                self._cpu_threads(job),
            )  # fmt: skip
            launch.write_command(plan, job["id"], number)
            r.port = plan.port
            self.launcher.start(self, r, plan, job)
        except (OSError, RuntimeError) as exc:
            self._not_launched(r, exc)
            return
        # A process group must be recorded for a later worker to re-attach; a Slurm job is, by start() itself.
        r.save_file, r.launch_unrecorded = plan.save_file, r.pgid is not None
        self.record_launch(r)
        nodes = int(job.get("nodes") or 1)
        ranks = f"{nodes} node(s) x {job['gpus']} rank(s)" if nodes > 1 else f"{job['gpus']} rank(s)"
        self.say(f"job {job['id']} attempt {number} started: {ranks} {self.launcher.where(r)}, logs {folder}")

    def _hand(self, r: Running, job: dict[str, Any], assignment: Assignment, warm: bool, taken: set[int]) -> None:
        try:
            r.folder.mkdir(parents=True, exist_ok=True)
            port = launch.free_port(taken)
            group = warm_jobs.prepare(
                self.groups, r, job, assignment, warm, port, self._cpu_threads(job), self.home.videos
            )
        except (OSError, RuntimeError) as exc:
            if r.group is not None:  # started but never handed the job: it stays warm for the next one
                self.groups.job_ended(r.group, True, time.time())
                r.group = None
            self._not_launched(r, exc)
            return
        self.record_launch(r)
        how = "warm" if warm else "cold: loading the engine"
        self.say(f"job {job['id']} attempt {r.number} handed to {group.name} as its job {r.seq} ({how}), "
                 f"logs {r.folder}")  # fmt: skip

    def record_launch(self, r: Running, last: bool = False) -> None:
        """The pgid lets a later worker re-attach; until it is written, each tick tries again (and, `last`,
        the worker on its way out, once whatever the back-off)."""
        pgid, started = r.pgid, r.pgid_started
        if pgid is None or started is None:
            return

        group_dir = str(r.group.folder) if r.group is not None else None

        def record() -> None:
            store.set_launched(self.conn, r.attempt_id, pgid, started, r.port, r.save_file or "", group_dir, r.seq)

        if last:
            what, anyway = f"that job {r.job_id}'s render started", "so the next flf2v worker cannot re-attach it"
            r.launch_unrecorded = not self.storage.last_write(record, what, anyway)
        else:
            r.launch_unrecorded = not self.storage.write(record)
        if not r.launch_unrecorded:
            warm_jobs.hand(r)  # a warm group's job is handed only once the hand-over is recorded

    def adopt(self, attempt: dict[str, Any]) -> None:
        """Supervise a live attempt started by an earlier worker (reconcile re-attached it)."""
        r = Running.adopted(attempt, attempt_tag(str(self.home.root), attempt["id"]))
        if attempt.get("group_dir"):
            r.group, r.seq = self.groups.adopt(attempt), attempt["group_seq"]
            r.tracker.waited_for_load = r.seq == 1
            r.tracker.load_dir = r.group.folder if r.seq == 1 else None
            r.tag = r.group.tag
        r.tracker.poll(time.time())
        if r.tracker.progress_at is None:
            r.tracker.progress_at = time.time()
        self.running[r.attempt_id] = r
        self.launcher.adopted(self, r, attempt)
        slots = tuple(s for s in r.assignment.slots if s in self.pool.slots)
        self.pool.take(Assignment(r.assignment.device, slots), r.attempt_id)

    def _not_launched(self, r: Running, exc: Exception) -> None:
        """The attempt ends at once, recorded like any other end (and retried if storage fails that too)."""
        fault = fault_of(exc, r.folder)
        with contextlib.suppress(OSError):
            (r.folder / "torchrun.log").write_text(f"flf2v worker: could not launch: {exc}\n")
        self.say(f"job {r.job_id}: could not launch ({fault.summary() if fault else exc})")
        if isinstance(exc, LauncherRefused):
            # The worker's settings, not the job: it goes back to the queue, spending no retry, and this worker
            # claims nothing more (each claim would be refused the same way) until it is restarted, fixed.
            r.ended = store.Outcome("interrupted", message=f"not submitted: {exc}", requeue_always=True)
            self._claim_after = math.inf
            self.say("this worker claims no more jobs until its settings are fixed and it is started again")
            return
        if fault is None:
            r.ended = store.Outcome("failed", failure_class="worker_lost", message=str(exc))
            return
        # Not the job's fault: it goes back to the queue, and claims wait a while for the disk.
        message = f"could not launch: {fault.summary()}"
        r.ended = store.Outcome("interrupted", failure_class="worker_lost", message=message, requeue_always=True)
        self._claim_after = time.time() + LAUNCH_RETRY_S

    def _cpu_threads(self, job: dict[str, Any]) -> int:
        if self.pool.device != "cpu":
            return 1
        cores = os.cpu_count() or 1
        return max(1, cores // (len(self.pool.slots) * int(job["gpus"])))
