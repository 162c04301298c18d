"""The worker's warm groups (`flf2v worker --keep-warm MIN`): which are loaded for which engine key, which GPUs
they hold, and when they stop.

A group runs one job at a time. Between jobs it is idle: it holds its slots (shown as held by the GPU pool)
and takes the next queued job of its key. It stops when idle past --keep-warm, when its slots are wanted by a
job it cannot run (stop_for), when a job leaves it unhealthy, when the worker stops, or when it dies.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flf2v_tui.worker.engine_key import could_match, describe, job_key
from flf2v_tui.worker.pool import Pool
from flf2v_tui.worker.procs import leader_alive
from flf2v_tui.worker.warm import Group, group_tag, groups_root, start_group
from storage.claim import Assignment
from storage.workers import WorkerIdentity, process_alive


class WarmGroups:
    def __init__(
        self, root: Path, pool: Pool, keep_warm_s: float, grace_s: float, me: WorkerIdentity, say: Callable[[str], None]
    ) -> None:
        self.root, self.pool, self.keep_warm_s, self.grace_s, self.me, self.say = (
            groups_root(root), pool, keep_warm_s, grace_s, me, say,
        )  # fmt: skip
        self.groups: dict[str, Group] = {}
        self._count = 0

    @property
    def enabled(self) -> bool:
        return self.keep_warm_s > 0

    # ---- scheduling --------------------------------------------------------------------------------------
    def idle_for(self, job: dict[str, Any]) -> Group | None:
        """An idle group loaded for this job's key, alive and not adopted from an earlier worker."""
        candidates = [g for g in self.groups.values() if g.idle() and not g.adopted and could_match(job, g.key)]
        if not candidates:
            return None
        key = job_key(job, candidates[0].assignment.device)
        return next((g for g in candidates if g.key == key and g.alive()), None)

    def warm_fit(self, job: dict[str, Any]) -> Assignment | None:
        group = self.idle_for(job)
        return group.assignment if group is not None else None

    def fit(self, ranks: int) -> Assignment | str:
        """The pool's answer, counting the slots of idle groups as free (stop_for frees them)."""
        return self.pool.fit(ranks, reclaim=True)

    def stop_for(self, assignment: Assignment) -> None:
        """Stop the idle groups that hold any of these slots, and wait until they are gone."""
        for group in list(self.groups.values()):
            if group.attempt_id is None and set(group.assignment.slots) & set(assignment.slots):
                self.say(f"{group.name}: stopping, its slots are wanted by a job of another key")
                group.stop_now(self.grace_s)
                self._forget(group)

    # ---- a job's group -------------------------------------------------------------------------------------
    def start(self, job: dict[str, Any], assignment: Assignment, port: int, cpu_threads: int) -> Group:
        self._count += 1
        gid = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{self._count}"
        key = job_key(job, assignment.device)
        group = start_group(self.root / gid, job, key, assignment, port, cpu_threads, self.keep_warm_s)
        self.groups[gid] = group
        try:
            group.record(self.me)
        except OSError as exc:  # a later worker cannot stop it by its record; its idle exit still does
            self.say(f"{group.name}: could not write its record ({exc}); it stops by itself when idle")
        self.say(f"{group.name} starting on [{','.join(assignment.slots)}], port {port}")
        return group

    def adopt(self, attempt: dict[str, Any]) -> Group:
        """The group of a running attempt that an earlier worker handed it (reconcile re-attached the job):
        watched until the job ends, then stopped."""
        folder = Path(attempt["group_dir"])
        group = next((g for g in self.groups.values() if g.folder == folder), None)
        if group is None:
            found = Group.recorded(folder)
            if found is not None:
                group = found[0]
            else:  # no readable record: what the attempt row says is enough to watch and stop it
                slots = tuple(s for s in str(attempt["gpus"]).split(",") if s)
                group = Group(
                    folder.name, folder, {}, Assignment(attempt["device"], slots), group_tag(folder),
                    attempt["master_port"], attempt["pgid"], attempt["pgid_started"], adopted=True,
                )  # fmt: skip
            self.groups[group.gid] = group
        group.attempt_id = attempt["id"]
        return group

    def job_ended(self, group: Group, healthy: bool, now: float) -> None:
        """The group's job is over: it stays warm if healthy, else it is stopped (it exits by itself)."""
        group.attempt_id = None
        group.idle_since = now
        if healthy and group.alive() and not group.adopted and self.enabled:
            self.pool.hold_warm(group.assignment.slots, group.gid, f"idle warm group ({describe(group.key)})")
            return
        if group.alive():
            why = "an earlier worker's" if group.adopted else "left unhealthy by its job"
            self.say(f"{group.name}: stopping ({why})")
        group.stop(now)

    # ---- every tick --------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        for group in list(self.groups.values()):
            if group.stop_at is None and group.attempt_id is None and not group.alive():
                group.stop(now)  # died idle: nothing to stop, but its leftovers are killed below
            if group.stop_at is None and group.attempt_id is None and now - group.idle_since > self.keep_warm_s:
                self.say(f"{group.name}: idle for {self.keep_warm_s / 60:g} min (--keep-warm), stopping")
                group.stop(now)
            if group.stop_at is not None and group.stop_step(now, self.grace_s):
                self._forget(group)

    def shut_down(self) -> None:
        """The worker is stopping: idle groups are stopped (the stop file; they exit within a poll) and waited
        for; a group running a job is left to the next worker, which re-attaches the job, then stops it."""
        idle = [g for g in self.groups.values() if g.attempt_id is None and g.alive()]
        for group in idle:
            group.stop(time.time())
        while idle:
            idle = [g for g in idle if not g.stop_step(time.time(), self.grace_s)]
            time.sleep(0.05)
        for group in self.groups.values():
            if group.stop_at is not None:
                self.say(f"{group.name}: stopped (the worker is stopping)")

    def stop_orphans(self, in_use: set[str]) -> None:
        """Idle groups of earlier workers that are gone (no running attempt names them): stop them cleanly."""
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            if str(folder) in in_use or any(g.folder == folder for g in self.groups.values()):
                continue
            found = Group.recorded(folder)
            if found is None:
                continue
            group, owner = found
            if not leader_alive(group.pgid, group.pgid_started):
                continue
            owner_alive = process_alive(
                str(owner.get("host")), int(owner.get("pid") or 0), float(owner.get("started") or 0)
            )
            if owner_alive is not False:
                continue  # another worker's, alive (or on another host)
            self.groups[group.gid] = group
            group.stop(time.time())
            self.say(f"{group.name}: an earlier worker's idle group, stopped")

    def _forget(self, group: Group) -> None:
        self.pool.release_warm(group.gid)
        self.groups.pop(group.gid, None)
