"""One process of the shared-database tests, doing real queue operations through storage.* on a real file.

  python -m tests.functional.wal_actor HOME FIRST LAST serve      # long-lived: one JSON command a line on stdin
  python -m tests.functional.wal_actor HOME FIRST LAST once CMD   # short-lived, like one `flf2v` command

Each command is answered with one JSON line on stdout, written only after the command's transaction committed
(an acknowledgement). The long-lived process keeps connections by name, opened on first use with
storage.db.connect as the TUI opens its "read" and "write" ones, and keeps them open until told to exit.
Every answer about a job carries its row as this connection reads it just after the command, so the parent
knows what each acknowledged write left behind.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from engine.errors import BadInputError
from storage.attempts import Outcome, finish
from storage.claim import Assignment, claim_next
from storage.db import connect, read_tx
from storage.jobs import insert_jobs, list_jobs
from storage.ops import cancel, move_to_top, set_held
from storage.paths import Home
from storage.spec import JobSpec
from storage.workers import WorkerIdentity

# What the parent compares: every column a queue operation of these tests writes.
JOB_FIELDS = ("id", "prompt", "state", "held", "priority", "seq", "cancel_requested", "attempts_count")


def job_view(conn: sqlite3.Connection, job_id: int) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {', '.join(JOB_FIELDS)} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        return None
    attempts = conn.execute("SELECT id, state FROM attempts WHERE job_id = ? ORDER BY id", (job_id,)).fetchall()
    return {**dict(row), "attempts": [[a[0], a[1]] for a in attempts]}


def queue_view(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """Every job as `flf2v ls --all` lists it, with its attempts, from one snapshot: keyed by id (a string,
    as JSON keys are)."""
    with read_tx(conn):
        jobs = {str(r["id"]): {k: r[k] for k in JOB_FIELDS} for r in list_jobs(conn)}
        attempts = conn.execute("SELECT id, job_id, state FROM attempts ORDER BY id").fetchall()
    for job in jobs.values():
        job["attempts"] = []
    for attempt_id, job_id, state in attempts:
        if str(job_id) in jobs:  # else the snapshot is torn; the parent finds the job missing or wrong
            jobs[str(job_id)]["attempts"].append([attempt_id, state])
    return jobs


class Actor:
    def __init__(self, home: Home, frames: tuple[str, str]) -> None:
        self.home, self.frames = home, frames
        self.conns: dict[str, sqlite3.Connection] = {}
        self._me: WorkerIdentity | None = None

    def conn(self, name: str) -> sqlite3.Connection:
        if name not in self.conns:
            self.conns[name] = connect(self.home.db)
        return self.conns[name]

    def run(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op, conn = cmd["op"], self.conn(cmd.get("conn", "main"))
        if op in ("list", "dump"):
            return {"jobs": queue_view(conn)}
        if op == "submit":
            spec = JobSpec(
                task="flf2v-tiny", size="64*64", frame_num=9, ckpt_dir="/ckpt", sample_solver="unipc",
                sample_steps=4, sample_shift=16.0, sample_guide_scale=5.0, base_seed=1, first_frame=self.frames[0],
                last_frame=self.frames[1], prompt=cmd["tag"], held=bool(cmd.get("held")),
            )  # fmt: skip
            (job_id,) = insert_jobs(conn, self.home, [spec])
            return {"job": job_id, "row": job_view(conn, job_id)}
        job_id = int(cmd["job"])
        result: dict[str, Any] = {"job": job_id}
        try:
            if op in ("hold", "release"):
                result["said"] = set_held(conn, job_id, op == "hold")
            elif op == "top":
                result["said"] = move_to_top(conn, job_id)
            elif op == "cancel":
                result["said"] = cancel(conn, job_id)
            elif op == "claim":
                if self._me is None:
                    self._me = WorkerIdentity.current()
                got = claim_next(conn, self._me, lambda n: Assignment("cpu", ("cpu0",)), lambda j, k: f"/l/{j}/{k}",
                                 only_jobs=[job_id])  # fmt: skip
                result["said"] = f"claimed attempt {got.attempt_id}" if got else "nothing to claim"
            elif op == "finish":
                result["said"] = str(finish(conn, int(cmd["attempt"]), Outcome("succeeded", exit_code=0)))
            else:
                raise ValueError(f"unknown op {op!r}")
        except BadInputError as exc:  # refused, as the CLI would refuse it: nothing was written
            result["refused"] = exc.message
        result["row"] = job_view(conn, job_id)
        return result

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()


def _answer(value: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def _run(actor: Actor, cmd: dict[str, Any]) -> dict[str, Any]:
    try:
        return actor.run(cmd)
    except sqlite3.Error as exc:  # never acknowledged; the parent counts it (a healthy file has none)
        return {"error": f"{type(exc).__name__}: {exc}"}


def main(argv: list[str]) -> int:
    home, frames, mode = Home(Path(argv[0])), (argv[1], argv[2]), argv[3]
    actor = Actor(home, frames)
    if mode == "once":
        _answer(_run(actor, json.loads(argv[4])))
        actor.close()
        return 0
    _answer({"ready": True})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "exit":
            break
        _answer(_run(actor, cmd))
    actor.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
