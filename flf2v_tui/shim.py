"""The leader of a render's process group: runs torchrun, outlives the worker, and records how it ended.

`python -m flf2v_tui.shim ATTEMPT_DIR -- torchrun ...`

Why it exists: a worker that restarts re-attaches to running renders but is not their parent, so it could
never learn torchrun's exit status. The shim is torchrun's parent, writes that status to
ATTEMPT_DIR/exit.json, and, as a child subreaper, adopts any rank that torchrun leaves behind (torchrun puts
each rank in its own session) so that nothing of the render outlives it. It imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

EXIT_FILE = "exit.json"
LOG_FILE = "torchrun.log"
_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _children() -> list[int]:
    """Our direct children (adopted orphans included), from /proc."""
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == me:
            found.append(int(entry))
    return found


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _stop_leftovers(grace: float) -> list[int]:
    """Terminate what is left of the render (adopted ranks), politely first."""
    leftovers = _children()
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap()
            leftovers = _children()
            if not leftovers:
                return []
            time.sleep(0.1)
    return leftovers


# torchrun's own last words when a signal stops it (a cancel, a stop): its agent raises SignalException out of
# its monitoring sleep, and Python prints that as a ~30-line traceback of torchrun's internals, no crash.
_SIGNAL_END = re.compile(rb"SignalException: Process \d+ got signal: (\d+)\s*$")
_TRACEBACK = b"Traceback (most recent call last):"
_TAIL_BYTES = 65536


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def tidy_signal_traceback(path: Path) -> None:
    """Replace the traceback torchrun ends on when a signal stopped it with one line naming the signal; the
    lines before it (which ranks were sent what) stay. Any other ending is left exactly as it is."""
    with open(path, "r+b") as log:
        size = log.seek(0, os.SEEK_END)
        start = max(0, size - _TAIL_BYTES)
        log.seek(start)
        tail = log.read()
        ending = _SIGNAL_END.search(tail)
        at = tail.rfind(_TRACEBACK)
        if ending is None or at < 0 or (at > 0 and tail[at - 1 : at] != b"\n"):
            return
        frames = tail[at + len(_TRACEBACK) : ending.start()].splitlines()[1:-1]
        if not all(line.startswith(b" ") for line in frames):  # not one plain traceback: leave it be
            return
        name = _signal_name(int(ending.group(1)))
        log.truncate(start + at)
        log.seek(start + at)
        log.write(f"flf2v shim: torchrun stopped by {name} (a cancel or a stop); its traceback is left out\n".encode())


def _write_exit(folder: Path, record: dict[str, object]) -> None:
    temp = folder / f".{EXIT_FILE}.tmp"
    temp.write_text(json.dumps(record))
    os.replace(temp, folder / EXIT_FILE)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: python -m flf2v_tui.shim ATTEMPT_DIR -- COMMAND...\n")
        return 2
    folder, command = Path(argv[0]), argv[2:]
    subreaper = _become_subreaper()
    # Signals to the group are meant for torchrun, which is in it too; the shim must live on to record the
    # end. A Python handler (not SIG_IGN) so that torchrun does not inherit an ignored disposition.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)
    started = time.time()
    with open(folder / LOG_FILE, "ab", buffering=0) as log:
        try:
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        except OSError as exc:
            log.write(f"flf2v shim: could not start {command[0]}: {exc}\n".encode())
            _write_exit(folder, {"returncode": 127, "started": started, "ended": time.time(), "error": str(exc)})
            return 127
        (folder / "shim.json").write_text(
            json.dumps({"shim_pid": os.getpid(), "torchrun_pid": child.pid, "subreaper": subreaper})
        )
        returncode = child.wait()
        with contextlib.suppress(OSError):  # a log that cannot be tidied is still the whole log
            tidy_signal_traceback(folder / LOG_FILE)
        leftovers = _stop_leftovers(grace=10.0) if subreaper else []
        if leftovers:
            log.write(f"flf2v shim: could not stop processes {leftovers}\n".encode())
    record = {"returncode": returncode, "started": started, "ended": time.time(), "leftovers": leftovers}
    _write_exit(folder, record)
    _reap()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
