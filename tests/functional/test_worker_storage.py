"""The worker and storage it cannot use, for real: its stdout on /dev/full, the queue's database locked by
another process past the busy timeout, and a render whose start could not be recorded when the worker stops.

The lock is a real `BEGIN EXCLUSIVE` held by another process; the worker's busy timeout is shortened to a
fraction of a second (FLF2V_BUSY_TIMEOUT_MS, or the PRAGMA on an in-process worker's connection).
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flf2v_tui.worker.loop import Worker, WorkerConfig
from flf2v_tui.worker.pool import Pool
from storage.db import connect
from storage.paths import Home
from tests.functional.lock_helpers import held_lock
from tests.functional.queue_helpers import (
    REPO,
    SCRIPTED,
    attempt_processes,
    attempt_rows,
    env_for,
    flf2v,
    job_row,
    wait_for,
)

pytestmark = pytest.mark.slow

BUSY_MS = "300"


def submit(home: Path, ckpt: Path, frames: tuple[Path, Path], script: str, *extra: str) -> int:
    proc = flf2v(home, "submit", "--task", "flf2v-tiny", "--ckpt_dir", str(ckpt), "--first_frame", str(frames[0]),
                 "--last_frame", str(frames[1]), "--gpus", "1", "--prompt", f"script: {script}", "-q", *extra,
                 engine=SCRIPTED)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip())


@pytest.fixture
def in_process(qhome: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple[Worker, list[str]]]]:
    """make(say=None, **config) -> a Worker in this process on `qhome`, one CPU slot, busy timeout BUSY_MS, and
    the lines it says; the renders it launches run the scripted engine. Signal handlers come back after."""
    monkeypatch.setenv("FLF2V_ENGINE_MODULE", SCRIPTED)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    conns: list[sqlite3.Connection] = []

    def make(say: Callable[[str], None] | None = None, **config: object) -> tuple[Worker, list[str]]:
        home = Home(qhome.resolve())
        conn = connect(home.db)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
        conns.append(conn)
        lines: list[str] = []

        def said(line: str) -> None:
            lines.append(line)
            if say is not None:
                say(line)

        return Worker(home, conn, Pool("cpu", ["cpu0"]), WorkerConfig(**config), said), lines  # type: ignore[arg-type]

    yield make
    for sig, handler in saved.items():
        signal.signal(sig, handler)
    for conn in conns:
        conn.close()


def test_a_worker_whose_stdout_is_a_full_disk_still_runs_its_job(qhome, stub_ckpt, qframes):
    """`flf2v demo` points the worker's stdout at a file on FLF2V_HOME's disk, the very disk that fills."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here (a device whose every write fails with ENOSPC)")
    job = submit(qhome, stub_ckpt, qframes, "steps=2 step_s=0.05")
    with open("/dev/full", "wb") as full:
        run = subprocess.run([sys.executable, "-m", "flf2v_tui.cli", "worker", "--once", "--cpu-slots", "1"],
                             stdout=full, stderr=subprocess.PIPE, text=True, env=env_for(qhome, SCRIPTED), cwd=REPO,
                             timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert job_row(qhome, job)["state"] == "succeeded"


def test_once_waits_out_a_lock_held_when_it_starts_and_runs_the_queued_job(qhome, stub_ckpt, qframes, tmp_path):
    """Registering, the worker's first write, finds the database locked past the busy timeout: a storage
    error, ridden out like any other, not the end of the worker (nor, for --once, a sign of an empty queue)."""
    job = submit(qhome, stub_ckpt, qframes, "steps=2 step_s=0.05")
    log, release = tmp_path / "worker.log", tmp_path / "release"
    with held_lock(qhome / "flf2v.db", release), open(log, "wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "flf2v_tui.cli", "worker", "--once", "--cpu-slots", "1"],
                                  stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                  env=env_for(qhome, SCRIPTED, FLF2V_BUSY_TIMEOUT_MS=BUSY_MS))  # fmt: skip
        try:
            wait_for(lambda: "locked too long" in log.read_text() or worker.poll() is not None, what="the lock")
        finally:
            release.touch()
    try:
        assert worker.wait(timeout=120) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
    said = log.read_text()
    assert "locked too long" in said and "storage works again" in said and "Traceback" not in said, said
    assert job_row(qhome, job)["state"] == "succeeded", said


def test_once_does_not_take_a_claim_that_failed_for_an_empty_queue(qhome, stub_ckpt, qframes, tmp_path, in_process):
    """Started up, the worker's first claim finds the database locked past the busy timeout: storage fails,
    claims wait for it, and --once must wait with them, not end with the job still queued."""
    job = submit(qhome, stub_ckpt, qframes, "steps=2 step_s=0.05")
    release = tmp_path / "release"
    worker, lines = in_process(say=lambda line: "locked too long" in line and release.touch(), once=True, quiet=True)
    worker.start_up()  # registered, and nothing to reconcile: the claim is the first write left
    with held_lock(qhome / "flf2v.db", release):
        assert worker.run() == 0
    said = "\n".join(lines)
    assert "locked too long" in said and "storage works again" in said, said
    assert job_row(qhome, job)["state"] == "succeeded", said


@pytest.mark.parametrize("lock", ["unlocked", "locked"])
def test_a_render_whose_start_was_not_recorded_is_said_truthfully_on_the_way_out(
    lock, qhome, stub_ckpt, qframes, tmp_path
):
    """The render starts while the database is locked, so its process group is not written. Stopping, the
    worker writes it as a last write; if that works the next worker re-attaches the render, and if not the
    worker says that the next one stops it (it cannot tell the render from a reused pid), and so it does."""
    gate, release = tmp_path / "finish", tmp_path / "release"
    job = submit(qhome, stub_ckpt, qframes, f"steps=3 step_s=0.05 gate={gate}", "--retries", "0")
    stopped = subprocess.run([sys.executable, "-m", "tests.functional.unrecorded_launch", str(qhome), str(release),
                              lock], capture_output=True, text=True, cwd=REPO,
                             env=env_for(qhome, SCRIPTED, FLF2V_BUSY_TIMEOUT_MS=BUSY_MS),
                             timeout=120)  # fmt: skip
    said = stopped.stdout
    assert stopped.returncode == 0, said + stopped.stderr
    assert attempt_processes(qhome), "the render outlives the worker"
    pgids = {os.getpgid(p.pid) for p in attempt_processes(qhome)}
    after = subprocess.Popen([sys.executable, "-m", "flf2v_tui.cli", "worker", "--once", "--cpu-slots", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                             env=env_for(qhome, SCRIPTED))  # fmt: skip
    try:
        if lock == "unlocked":  # the render ends only once re-attached (never while nobody watches it)
            wait_for(lambda: attempt_rows(qhome, job)[0]["worker_pid"] == after.pid, what="the re-attach")
            gate.touch()
        out, _ = after.communicate(timeout=120)
    finally:
        if after.poll() is None:
            after.kill()
    row, (attempt,) = job_row(qhome, job), attempt_rows(qhome, job)
    if lock == "locked":
        assert f"could not write that job {job}'s render started (locked too long" in said, said
        found = re.search(rf"job {job}: its render \(pgid (\d+)\) was never recorded as started, so the next", said)
        assert found and int(found[1]) in pgids, said
        assert "keeps running" not in said and "re-attached" not in out, said + out
        assert (row["state"], row["failure_class"]) == ("failed", "worker_lost"), out
    else:
        found = re.search(rf"job {job} keeps running \(pgid (\d+)\); the next flf2v worker re-attaches it", said)
        assert found and int(found[1]) in pgids, said
        assert "re-attached" in out, out
        assert (row["state"], attempt["step"]) == ("succeeded", 3), out
    assert not attempt_processes(qhome)
