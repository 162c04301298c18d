"""One warm group: a torchrun group of `engine.serve` that loads once and renders the jobs handed to it.

The worker starts it (in its own session, under the shim, as a one-shot render), hands it jobs as files
(engine.warm_protocol), reads how each ended, and stops it: the stop file first, then SIGTERM, then SIGKILL of
everything carrying the group's tag. group.json records what a later worker needs to find and stop it.
"""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.warm_protocol import (
    JobEnd,
    JobFile,
    Ready,
    job_path,
    read_json,
    request_cancel,
    request_stop,
    serve_args,
    write_json_atomic,
)
from flf2v_tui.worker import launch
from flf2v_tui.worker.classify import classify, read_exit
from flf2v_tui.worker.engine_key import Key, describe, group_argv
from flf2v_tui.worker.procs import kill_all, leader_alive, signal_group
from flf2v_tui.worker.tracker import Tracker
from storage.attempts import Outcome
from storage.claim import Assignment
from storage.workers import WorkerIdentity

SERVE_MODULE = "engine.serve"
GROUP_FILE = "group.json"
STOP_WAIT_S = 10.0  # after the stop file, before SIGTERM: an idle group answers within a poll (0.1 s)
IDLE_EXIT_MARGIN_S = 120.0  # the group's own safety net comes this long after the worker's --keep-warm


def groups_root(home_root: Path) -> Path:
    return home_root / "groups"


def group_tag(folder: Path) -> str:
    """The tag in every process of the group (procs.ATTEMPT_TAG): unique per home and group, and starting as
    the tags of the home's one-shot renders do (procs.attempt_tag), so whatever finds those finds these."""
    return f"{folder.parent.parent}#group-{folder.name}"


@dataclass
class Group:
    gid: str
    folder: Path
    key: Key
    assignment: Assignment
    tag: str
    port: int | None = None
    pgid: int | None = None
    pgid_started: float | None = None
    popen: subprocess.Popen[bytes] | None = None
    next_seq: int = 1
    attempt_id: int | None = None  # the job it runs now; None: idle (or loading with nothing to do)
    idle_since: float = field(default_factory=time.time)
    stop_at: float | None = None  # when the stop file was written
    term_at: float | None = None
    killed: bool = False
    adopted: bool = False  # an earlier worker's: stopped once its job ends, never handed another

    @property
    def name(self) -> str:
        return f"warm group {self.gid} ({describe(self.key)})"

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return leader_alive(self.pgid, self.pgid_started)

    def ready(self) -> Ready | None:
        return Ready.read(self.folder)

    def idle(self) -> bool:
        return self.attempt_id is None and self.stop_at is None

    # ---- jobs ------------------------------------------------------------------------------------------
    def hand(self, seq: int, attempt_id: int, argv: list[str]) -> None:
        """Job `seq` to the group; the caller recorded the hand-over in the attempt row first."""
        JobFile(seq, attempt_id, argv).write(self.folder)
        self.next_seq = seq + 1
        self.attempt_id = attempt_id

    def handed(self, seq: int) -> bool:
        return job_path(self.folder, seq).exists()

    def end_of(self, seq: int) -> JobEnd | None:
        return JobEnd.read(self.folder, seq)

    def cancel(self, seq: int) -> None:
        request_cancel(self.folder, seq)

    # ---- stopping --------------------------------------------------------------------------------------
    def stop(self, now: float) -> None:
        """Ask it to exit (it does once idle); stop_step escalates."""
        if self.stop_at is None:
            self.stop_at = now
            request_stop(self.folder)

    def stop_step(self, now: float, grace_s: float) -> bool:
        """Escalate a stop that the group does not answer: SIGTERM after STOP_WAIT_S, SIGKILL `grace_s` later.
        True once it is gone (its leftovers killed)."""
        if not self.alive():
            if not self.killed:
                self.killed = True
                kill_all(None, self.tag)  # a rank that slipped out of its group goes with it
            return True
        if self.stop_at is not None and self.term_at is None and now - self.stop_at > STOP_WAIT_S:
            self.terminate(now)
        if self.term_at is not None and not self.killed and now - self.term_at > grace_s:
            self.killed = True
            kill_all(self.pgid, self.tag)
        return False

    def terminate(self, now: float) -> None:
        if self.term_at is None:
            self.term_at = now
            if self.pgid:
                signal_group(self.pgid, signal.SIGTERM)

    def stop_now(self, grace_s: float) -> None:
        """Stop and wait for it to be gone (its GPUs are wanted now)."""
        self.stop(time.time())
        while not self.stop_step(time.time(), grace_s):
            time.sleep(0.05)

    def record(self, owner: WorkerIdentity) -> None:
        """group.json: who owns it and how to find its processes, for a later worker."""
        data = {
            "gid": self.gid, "key": self.key, "device": self.assignment.device, "slots": list(self.assignment.slots),
            "tag": self.tag, "port": self.port, "pgid": self.pgid, "pgid_started": self.pgid_started,
            "owner": {"host": owner.host, "pid": owner.pid, "started": owner.started},
        }  # fmt: skip
        write_json_atomic(self.folder / GROUP_FILE, data)

    @classmethod
    def recorded(cls, folder: Path) -> tuple[Group, dict[str, Any]] | None:
        """The group a worker recorded in `folder`, and its owner; None if there is no (readable) record."""
        data = read_json(folder / GROUP_FILE)
        if data is None:
            return None
        try:
            assignment = Assignment(str(data["device"]), tuple(str(s) for s in data["slots"]))
            group = cls(
                str(data["gid"]), folder, dict(data["key"]), assignment, str(data["tag"]), data.get("port"),
                data.get("pgid"), data.get("pgid_started"), adopted=True,
            )  # fmt: skip
            return group, dict(data["owner"])
        except (KeyError, TypeError, ValueError):
            return None


