"""Processes of the shared-database tests: wal_actor processes to talk to, and what /proc says they hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.functional.queue_helpers import REPO, env_for

ACTOR = [sys.executable, "-m", "tests.functional.wal_actor"]


def actor_argv(home: Path, frames: tuple[Path, Path], *mode: str) -> list[str]:
    return [*ACTOR, str(home), str(frames[0]), str(frames[1]), *mode]


def start_actor(home: Path, frames: tuple[Path, Path]) -> subprocess.Popen:
    """A long-lived actor, ready when this returns."""
    proc = subprocess.Popen(
        actor_argv(home, frames, "serve"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env_for(home), cwd=REPO
    )
    assert json.loads(proc.stdout.readline()) == {"ready": True}  # type: ignore[union-attr]
    return proc


def ask(proc: subprocess.Popen, **cmd: Any) -> dict[str, Any]:
    """Send one command to a long-lived actor and wait for its answer."""
    proc.stdin.write((json.dumps(cmd) + "\n").encode())  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]
    line = proc.stdout.readline()  # type: ignore[union-attr]
    assert line, f"actor {proc.pid} died answering {cmd} (exit {proc.wait()})"
    return json.loads(line)


def once(home: Path, frames: tuple[Path, Path], **cmd: Any) -> dict[str, Any]:
    """One command in a process of its own that exits afterwards, as a `flf2v` command does."""
    proc = subprocess.run(
        actor_argv(home, frames, "once", json.dumps(cmd)), capture_output=True, env=env_for(home), cwd=REPO, timeout=120
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def finish_actor(proc: subprocess.Popen) -> int:
    proc.stdin.write(b'{"op": "exit"}\n')  # type: ignore[union-attr]
    proc.stdin.close()  # type: ignore[union-attr]
    return proc.wait(timeout=60)


def deleted_files(pid: int, db: Path) -> list[str]:
    """The database's files (flf2v.db, -wal, -shm) that process `pid` still holds open after they were
    unlinked: a process holding one reads and writes a file that no other process will ever see."""
    found = []
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError):
        return []
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith(str(db)) and target.endswith(" (deleted)"):
            found.append(target)
    return found


# SQLite on Unix holds a read lock on these bytes of the database file for as long as a connection in WAL mode
# is open ("shared" in its os_unix.c), so that a closing process can tell whether it is the last user.
SHARED_FIRST, SHARED_SIZE = 0x40000002, 510
_PROBE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, int(sys.argv[3]), int(sys.argv[2]))
    print("free")
except OSError:
    print("held")
"""


def shared_lock_held(db: Path) -> bool:
    """Whether any process holds SQLite's shared lock on `db`, asked by another process (locks a process holds
    never conflict with its own)."""
    argv = [sys.executable, "-c", _PROBE, str(db), str(SHARED_FIRST), str(SHARED_SIZE)]
    answer = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert answer in ("held", "free"), answer
    return answer == "held"
