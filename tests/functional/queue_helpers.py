"""Helpers for the queue's functional tests: running the real `flf2v` CLI and worker in subprocesses."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from storage.db import connect

REPO = Path(__file__).resolve().parents[2]
SCRIPTED = "tests.functional.scripted_engine"
# A finish hook (`--on-finish`, with the folder prefix as its argument) that saves its environment per job.
HOOK = "import json, os, sys; open(sys.argv[1] + os.environ['FLF2V_JOB_ID'], 'w').write(json.dumps(dict(os.environ)))"


def write_stub_checkpoint(folder: Path) -> Path:
    """An official-layout folder that passes the submit-time checks, for runs of the scripted engine only
    (it loads no weights). Real renders use the tiny checkpoint from engine.tiny."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"dim": 8}))
    header = b"{}"
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    pickle_bytes = b"\x80\x02}q\x00."
    for name in ("Wan2.1_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth",
                 "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"):  # fmt: skip
        (folder / name).write_bytes(pickle_bytes)
    tok = folder / "google" / "umt5-xxl"
    tok.mkdir(parents=True, exist_ok=True)
    (tok / "tokenizer_config.json").write_text("{}")
    (tok / "tokenizer.json").write_text("{}")
    return folder


def env_for(home: Path, engine: str | None = None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "FLF2V_HOME": str(home), "PYTHONPATH": str(REPO), "NO_COLOR": "1", "OMP_NUM_THREADS": "1"}
    env.pop("FLF2V_ENGINE_MODULE", None)
    env.pop("FLF2V_GPUS", None)
    if engine:
        env["FLF2V_ENGINE_MODULE"] = engine
    env.update(extra)
    return env


def flf2v(home: Path, *args: str, engine: str | None = None, timeout: float = 120, **kw: Any):
    """Run the CLI as a user would: a separate process, its own exit code (`env=`: variables to add)."""
    return subprocess.run(
        [sys.executable, "-m", "flf2v_tui.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env_for(home, engine, **kw.get("env", {})),
        cwd=kw.get("cwd", REPO),
    )


def start_worker(home: Path, *args: str, engine: str | None = None, **env: str) -> subprocess.Popen:
    """A worker in the background, logging to FLF2V_HOME/worker.log."""
    out = open(home / "worker.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "flf2v_tui.cli", "worker", *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env_for(home, engine, **env),
        cwd=REPO,
    )
    out.close()
    return proc


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout=timeout)


def wait_for(predicate: Callable[[], Any], timeout: float = 120, every: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def job_row(home: Path, job_id: int) -> dict[str, Any]:
    conn = connect(home / "flf2v.db")
    try:
        return dict(conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())
    finally:
        conn.close()


def attempt_rows(home: Path, job_id: int) -> list[dict[str, Any]]:
    conn = connect(home / "flf2v.db")
    try:
        rows = conn.execute("SELECT * FROM attempts WHERE job_id = ? ORDER BY number", (job_id,)).fetchall()
        return [dict(r) for r in rows]
    finally:
        conn.close()


def attempt_processes(home: Path) -> list[psutil.Process]:
    """Every live process that belongs to an attempt of this home (tagged in its environment)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            tag = proc.environ().get("FLF2V_ATTEMPT", "")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if tag.startswith(f"{home.resolve()}#") and proc.status() != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def in_terminal(home: Path, columns: int, *args: str) -> str:
    """`flf2v ARGS` in a real terminal (a pty) `columns` wide, as a person at it sees it (no colour)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "flf2v_tui.cli", *args], stdout=follower,
                            stderr=follower, env=env_for(home), cwd=REPO)  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the pty's other end closed: the command is done
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(leader)
    return b"".join(chunks).decode().replace("\r\n", "\n")
