"""`flf2v cancel` of a render no worker watches: who acts, the grace period, SIGKILL, and one record only.

A stand-in render is a real process group (a Python process in its own session, tagged like a rank), so the
signals, the grace period and the search for leftovers are the real ones; the database is real too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import psutil

from flf2v_tui.worker.cancel import running_attempt, stop_unwatched, supervisor
from flf2v_tui.worker.procs import ATTEMPT_TAG, attempt_tag
from storage import ops
from storage.attempts import hand_off, set_launched
from storage.claim import Assignment, claim_next
from storage.jobs import get_job
from storage.workers import WorkerIdentity, register

GONE = WorkerIdentity(socket.gethostname(), 1, 1.0)  # pid 1 with another start time: a worker that is gone
OBEYS = "import time; print('ready', flush=True); time.sleep(60)"
IGNORES = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
)


def claimed(conn, home, job_id: int, owner: WorkerIdentity = GONE) -> dict:
    got = claim_next(
        conn, owner, lambda n: Assignment("cpu", ("cpu0",)), lambda j, n: str(home.attempt_dir(j, n)),
        only_jobs={job_id},
    )  # fmt: skip
    assert got is not None
    home.attempt_dir(job_id, got.number).mkdir(parents=True, exist_ok=True)
    return {"id": got.attempt_id}


def launch(conn, home, attempt_id: int, code: str) -> subprocess.Popen:
    """A render's group leader that was left running by a stopped worker."""
    env = {**os.environ, ATTEMPT_TAG: attempt_tag(str(home.root), attempt_id)}
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, env=env, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    set_launched(conn, attempt_id, proc.pid, psutil.Process(proc.pid).create_time(), None, "/nowhere.mp4")
    return proc


def cancel(conn, home, job_id: int, grace_s: float, said: list[str], waits: list[tuple[float, int]]) -> str | None:
    ops.cancel(conn, job_id)
    attempt = running_attempt(conn, job_id)
    assert attempt is not None and supervisor(conn, attempt) is None
    (text,) = stop_unwatched(conn, str(home.root), [attempt], grace_s, said.append, lambda *a: waits.append(a))
    return text


def test_who_acts_on_the_flag(conn, home, queue):
    job_id = queue()
    claimed(conn, home, job_id)
    assert supervisor(conn, running_attempt(conn, job_id)) is None
    conn.execute("UPDATE attempts SET worker_host = 'elsewhere' WHERE job_id = ?", (job_id,))
    assert "elsewhere" in supervisor(conn, running_attempt(conn, job_id))
    me = WorkerIdentity.current()
    conn.execute(
        "UPDATE attempts SET worker_host = ?, worker_pid = ?, worker_started = ? WHERE job_id = ?",
        (me.host, me.pid, me.started, job_id),
    )
    assert "another flf2v cancel" in supervisor(conn, running_attempt(conn, job_id))
    register(conn, me, {"device": "cpu", "slots": ["cpu0"]})
    assert supervisor(conn, running_attempt(conn, job_id)) == f"the worker (pid {me.pid})"


def test_a_render_that_obeys_sigterm_is_cancelled_within_the_grace(conn, home, queue):
    job_id = queue()
    attempt_id = claimed(conn, home, job_id)["id"]
    proc = launch(conn, home, attempt_id, OBEYS)
    hand_off(conn, [attempt_id])  # the worker was stopped with SIGTERM and left it running
    said: list[str] = []
    started = time.monotonic()
    text = cancel(conn, home, job_id, 30, said, [])
    assert time.monotonic() - started < 10 and proc.wait(timeout=5) == -15
    assert text is not None and f"job {job_id} cancelled" in text
    assert "SIGTERM" in said[0] and not any("SIGKILL sent" in s for s in said)
    job = get_job(conn, job_id)
    attempt = conn.execute("SELECT * FROM attempts WHERE id = ?", (attempt_id,)).fetchone()
    assert (job["state"], attempt["state"], job["cancel_requested"]) == ("cancelled", "cancelled", 0)
    # The CLI took the attempt over before acting: it is recorded under this process, never under a worker.
    assert attempt["worker_pid"] == os.getpid()


def test_a_render_that_ignores_sigterm_is_killed_after_the_grace(conn, home, queue):
    job_id = queue()
    attempt_id = claimed(conn, home, job_id)["id"]
    proc = launch(conn, home, attempt_id, IGNORES)
    said: list[str] = []
    waits: list[tuple[float, int]] = []
    started = time.monotonic()
    text = cancel(conn, home, job_id, 1.0, said, waits)
    assert 1.0 <= time.monotonic() - started < 8
    proc.wait(timeout=5)  # gone (kill_all reaped it, so its status is not ours to read)
    assert any("SIGKILL sent to 1 process" in s for s in said), said
    assert len(waits) >= 3 and waits[0][1] == 1 and waits[0][0] > waits[-1][0]  # a countdown, with a count
    assert text is not None and "cancelled" in text and get_job(conn, job_id)["state"] == "cancelled"


