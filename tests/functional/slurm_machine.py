"""What the test Slurm cluster (slurm_cluster.py) changes on the machine, and how each change is undone even
after a crash: the machine-wide lock, the daemons' pids saved under /run, the bridge, veths and namespaces,
and the node lines in /etc/hosts (rewritten in place under a lock, and restored byte for byte).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

PREFIX = "f15"  # of every link and namespace this fixture makes, so a leftover of a crashed run is recognised
HOSTS_FILE = Path("/etc/hosts")
HOSTS_MARK = "# flf2v-slurm-test"
LOCK_FILE = Path("/run/flf2v-slurm-test.lock")  # one test cluster on a machine at a time (fixed names)
PIDS_FILE = Path("/run/flf2v-slurm-test.pids")  # the daemons a run started: a killed pytest leaves them behind
LOCK_WAIT_S = 600.0


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check)


# ---- the machine-wide lock ---------------------------------------------------------------------------------
def take_lock(timeout: float = LOCK_WAIT_S) -> int:
    """The lock's descriptor, waiting up to `timeout` for another test cluster to be torn down."""
    fd = os.open(LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o600)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                holder = LOCK_FILE.read_text().strip() or "?"
                raise RuntimeError(
                    f"another Slurm test cluster (pid {holder}) has held {LOCK_FILE} for {timeout:g} s; wait for it"
                ) from None
            time.sleep(0.5)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd


def release_lock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


# ---- daemons' pids -----------------------------------------------------------------------------------------
def save_pid(pid: int) -> None:
    with open(PIDS_FILE, "a", encoding="utf-8") as fh:
        fh.write(f"{pid} {_started(pid)}\n")


def kill_saved_daemons() -> None:
    """Kill what an earlier run started and never stopped (same pid and start time: not a reused pid)."""
    with contextlib.suppress(OSError):
        saved = [line.split() for line in PIDS_FILE.read_text().splitlines() if line.strip()]
        kill_all([int(pid) for pid, started in saved if _started(int(pid)) == started])
    PIDS_FILE.unlink(missing_ok=True)


def _started(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[19]
    except (OSError, IndexError):
        return "-"


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(running(pid) for pid in pids):
        time.sleep(0.1)


def running(pid: int) -> bool:
    """Alive and not a zombie (a zombie of a dead parent is reaped late here, but holds nothing)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def end(proc: subprocess.Popen[bytes]) -> None:
    """TERM, a moment, then KILL; always reaped (processes here are not reaped on their own)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# ---- /etc/hosts --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _hosts_locked() -> Iterator[object]:
    # In place (r+), never a new file renamed over it: /etc/hosts is often a bind mount in a container.
    with open(HOSTS_FILE, "r+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield fh


def add_hosts_lines(lines: list[str]) -> bytes:
    """Append our lines; returns the file as it was, for restore_hosts."""
    with _hosts_locked() as fh:
        before = fh.read()  # type: ignore[attr-defined]
        sep = b"" if before.endswith(b"\n") or not before else b"\n"
        fh.write(sep + "".join(f"{line} {HOSTS_MARK}\n" for line in lines).encode())  # type: ignore[attr-defined]
        return before


def restore_hosts(before: bytes | None) -> None:
    """Put the file back byte for byte when it still holds what we added on top of `before`; otherwise (it
    was edited meanwhile, or after a crash) remove only our marked lines."""
    with _hosts_locked() as fh:
        now = fh.read()  # type: ignore[attr-defined]
        if before is not None and now.startswith(before):
            kept = before
        elif HOSTS_MARK.encode() in now:
            kept = b"".join(x for x in now.splitlines(keepends=True) if HOSTS_MARK.encode() not in x)
        else:
            return
        fh.seek(0)  # type: ignore[attr-defined]
        fh.write(kept)  # type: ignore[attr-defined]
        fh.truncate()  # type: ignore[attr-defined]


# ---- links and namespaces ----------------------------------------------------------------------------------
def remove_our_links_and_namespaces() -> None:
    """A run killed before its teardown leaves links and namespaces of ours: remove them."""
    for line in run("ip", "-o", "link", "show", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(PREFIX):
            run("ip", "link", "del", name, check=False)
    for line in run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(PREFIX):
            run("ip", "netns", "del", name, check=False)


def is_mount(path: Path) -> bool:
    with contextlib.suppress(OSError):
        return any(line.split()[1] == str(path) for line in Path("/proc/mounts").read_text().splitlines())
    return False
