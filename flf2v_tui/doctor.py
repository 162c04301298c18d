"""`flf2v doctor`: checks of the machine and the installation, each with what to do when it fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from storage.paths import Home

MIN_FREE_BYTES = 5 * 1024**3


@dataclass
class Check:
    name: str
    status: str  # ok, warn, fail
    detail: str
    fix: str = ""


def _python() -> Check:
    v = sys.version_info
    if v < (3, 10):
        return Check("python", "fail", f"{v.major}.{v.minor}", "use Python 3.10 or newer")
    return Check("python", "ok", f"{v.major}.{v.minor}.{v.micro} ({sys.executable})")


def _torch() -> Check:
    # In a subprocess: importing torch here would slow every other check and the CLI's own promise.
    code = "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.device_count())"
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return Check("torch", "fail", "import took over 2 minutes", "check the installation and the disk")
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return Check("torch", "fail", last, "install it: make demo (or pip install torch)")
    version, cuda, count = proc.stdout.split()
    detail = f"{version}, CUDA {'available, ' + count + ' device(s)' if cuda == 'True' else 'not available (CPU only)'}"
    return Check("torch", "ok", detail)


def _torchrun() -> Check:
    from flf2v_tui.worker.launch import torchrun_prefix

    prefix = torchrun_prefix()
    return Check("torchrun", "ok", " ".join(prefix))


def _ffmpeg() -> Check:
    try:
        import imageio_ffmpeg

        return Check("ffmpeg", "ok", imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError) as exc:
        return Check("ffmpeg", "fail", str(exc), "pip install imageio-ffmpeg (it ships an ffmpeg binary)")


def _nvml() -> Check:
    from flf2v_tui.gpus import GpuUnavailable, default_source

    try:
        devices = default_source().devices()
    except GpuUnavailable as exc:
        return Check("nvml", "warn", str(exc), "fine for CPU-only use; for GPUs install the NVIDIA driver")
    if not devices:
        return Check("nvml", "warn", "NVML works but sees no GPU", "the worker will use CPU slots")
    names = ", ".join(f"{d.index}: {d.name}" for d in devices)
    return Check("nvml", "ok", f"{len(devices)} GPU(s): {names}")


def _database(home: Home) -> Check:
    from storage.db import STORAGE_ERRORS, connect, database_files
    from storage.lost_queue import LostQueueError, refuse_lost_queue
    from storage.schema import LATEST

    try:
        refuse_lost_queue(home, "ls")  # doctor never starts a new queue itself
    except LostQueueError as exc:
        return Check("database", "fail", str(exc))
    try:
        conn = connect(home.db)
        try:
            integrity = conn.execute("PRAGMA quick_check").fetchone()[0]
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            conn.close()
    except STORAGE_ERRORS as exc:
        return Check("database", "fail", str(exc))
    if integrity != "ok":
        return Check("database", "fail", f"{home.db}: {integrity}", "stop the worker, copy the file aside, then "
                     "recover with: sqlite3 flf2v.db .recover | sqlite3 new.db")  # fmt: skip
    # Modes by stat() alone: opening and closing these files beside SQLite would drop its locks (storage.db).
    modes = {path: path.stat().st_mode & 0o777 for path in database_files(home.db) if path.exists()}
    loose = [path for path, mode in modes.items() if mode & 0o077]
    if loose:
        listed = ", ".join(f"{path} is mode {modes[path]:o}" for path in loose)
        return Check("database", "warn", listed, f"chmod 600 {' '.join(str(p) for p in loose)}")
    return Check("database", "ok", f"{home.db} (schema {version}/{LATEST}, {mode}, mode {modes[home.db]:o})")


def _disk(home: Home) -> Check:
    usage = shutil.disk_usage(home.root)
    free_gib = usage.free / 1024**3
    if usage.free < MIN_FREE_BYTES:
        return Check("disk", "warn", f"{free_gib:.1f} GiB free in {home.root}", "free space, or set FLF2V_HOME")
    return Check("disk", "ok", f"{free_gib:.1f} GiB free in {home.root}")


def _worker(home: Home) -> Check:
    from storage.db import STORAGE_ERRORS, connect
    from storage.workers import is_paused, live_workers

    try:
        conn = connect(home.db)
        try:
            live = live_workers(conn)
            paused = is_paused(conn)
        finally:
            conn.close()
    except STORAGE_ERRORS as exc:
        return Check("worker", "warn", f"not known: cannot read the database ({exc})")
    if not live:
        return Check("worker", "warn", "no worker is running", "start one: flf2v worker (in tmux, or as a service)")
    text = ", ".join(f"pid {w['pid']} on {w['host']}" for w in live)
    return Check("worker", "warn" if paused else "ok", text + (" (queue paused)" if paused else ""),
                 "flf2v resume" if paused else "")  # fmt: skip


def run_checks(home: Home) -> list[Check]:
    home.ensure()
    database = _database(home)
    # The worker check opens the database too: after a failed database check it would only fail again, or
    # (a lost database) make a new one, which doctor must never do.
    worker = _worker(home) if database.status != "fail" else Check("worker", "warn", "not known (see database)")
    checks = [_python(), _torch(), _torchrun(), _ffmpeg(), _nvml(), database, _disk(home), worker]
    checks.append(tiny_model_state(home))
    if not os.access(home.root, os.W_OK):
        checks.append(Check("home", "fail", f"{home.root} is not writable", "set FLF2V_HOME to a writable folder"))
    return checks


def tiny_model_state(home: Home) -> Check:
    from flf2v_tui.tiny import tiny_ready

    if tiny_ready(Path(home.tiny_model)):
        return Check("tiny model", "ok", str(home.tiny_model))
    return Check("tiny model", "warn", "not written yet", "it is written on first use (flf2v demo)")