def test_a_worker_that_took_over_first_is_left_to_act(conn, home, queue):
    job_id = queue()
    attempt_id = claimed(conn, home, job_id)["id"]
    ops.cancel(conn, job_id)
    attempt = running_attempt(conn, job_id)
    # Between the CLI's look at the owner and its take-over, a new worker (a live process) re-attached it.
    worker = subprocess.Popen([sys.executable, "-c", OBEYS], stdout=subprocess.PIPE)
    try:
        assert worker.stdout is not None and worker.stdout.readline() == b"ready\n"
        conn.execute(
            "UPDATE attempts SET worker_host = ?, worker_pid = ?, worker_started = ? WHERE id = ?",
            (socket.gethostname(), worker.pid, psutil.Process(worker.pid).create_time(), attempt_id),
        )
        assert stop_unwatched(conn, str(home.root), [attempt], 30, print, lambda *a: None) == [None]
    finally:
        worker.kill()
        worker.wait()
    assert get_job(conn, job_id)["state"] == "running"  # unrecorded: the worker acts on the flag


def test_an_attempt_recorded_meanwhile_is_not_recorded_twice(conn, home, queue, monkeypatch):
    job_id = queue()
    claimed(conn, home, job_id)  # claimed but never launched: nothing to signal
    ops.cancel(conn, job_id)
    attempt = running_attempt(conn, job_id)
    from flf2v_tui.worker import cancel as module
    from storage.attempts import Outcome, finish

    real = module.settle_unwatched

    def worker_first(conn, home_root, row):
        # A worker's reconciliation records the end just before the CLI does.
        assert finish(conn, row["id"], Outcome("interrupted", failure_class="worker_lost")) == "cancelled"
        return real(conn, home_root, row)

    monkeypatch.setattr(module, "settle_unwatched", worker_first)
    (text,) = stop_unwatched(conn, str(home.root), [attempt], 30, print, lambda *a: None)
    assert text is not None and "already recorded" in text
    rows = conn.execute("SELECT state FROM attempts WHERE job_id = ?", (job_id,)).fetchall()
    assert [r[0] for r in rows] == ["interrupted"]


def test_the_tui_stops_an_unwatched_render_in_a_process_of_its_own(conn, home, queue):
    from flf2v_tui.tui.screens.actions import cancel_job

    job_id = queue()
    attempt_id = claimed(conn, home, job_id)["id"]
    proc = launch(conn, home, attempt_id, OBEYS)
    hand_off(conn, [attempt_id])
    text = cancel_job(conn, home, job_id)
    assert "no worker watches its render" in text and "cancel.log" in text
    assert proc.wait(timeout=30) == -15
    deadline = time.monotonic() + 30
    while get_job(conn, job_id)["state"] != "cancelled" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert get_job(conn, job_id)["state"] == "cancelled"
    assert f"job {job_id} cancelled" in (home.job_dir(job_id) / "cancel.log").read_text()


def test_the_tui_leaves_a_watched_render_to_its_worker(conn, home, queue):
    from flf2v_tui.tui.screens.actions import cancel_job

    job_id = queue()
    me = WorkerIdentity.current()
    register(conn, me, {"device": "cpu", "slots": ["cpu0"]})
    claimed(conn, home, job_id, owner=me)
    assert "cancel requested" in cancel_job(conn, home, job_id)
    assert not (home.job_dir(job_id) / "cancel.log").exists()
    assert get_job(conn, job_id)["cancel_requested"] == 1


def test_several_unwatched_renders_share_one_grace_period(conn, home, queue, monkeypatch):
    jobs = [queue(), queue()]
    procs = []
    for job_id in jobs:
        attempt_id = claimed(conn, home, job_id)["id"]
        procs.append(launch(conn, home, attempt_id, IGNORES))
    attempts = []
    for job_id in jobs:
        ops.cancel(conn, job_id)
        attempts.append(running_attempt(conn, job_id))
    said: list[str] = []
    passes = [0]  # passes over the process table, each reading every process's environment
    process_iter = psutil.process_iter

    def counted_iter(*args, **kwargs):
        passes[0] += 1
        return process_iter(*args, **kwargs)

    monkeypatch.setattr(psutil, "process_iter", counted_iter)
    waits: list[tuple[int, int]] = []  # (passes so far, processes left) at each countdown line
    started = time.monotonic()
    texts = stop_unwatched(conn, str(home.root), attempts, 1.5, said.append, lambda _, n: waits.append((passes[0], n)))
    took = time.monotonic() - started
    assert 1.5 <= took < 3.0, took  # one grace period for both, not one after the other
    assert waits and {n for _, n in waits} == {2}  # both leaders, counted together
    new_passes = [b - a for (a, _), (b, _) in zip([(0, 0), *waits], waits, strict=False)]
    assert set(new_passes) <= {0, 1}, new_passes  # one pass per count, not one per render
    assert [s for s in said if "SIGTERM" in s][1] == said[1]  # both signalled before any waiting
    for proc in procs:
        proc.wait(timeout=5)
    assert all(t is not None and "cancelled" in t for t in texts), texts
    assert [get_job(conn, j)["state"] for j in jobs] == ["cancelled", "cancelled"]


def test_the_countdown_line_is_cleared_before_a_message(monkeypatch, capsys):
    import io

    from flf2v_tui.commands.jobs import _Countdown

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    countdown = _Countdown([3, 4])
    countdown(12.0, 2)
    assert err.getvalue().endswith("job 3, 4: waiting for 2 process(es) to stop; SIGKILL in 12 s")
    countdown.say("job 3: grace period over")
    assert err.getvalue().endswith("SIGKILL in 12 s\r\x1b[K")
    assert capsys.readouterr().out == "job 3: grace period over\n"
