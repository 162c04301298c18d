"""Launchers: how the worker starts, watches, stops and classifies one attempt (DESIGN.md, "Warm groups and
launchers"). `local` runs torchrun in a process group on this machine; `slurm` submits a batch script that runs
`srun torchrun` with a c10d rendezvous across the job's nodes. Both run the same engine command line, and the
attempt folder is all they share with the worker, which stays the only writer of job state. Warm groups
(flf2v_tui.worker.groups) are the local launcher's alone: the worker hands their jobs through the group folder
instead of start(), and watches, cancels and classifies them itself (warm_jobs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable

    from flf2v_tui.worker.launch import Launch
    from flf2v_tui.worker.running import Running
    from storage.attempts import Outcome
    from storage.paths import Home

BACKENDS = ("local", "slurm")


class LauncherRefused(RuntimeError):
    """The backend refused the attempt because of the worker's own settings (sbatch: no such partition, ...):
    not the job's fault, and every other job would be refused the same way until the settings are fixed."""


class Storage(Protocol):
    def write(self, action: Callable[[], object]) -> bool:
        """Run a database write, retried by the worker's storage guard; False when storage fails now."""


class LaunchingWorker(Protocol):
    """What a launcher may use of the worker: its home, its database and storage guard, and its output."""

    home: Home
    conn: sqlite3.Connection
    storage: Storage

    def say(self, text: str) -> None: ...


class Launcher(Protocol):
    name: str  # "local" or "slurm": the attempts' `backend` column
    max_nodes: int  # the most nodes it can give one job (the claim passes over wider jobs)
    # Whether the worker may keep torchrun groups loaded between jobs (--keep-warm; worker.groups): only where
    # it starts the ranks itself, on this machine. A Slurm attempt is one sbatch job that loads its own models.
    warm_groups: bool

    def start(self, worker: LaunchingWorker, r: Running, plan: Launch, job: dict[str, Any]) -> None:
        """Start the attempt (raises OSError or RuntimeError when it cannot); fills what `r` needs to be
        watched, and records in the database what a restarted worker needs to find it again."""

    def where(self, r: Running) -> str:
        """Where it runs, for the worker's "started" line."""

    def stop(self, r: Running) -> None:
        """Ask it to end (a cancel, a stall, --stop-jobs): SIGTERM, or scancel."""

    def kill(self, r: Running) -> int:
        """The grace period is over: end it by force; how many processes (or nodes) were told."""

    def ended(self, worker: LaunchingWorker, r: Running) -> bool:
        """Whether nothing of it runs any more (cheap: called every tick; rate-limits its own queries)."""

    def outcome(self, r: Running) -> Outcome:
        """How it ended, once `ended` said so."""

    def adopted(self, worker: LaunchingWorker, r: Running, attempt: dict[str, Any]) -> None:
        """A restarted worker re-attached `attempt` (a row of store.running_attempts) as `r`."""
