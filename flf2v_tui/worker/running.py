"""What the worker runs with: its settings (WorkerConfig) and each render it watches (Running). Plain data,
apart from the loop, so that the loop's helpers (reconcile, handoff) can name it without importing the loop."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flf2v_tui.worker import KILL_GRACE_S
from flf2v_tui.worker.classify import classify
from flf2v_tui.worker.tracker import Tracker
from storage import attempts as store
from storage.claim import RESERVE_AFTER_S, Assignment

if TYPE_CHECKING:
    from flf2v_tui.worker.warm import Group


@dataclass
class WorkerConfig:
    gpus: str | None = None
    cpu_slots: int | None = None
    once: bool = False
    stall_timeout_s: float = 0.0
    kill_grace_s: float = KILL_GRACE_S
    poll_s: float = 0.2
    on_finish: list[str] = field(default_factory=list)
    stop_jobs: bool = False
    only_jobs: set[int] | None = None
    quiet: bool = False
    reserve_after_s: float = RESERVE_AFTER_S
    keep_warm_s: float = 0.0  # --keep-warm: how long an idle warm group stays loaded; 0: one group per job


@dataclass
class Running:
    attempt_id: int
    job_id: int
    number: int
    folder: Path
    tag: str
    assignment: Assignment
    tracker: Tracker
    pgid: int | None = None
    pgid_started: float | None = None
    popen: subprocess.Popen[bytes] | None = None
    port: int | None = None
    launched: float = field(default_factory=time.time)
    last_write: float = 0.0
    dirty: bool = False
    term_at: float | None = None
    killed: bool = False
    cancelled: bool = False
    stalled: str = ""
    stopping: bool = False
    last_said: str = ""
    save_file: str | None = None
    launch_unrecorded: bool = False  # started, but its pgid is not in the database yet
    ended: store.Outcome | None = None  # over and classified, its processes gone; the record is still to write
    group: Group | None = None  # the warm group it was handed to (None: a one-shot render)
    seq: int | None = None  # its job number in that group
    hand_pending: list[str] | None = None  # its engine argv, handed once the hand-over is recorded
    # The group was asked to end the job (its cancel file), or is to exit after a job that left it unhealthy:
    # SIGTERM to the group follows if it has not after the kill grace.
    group_asked_at: float | None = None
    ranks: int = 1  # on every node together: a stall before the start event is classed by it

    def outcome(self, returncode: int | None) -> store.Outcome:
        """How the render ended, from its exit status and what this record knows (the launchers' one call)."""
        return classify(
            returncode, self.tracker, self.folder, cancelled=self.cancelled, stalled=self.stalled,
            save_file=self.save_file, ranks=self.ranks,
        )  # fmt: skip

    @classmethod
    def adopted(cls, attempt: dict[str, Any], tag: str) -> Running:
        """The render of a running attempt that an earlier worker started (no Popen: its shim's exit file
        tells the end)."""
        folder = Path(attempt["log_dir"])
        slots = tuple(s for s in str(attempt["gpus"]).split(",") if s)
        return cls(
            attempt["id"], attempt["job_id"], attempt["number"], folder, tag, Assignment(attempt["device"], slots),
            Tracker(folder / "events.jsonl", folder), pgid=attempt["pgid"], pgid_started=attempt["pgid_started"],
            port=attempt["master_port"], launched=attempt["started_at"], save_file=attempt["save_file"],
            ranks=int(attempt.get("nproc") or 1) * int(attempt.get("nodes") or 1),  # nproc is per node
        )  # fmt: skip
