"""The shared-database soak: many real processes doing random queue operations on one real flf2v.db.

Long-lived processes keep their connections for the whole run (a TUI-like one has two, "read" and "write"; a
worker-like one has one and claims and finishes jobs); short-lived ones run one command and exit like `flf2v`
commands. Some are killed with SIGKILL at random moments, some exit normally, and the dead are replaced.

The parent picks every operation and never lets two processes act on one job at once, so each job's history
is a sequence: the row that the last answered command left is what every later reader must see. A process
killed while a command on a job was in flight makes that job uncertain (the command may or may not have
committed) until the next answer about it. Checks:
- every answer about a job: the job was as the parent's model says before the command (a refused command
  changed nothing; an accepted one changed only what it may change);
- every listing: each job whose last write was acknowledged before the listing was asked for is there, as
  the model says, in that process's connection;
- at the end: the same of every surviving connection and of a fresh process, and PRAGMA integrity_check;
- all along: no process holds a database file that was unlinked.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.functional.queue_helpers import REPO, env_for
from tests.functional.wal_procs import actor_argv, deleted_files

# What each command may change in its job's row; anything else changing means the process saw an old row.
MAY_CHANGE = {
    "hold": {"held"}, "release": {"held"}, "top": {"priority", "seq"}, "cancel": {"state", "cancel_requested"},
    "claim": {"state", "attempts_count", "attempts"}, "finish": {"state", "attempts", "cancel_requested"},
}  # fmt: skip
USER_OPS = ("hold", "release", "top", "cancel")
# What a soak must have done before it may stop, however slow the box.
MIN_WRITES, MIN_ROWS_CHECKED = 50, 500


@dataclass
class Proc:
    name: str
    role: str  # tui, worker or cli
    popen: subprocess.Popen
    pending: dict[str, Any] | None = None
    versions: dict[int, int] = field(default_factory=dict)  # for a listing: each job's version when asked
    buffer: bytes = b""
    kill_at: float | None = None
    closing: bool = False


@dataclass
class Figures:
    processes: int = 0
    writes: int = 0
    refused: int = 0
    reads: int = 0
    kills: int = 0
    normal_exits: int = 0
    rows_checked: int = 0
    uncertain: int = 0
    lost: list[str] = field(default_factory=list)  # every disagreement with an acknowledged write
    errors: list[str] = field(default_factory=list)  # storage errors answered instead of an acknowledgement
    deleted: list[str] = field(default_factory=list)  # every sighting of an unlinked database file


class Soak:
    def __init__(self, home: Path, frames: tuple[Path, Path], seconds: float, seed: int) -> None:
        self.home, self.frames, self.seconds, self.rng = home, frames, seconds, random.Random(seed)
        self.db = home / "flf2v.db"
        self.figures = Figures()
        self.model: dict[int, dict[str, Any]] = {}  # job id -> its row as the last answer about it read it
        self.version: dict[int, int] = {}  # bumped whenever a command on the job is sent or answered
        self.uncertain: set[int] = set()
        self.leased: set[int] = set()
        self.procs: dict[int, Proc] = {}  # by pid
        self.selector = selectors.DefaultSelector()
        self._count = 0

    # ---- processes --------------------------------------------------------------------------------------

    def _spawn(self, role: str, cmd: dict[str, Any] | None = None) -> Proc:
        self._count += 1
        mode = ["serve"] if cmd is None else ["once", json.dumps(cmd)]
        popen = subprocess.Popen(
            actor_argv(self.home, self.frames, *mode), stdin=subprocess.PIPE if cmd is None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_for(self.home), cwd=REPO,
        )  # fmt: skip
        proc = Proc(f"{role}-{self._count}", role, popen)
        os.set_blocking(popen.stdout.fileno(), False)  # type: ignore[union-attr]
        self.selector.register(popen.stdout, selectors.EVENT_READ, proc)  # type: ignore[arg-type]
        self.procs[popen.pid] = proc
        self.figures.processes += 1
        if cmd is not None:
            self._sent(proc, cmd)
            if self.rng.random() < 0.25:
                proc.kill_at = time.monotonic() + self.rng.uniform(0.05, 0.6)
        return proc

    def _send(self, proc: Proc, cmd: dict[str, Any]) -> None:
        self._sent(proc, cmd)
        self._write(proc, cmd)

    def _write(self, proc: Proc, cmd: dict[str, Any]) -> None:
        try:
            proc.popen.stdin.write((json.dumps(cmd) + "\n").encode())  # type: ignore[union-attr]
            proc.popen.stdin.flush()  # type: ignore[union-attr]
        except BrokenPipeError:  # it died; its end of output, read later, settles what was in flight
            pass

    def _sent(self, proc: Proc, cmd: dict[str, Any]) -> None:
        proc.pending = {**cmd, "sent": time.monotonic()}
        if "job" in cmd:
            self.leased.add(cmd["job"])
            self._bump(cmd["job"])
        if cmd["op"] in ("list", "dump"):
            proc.versions = {j: v for j, v in self.version.items() if j not in self.leased and j not in self.uncertain}

    def _bump(self, job_id: int) -> None:
        self.version[job_id] = self.version.get(job_id, 0) + 1

    def _kill(self, proc: Proc) -> None:
        proc.closing = True  # no more commands; its end of output, read later, settles what was in flight
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGKILL)
            if proc.popen.wait() == -signal.SIGKILL:
                self.figures.kills += 1

    def _gone(self, proc: Proc) -> None:
        """The process's output ended: it exited or was killed. A command still in flight is now uncertain."""
        self.selector.unregister(proc.popen.stdout)
        code = proc.popen.wait()
        del self.procs[proc.popen.pid]
        if proc.pending is not None:
            job_id = proc.pending.get("job")
            if job_id is not None:
                self.leased.discard(job_id)
                self.uncertain.add(job_id)
                self._bump(job_id)
                self.figures.uncertain += 1
            assert code == -signal.SIGKILL, f"{proc.name} died with {code}: {proc.popen.stderr.read().decode()[-2000:]}"  # type: ignore[union-attr]
        elif code == 0:
            self.figures.normal_exits += 1
        else:
            assert code == -signal.SIGKILL, f"{proc.name} exited {code}: {proc.popen.stderr.read().decode()[-2000:]}"  # type: ignore[union-attr]
        for stream in (proc.popen.stdin, proc.popen.stdout, proc.popen.stderr):
            if stream is not None:
                with contextlib.suppress(BrokenPipeError):  # an exit command it never read
                    stream.close()

    def _pump(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            proc: Proc = key.data
            chunk = os.read(key.fd, 1 << 16)
            if not chunk:
                self._gone(proc)
                continue
            proc.buffer += chunk
            while b"\n" in proc.buffer:
                line, proc.buffer = proc.buffer.split(b"\n", 1)
                answer = json.loads(line)
                if not answer.get("ready"):
                    self._answered(proc, answer)

    # ---- checks -----------------------------------------------------------------------------------------

    def _answered(self, proc: Proc, answer: dict[str, Any]) -> None:
        cmd, proc.pending = proc.pending, None
        assert cmd is not None
        if "error" in answer:
            self.figures.errors.append(f"{proc.name} {cmd['op']}: {answer['error']}")
            if "job" in cmd:  # rolled back, or not: a failed COMMIT cannot say
                self.leased.discard(cmd["job"])
                self.uncertain.add(cmd["job"])
                self._bump(cmd["job"])
            return
        if "jobs" in answer:
            self.figures.reads += 1
            self._check_view(f"{proc.name} {cmd.get('conn', 'main')}", answer["jobs"], proc.versions)
            return
        job_id, row = answer["job"], answer["row"]
        self._bump(job_id)
        if cmd["op"] == "submit":
            self.figures.writes += 1
            assert row is not None and row["prompt"] == cmd["tag"]
            self.model[job_id] = row
            return
        self.leased.discard(job_id)
        said = answer.get("said", "")
        unchanged = "refused" in answer or said in ("nothing to claim", "None")
        self.figures.refused += unchanged
        self.figures.writes += not unchanged
        if row is None:
            self.figures.lost.append(f"{proc.name}: job {job_id} is gone for it after {cmd['op']}")
        elif job_id in self.uncertain:
            self.uncertain.discard(job_id)  # its row, read after the uncertain command, is the truth again
        else:
            self._check_transition(proc.name, cmd["op"], self.model[job_id], row, unchanged)
        if row is not None:
            self.model[job_id] = row

    def _check_transition(self, who: str, op: str, before: dict[str, Any], after: dict[str, Any], unchanged: bool):
        allowed = set() if unchanged else MAY_CHANGE[op]
        changed = {k for k in before if before[k] != after[k]}
        self.figures.rows_checked += 1
        if changed - allowed:
            self.figures.lost.append(f"{who}: {op} on job {before['id']} found {after} where {before} was written")
        claimable = before["state"] == "queued" and not before["held"] and not before["cancel_requested"]
        if op == "claim" and unchanged and claimable:
            self.figures.lost.append(f"{who}: job {before['id']} is claimable ({before}) but was not claimed")

    def _check_view(self, who: str, jobs: dict[str, dict[str, Any]], versions: dict[int, int]) -> None:
        for job_id, version in versions.items():
            if self.version.get(job_id) != version or job_id in self.uncertain:
                continue  # written since the listing was asked for
            seen = jobs.get(str(job_id))
            self.figures.rows_checked += 1
            if seen != self.model[job_id]:
                self.figures.lost.append(f"{who}: job {job_id} reads {seen}, not the acknowledged {self.model[job_id]}")

    def _scan(self) -> None:
        for pid, proc in list(self.procs.items()):
            for target in deleted_files(pid, self.db):
                if target.endswith("-wal (deleted)") or proc.role != "cli":
                    self.figures.deleted.append(f"{proc.name}: {target}")

    # ---- the run ------------------------------------------------------------------------------------------

    def _free_job(self, want: str) -> int | None:
        pool = [j for j, row in self.model.items() if j not in self.leased]
        if want == "claim":
            pool = [j for j in pool if self.model[j]["state"] == "queued" and not self.model[j]["held"]]
        elif want == "finish":
            pool = [j for j in pool if self.model[j]["state"] == "running" and j not in self.uncertain]
        return self.rng.choice(pool) if pool else None

    def _next_command(self, role: str) -> dict[str, Any]:
        roll = self.rng.random()
        if role == "worker":
            job_id = self._free_job("claim" if roll < 0.55 else "finish")
            if job_id is None:
                return {"op": "list"}
            if self.model[job_id]["state"] == "running":
                return {"op": "finish", "job": job_id, "attempt": self.model[job_id]["attempts"][-1][0]}
            return {"op": "claim", "job": job_id}
        conn = {"conn": "write"} if role == "tui" else {}
        if roll < 0.3:
            return {"op": "list", "conn": "read"} if role == "tui" else {"op": "list"}
        if roll < 0.5 or not self.model:
            return {"op": "submit", "tag": f"soak {self._count}-{self.rng.random():.9f}", "held": roll < 0.4, **conn}
        job_id = self._free_job("user")
        if job_id is None:
            return {"op": "list", **conn}
        return {"op": self.rng.choice(USER_OPS), "job": job_id, **conn}

    def _start_long(self, role: str) -> None:
        proc = self._spawn(role)
        if role == "tui":  # the TUI's two connections, the second opened while the first holds its lock
            self._send(proc, {"op": "list", "conn": "read"})
            while proc.pending is not None and proc.popen.poll() is None:
                self._pump(0.05)
            self._send(proc, {"op": "list", "conn": "write"})
        else:
            self._send(proc, {"op": "list"})

    def run(self) -> Figures:
        for role in ("tui", "tui", "tui", "worker"):
            self._start_long(role)
        start = time.monotonic()
        # The run lasts its seconds and then, on a slow or loaded box, until it has done what a soak must
        # (MINIMUM), within a hard cap: the test asserts the minimum, not a throughput.
        deadline, cap = start + self.seconds, start + self.seconds + 180
        next_scan = next_long_kill = start
        while time.monotonic() < deadline or (not self._did_enough() and time.monotonic() < cap):
            self._pump(0.01)
            now = time.monotonic()
            for proc in list(self.procs.values()):
                if proc.kill_at is not None and now >= proc.kill_at:
                    self._kill(proc)
                elif proc.role != "cli" and proc.pending is None and not proc.closing:
                    self._send(proc, self._next_command(proc.role))
            if sum(p.role == "cli" for p in self.procs.values()) < 3:
                self._spawn("cli", self._next_command("cli"))
            if now >= next_long_kill:
                self._kill_or_retire_a_long_one()
                next_long_kill = now + self.rng.uniform(1.0, 3.0)
            if now >= next_scan:
                self._scan()
                next_scan = now + 0.2
        self._drain()
        return self.figures

    def _did_enough(self) -> bool:
        f = self.figures
        return f.writes >= MIN_WRITES and f.rows_checked >= MIN_ROWS_CHECKED and f.kills > 0 and f.normal_exits > 0

    def _kill_or_retire_a_long_one(self) -> None:
        longs = [p for p in self.procs.values() if p.role != "cli"]
        if not longs:
            return
        proc = self.rng.choice(longs)
        if self.rng.random() < 0.7:
            time.sleep(self.rng.uniform(0, 0.05))  # somewhere inside its current command
            self._kill(proc)
        else:
            while proc.pending is not None and proc.popen.poll() is None:
                self._pump(0.05)
            proc.closing = True
            self._write(proc, {"op": "exit"})
        self._start_long(proc.role)

    def _drain(self, timeout: float = 120) -> None:
        """Let every command in flight finish, and the short-lived and retiring processes exit."""
        until = time.monotonic() + timeout
        while any(p.pending is not None or p.role == "cli" or p.closing for p in self.procs.values()):
            assert time.monotonic() < until, f"still waiting for {[p.pending for p in self.procs.values()]}"
            self._pump(0.05)
        self._scan()

    def final_check(self, fresh_view: dict[str, dict[str, Any]]) -> None:
        """Every surviving connection, and a fresh process, sees every acknowledged write."""
        every = {j: self.version[j] for j in self.model if j not in self.uncertain}
        self._check_view("a fresh process", fresh_view, every)
        missing = [j for j in self.model if str(j) not in fresh_view]
        self.figures.lost += [f"a fresh process: acknowledged job {j} is missing" for j in missing]
        for proc in list(self.procs.values()):
            for conn in ("read", "write") if proc.role == "tui" else ("main",):
                self._send(proc, {"op": "dump", "conn": conn})
                proc.versions = dict(every)
                while proc.pending is not None:
                    self._pump(0.05)
        self._scan()

    def close(self) -> None:
        """Ask the long-lived processes to exit; after a failed check, kill whatever is left."""
        for proc in list(self.procs.values()):
            if proc.popen.stdin is not None and not proc.closing:
                proc.closing = True
                self._write(proc, {"op": "exit"})
        until = time.monotonic() + 60
        while self.procs and time.monotonic() < until:
            self._pump(0.05)
        for proc in list(self.procs.values()):
            proc.popen.kill()
            proc.popen.wait()
