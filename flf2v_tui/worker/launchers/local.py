"""The local launcher: torchrun under the shim, in a process group of its own on this machine."""

from __future__ import annotations

import signal
from typing import Any

from flf2v_tui.worker import launch
from flf2v_tui.worker.classify import read_exit
from flf2v_tui.worker.launchers import LaunchingWorker
from flf2v_tui.worker.procs import kill_all, leader_alive, signal_group
from flf2v_tui.worker.running import Running
from storage.attempts import Outcome


class LocalLauncher:
    name = "local"
    max_nodes = 1
    warm_groups = True  # with --keep-warm, the worker hands jobs to warm groups instead of start() (groups.py)

    def start(self, worker: LaunchingWorker, r: Running, plan: launch.Launch, job: dict[str, Any]) -> None:
        started = launch.start(plan)
        r.popen, r.pgid, r.pgid_started = started.popen, started.pgid, started.pgid_started

    def where(self, r: Running) -> str:
        return f"on {r.assignment.device} [{','.join(r.assignment.slots)}], port {r.port}"

    def stop(self, r: Running) -> None:
        if r.pgid:
            signal_group(r.pgid, signal.SIGTERM)

    def kill(self, r: Running) -> int:
        return kill_all(r.pgid, r.tag)

    def ended(self, worker: LaunchingWorker, r: Running) -> bool:
        if r.popen is not None:
            return r.popen.poll() is not None
        return not leader_alive(r.pgid, r.pgid_started)

    def outcome(self, r: Running) -> Outcome:
        return r.outcome(read_exit(r.folder))

    def adopted(self, worker: LaunchingWorker, r: Running, attempt: dict[str, Any]) -> None:
        return None
