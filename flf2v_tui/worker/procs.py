"""Processes of a render: is its group leader (the shim) alive, what belongs to it, and stopping it all."""

from __future__ import annotations

import contextlib
import os
import signal

import psutil

ATTEMPT_TAG = "FLF2V_ATTEMPT"


def leader_alive(pid: int | None, started: float | None) -> bool:
    """The shim is alive: same pid *and* same start time, so a reused pid is never mistaken for it."""
    if pid is None or started is None:
        return False
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - started) < 0.05 and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False


def tagged(tag: str) -> list[psutil.Process]:
    """Every process that carries this attempt's tag in its environment, wherever it was reparented to."""
    return tagged_by({tag}).get(tag, [])


def tagged_by(tags: set[str]) -> dict[str, list[psutil.Process]]:
    """The processes carrying each of these tags, from one pass over the process table (reading every
    process's environment is what costs)."""
    found: dict[str, list[psutil.Process]] = {}
    for proc in psutil.process_iter(["pid"]):
        try:
            tag = proc.environ().get(ATTEMPT_TAG)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if tag in tags:
            found.setdefault(tag, []).append(proc)
    return found


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def victims(pgid: int | None, tag: str, tagged_now: list[psutil.Process] | None = None) -> dict[int, psutil.Process]:
    """The shim's group, everything under it and anything else tagged with the attempt, by pid. `tagged_now`:
    the tagged processes, where the caller read them for several attempts at once (tagged_by)."""
    found = {p.pid: p for p in tree(pgid)} if pgid else {}
    found.update({p.pid: p for p in (tagged(tag) if tagged_now is None else tagged_now)})
    return found


def kill_all(pgid: int | None, tag: str) -> int:
    """SIGKILL the shim's group, everything under it and anything else tagged with the attempt."""
    doomed = victims(pgid, tag)
    for proc in doomed.values():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            proc.send_signal(signal.SIGKILL)
    if pgid:
        signal_group(pgid, signal.SIGKILL)
    psutil.wait_procs(list(doomed.values()), timeout=5)
    return len(doomed)


def attempt_tag(home_root: str, attempt_id: int) -> str:
    """Unique per database and attempt, so two FLF2V_HOMEs on one machine never touch each other's jobs."""
    return f"{home_root}#{attempt_id}"