def start_group(
    folder: Path, job: dict[str, Any], key: Key, assignment: Assignment, port: int, cpu_threads: int, keep_warm_s: float
) -> Group:
    """Start `engine.serve` for the key of `job` on `assignment`, in its own session under the shim."""
    gid = folder.name
    tag = group_tag(folder)
    (folder / "jobs").mkdir(parents=True, exist_ok=True)
    module_args = serve_args(folder, group_argv(job, assignment.device), keep_warm_s + IDLE_EXIT_MARGIN_S)
    argv = [*launch.torchrun_args(int(job["gpus"]), port), "-m", SERVE_MODULE, *module_args]
    env = launch.environment(assignment, cpu_threads, tag)
    plan = launch.Launch(argv=argv, env_delta=env, cwd=folder, save_file="", port=port)
    launch.write_command_as(plan, f"flf2v {gid}")
    started = launch.start(plan)
    return Group(
        gid, folder, key, assignment, tag, port, started.pgid, started.pgid_started, started.popen,
    )  # fmt: skip


def job_outcome(
    group_dir: Path,
    seq: int,
    tracker: Tracker,
    attempt_dir: Path,
    *,
    group_alive: bool,
    cancelled: bool = False,
    stalled: str = "",
    save_file: str | None = None,
    ranks: int = 1,
) -> Outcome:
    """How job `seq` of a group ended: from its end file when the group wrote one and stays up, else from the
    group's end (its exit status and torchrun's report are the group's, which name a rank killed from outside;
    the events are the job's own)."""
    end = JobEnd.read(group_dir, seq)
    if end is not None and (end.ok or end.healthy or group_alive):
        outcome = classify(
            0 if end.ok else 1,
            tracker,
            attempt_dir,
            cancelled=cancelled,
            stalled=stalled,
            save_file=save_file,
            ranks=ranks,
        )
        if outcome.state == "failed" and end.failure and not tracker.errors:
            outcome.failure_class = end.failure
        if outcome.state == "failed" and end.failure == "cancelled":
            outcome.state, outcome.message = "cancelled", outcome.message or "cancelled by user"
        return outcome
    returncode = None if group_alive else read_exit(group_dir)
    if tracker.start is None and not cancelled:
        if seq == 1:
            # The group's first job: it was waiting for the load, so the load's failure (a bad checkpoint, an
            # OOM) is the job's, classified from the group's own events and logs as a one-shot render's is.
            load = Tracker(group_dir / "events.jsonl", group_dir)
            load.poll(time.time())
            return classify(returncode, load, group_dir, stalled=stalled, save_file=save_file, ranks=ranks)
        return Outcome(
            "interrupted", exit_code=returncode, failure_class="worker_lost", requeue_always=True,
            message="its warm group ended before the job began; it runs again",
        )  # fmt: skip
    return classify(
        returncode, tracker, group_dir, cancelled=cancelled, stalled=stalled, save_file=save_file, ranks=ranks
    )
