"""Worker registrations: who is running, since when, with which GPU pool, and whether it is alive."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from storage.db import get_setting, set_setting, write_tx

HEARTBEAT_S = 5.0
STALE_AFTER_S = 30.0


@dataclass(frozen=True)
class WorkerIdentity:
    """A process named by pid plus its start time, so that a reused pid is never mistaken for it."""

    host: str
    pid: int
    started: float

    @classmethod
    def current(cls) -> WorkerIdentity:
        import os

        import psutil

        pid = os.getpid()
        return cls(socket.gethostname(), pid, psutil.Process(pid).create_time())


def process_alive(host: str | None, pid: int | None, started: float | None) -> bool | None:
    """True/False for a process on this host; None when it runs elsewhere and cannot be checked."""
    if pid is None or started is None:
        return False
    if host is not None and host != socket.gethostname():
        return None
    import psutil

    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - started) < 0.05 and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True


def register(conn: sqlite3.Connection, me: WorkerIdentity, pool: dict[str, Any]) -> int:
    now = time.time()
    with write_tx(conn):
        cur = conn.execute(
            "INSERT INTO workers (host, pid, pid_started, pool, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?)",
            (me.host, me.pid, me.started, json.dumps(pool), now, now),
        )
    return int(cur.lastrowid or 0)


def heartbeat(conn: sqlite3.Connection, worker_id: int, pool: dict[str, Any]) -> None:
    with write_tx(conn):
        conn.execute(
            "UPDATE workers SET heartbeat_at = ?, pool = ? WHERE id = ?", (time.time(), json.dumps(pool), worker_id)
        )


def stop(conn: sqlite3.Connection, worker_id: int) -> None:
    with write_tx(conn):
        conn.execute("UPDATE workers SET state = 'stopped', stopped_at = ? WHERE id = ?", (time.time(), worker_id))


def live_workers(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Workers that say they run and whose process is alive (or, on another host, whose heartbeat is fresh)."""
    out = []
    now = time.time()
    for row in conn.execute("SELECT * FROM workers WHERE state = 'running' ORDER BY id"):
        worker = dict(row)
        alive = process_alive(worker["host"], worker["pid"], worker["pid_started"])
        if alive is None:
            alive = now - worker["heartbeat_at"] < STALE_AFTER_S
        if alive:
            worker["pool"] = json.loads(worker["pool"] or "{}")
            out.append(worker)
    return out


def is_paused(conn: sqlite3.Connection) -> bool:
    return get_setting(conn, "paused", "0") == "1"


def set_paused(conn: sqlite3.Connection, paused: bool) -> None:
    with write_tx(conn):
        set_setting(conn, "paused", "1" if paused else "0")
        set_setting(conn, "paused_at", str(time.time()))


def gpu_holders(conn: sqlite3.Connection) -> dict[int, int | str]:
    """GPU index -> id of the job whose attempt holds it, or what else of the worker holds it (an idle warm
    group, its models loaded for the next job of its key), from the live workers' pools."""
    holders: dict[int, int | str] = {}
    for w in live_workers(conn):
        if w["pool"].get("device") != "cuda":
            continue
        for slot, label in w["pool"].get("warm", {}).items():
            holders[int(slot)] = str(label)
        for slot, attempt_id in w["pool"].get("busy", {}).items():
            row = conn.execute("SELECT job_id FROM attempts WHERE id = ?", (int(attempt_id),)).fetchone()
            if row:
                holders[int(slot)] = int(row[0])
    return holders
