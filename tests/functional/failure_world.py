"""Jobs that went wrong, for the job view's snapshots: a rank that raised (engine_error), a rank out of CUDA
memory twice (oom, retried once and then given up), and a render whose worker died under it (interrupted).
Each attempt is claimed and finished by the queue's own code and classified by the worker's own code, from
the files a failed torchrun leaves behind (events.jsonl, rank logs, torchrun's report and exit status), at
fixed times, so that the state, the failure class, the failing rank and the hint are the product's own."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from engine.telemetry import validate_event
from flf2v_tui.shim import EXIT_FILE, LOG_FILE
from flf2v_tui.worker.classify import classify
from flf2v_tui.worker.tracker import Tracker
from storage.attempts import finish, set_launched, write_progress
from storage.claim import Assignment, claim_next
from storage.db import connect, write_tx
from storage.jobs import insert_jobs
from storage.workers import WorkerIdentity
from tests.functional.tui_world import NOW, World, log_line, opening_events
from tests.unit.queue_support import make_spec

GIB = 1 << 30
TWO_GPUS = Assignment("cuda", ("0", "1"))
MASTER_PORT = 29517
# What torch says when a CUDA allocation fails (torch.OutOfMemoryError's message), for GPU 1 of two H100s.
CUDA_OOM = (
    "CUDA out of memory. Tried to allocate 2.25 GiB. GPU 1 has a total capacity of 79.19 GiB of which 1.06 GiB "
    "is free. Including non-PyTorch memory, this process has 78.12 GiB memory in use. Of the allocated memory "
    "74.50 GiB is allocated by PyTorch, and 2.61 GiB is reserved by PyTorch but unallocated."
)
DECODE_ERROR = "decoded 8 frames, expected 9: the VAE's temporal stride does not divide frame_num - 1"


@dataclass(frozen=True)
class Failure:
    """How far a render got (its stage and step) and, when a rank raised, which rank, what and its class;
    without an exception it simply stops there (its worker died)."""

    rank: int
    steps_done: int
    error_type: str = ""
    message: str = ""
    failure_class: str = ""
    stage: str = "denoise"


def _rank_log_lines(t0: float, end: float, failure: Failure) -> dict[int, list[str]]:
    lines: dict[int, list[str]] = {rank: [log_line(t0 + rank * 0.01, f"rank {rank} of 2 starting on cuda:{rank}")]
                                   for rank in (0, 1)}  # fmt: skip
    for i in range(1, failure.steps_done + 1):
        for rank in (0, 1):
            lines[rank].append(log_line(t0 + 45 + i * 6 + rank * 0.01, f"Sampling {i:>3}/50 6.00 s/it"))
    if failure.error_type:
        trace = (
            "Traceback (most recent call last):\n"
            '  File "/opt/flf2v/engine/generate.py", line 118, in run\n'
            f'  File "/opt/flf2v/engine/pipeline.py", line 204, in {failure.stage}\n'
            f"{failure.error_type}: {failure.message}\n"
        )
        text = f"Generation failed ({failure.failure_class}): {failure.error_type}: {failure.message}\n{trace}"
        lines[failure.rank].append(log_line(end, text.rstrip("\n"), "ERROR"))
    return lines


_TORCHRUN_REPORT = """\
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
{rule}
engine.generate FAILED
{dash}
Failures:
[1]:
  time      : {stopped_at}
  host      : box
  rank      : {other} (local_rank: {other})
  exitcode  : -15 (pid: 4102)  (SIGTERM)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 4102
{dash}
Root Cause (first observed failure):
[0]:
  time      : {failed_at}
  host      : box
  rank      : {rank} (local_rank: {rank})
  exitcode  : {code} (pid: 4101)
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
{rule}
"""


def _torchrun_report(end: float, failure: Failure, returncode: int) -> str:
    """torchrun's summary of a failed run: the raising rank is the root cause; the other was stopped."""

    def when(t: float) -> str:
        return time.strftime("%Y-%m-%d_%H:%M:%S", time.gmtime(t))

    return _TORCHRUN_REPORT.format(rule="=" * 60, dash="-" * 60, stopped_at=when(end + 1), failed_at=when(end),
                                   other=1 - failure.rank, rank=failure.rank, code=returncode)  # fmt: skip


def write_attempt_files(folder: Path, t0: float, end: float, failure: Failure) -> None:
    """What two CUDA ranks leave in their attempt folder up to `end`: events, logs, and (for a raise) the error
    event, torchrun's report and its exit status as the shim records it."""
    events = opening_events(t0, "cuda")
    for i in range(1, failure.steps_done + 1):
        t = t0 + 45 + i * 6
        eta = 6.0 * (50 - i)
        events.append({"kind": "step", "t": t, "rank": 0, "i": i, "n": 50, "seconds": 6.0, "eta_seconds": eta})
        for rank in (0, 1):
            used = (60 + i % 4 + 8 * rank) * GIB  # rank 1 holds more: it is the one that runs out
            events.append({"kind": "memory", "t": t, "rank": rank, "allocated": used, "reserved": used + GIB,
                           "peak": used + GIB // 2})  # fmt: skip
    if failure.stage != "denoise":
        events += [{"kind": "stage", "t": end - 2, "rank": 0, "name": "denoise", "phase": "end",
                    "seconds": end - 2 - (t0 + 45)},
                   {"kind": "stage", "t": end - 2, "rank": 0, "name": failure.stage, "phase": "begin"}]  # fmt: skip
    returncode = 1
    if failure.error_type:
        events.append({"kind": "error", "t": end, "rank": failure.rank, "type": failure.error_type,
                       "message": failure.message, "traceback": "", "class": failure.failure_class})  # fmt: skip
        (folder / LOG_FILE).write_text(_torchrun_report(end, failure, returncode))
        (folder / EXIT_FILE).write_text(json.dumps({"returncode": returncode}))
    for event in events:
        assert not validate_event({"v": 1, **event}), event  # the engine's own schema
    with open(folder / "events.jsonl", "w") as fh:
        fh.writelines(json.dumps({"v": 1, **e}) + "\n" for e in events)
    for rank, text in _rank_log_lines(t0, end, failure).items():
        (folder / f"rank{rank}.log").write_text("".join(text))


def _run_attempt(conn, world: World, job_id: int, me: WorkerIdentity, t0: float, failure: Failure) -> str | None:
    """Claim the job at t0, leave the attempt's files, and (unless its worker died) finish it as the worker
    does: the tracker's progress, then the outcome the worker's classifier reads from the files."""
    claimed = claim_next(conn, me, lambda _n: TWO_GPUS, lambda j, n: str(world.home.attempt_dir(j, n)),
                         only_jobs=[job_id], now=t0)  # fmt: skip
    assert claimed is not None, f"job {job_id} could not be claimed"
    folder = world.home.attempt_dir(job_id, claimed.number)
    folder.mkdir(parents=True, exist_ok=True)
    save_file = str(world.home.videos / f"job{job_id}.mp4")
    set_launched(conn, claimed.attempt_id, me.pid, me.started, MASTER_PORT, save_file)
    end = t0 + 45 + failure.steps_done * 6 + (2 if failure.stage != "denoise" else 1)
    write_attempt_files(folder, t0, end, failure)
    tracker = Tracker(folder / "events.jsonl", folder)
    tracker.poll(end)
    write_progress(conn, claimed.attempt_id, tracker.progress())
    if not failure.error_type:
        return None  # its worker died: nobody finishes the attempt
    outcome = classify(1, tracker, folder, save_file=save_file)
    assert (outcome.failure_class, outcome.failing_rank) == (failure.failure_class, failure.rank), outcome
    return finish(conn, claimed.attempt_id, outcome, now=end + 1)


def dead_worker() -> WorkerIdentity:
    """A worker process that has died: a real process, started and then killed, named by pid and start time."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = psutil.Process(proc.pid).create_time()
    proc.kill()
    proc.wait()
    return WorkerIdentity(socket.gethostname(), proc.pid, started)


def add_failures(world: World) -> dict[str, int]:
    """Three more jobs, failed (engine_error), failed (oom) and interrupted; returns their ids by that name."""
    conn = connect(world.home.db)
    kinds = {
        "engine_error": ("a lighthouse beam sweeps over a stormy sea", ()),
        "oom": ("a hot air balloon rises over a valley at sunrise", ("oom",)),
        "interrupted": ("a train crosses a snowy bridge at night", ()),
    }
    ids: dict[str, int] = {}
    for n, (kind, (prompt, retry_on)) in enumerate(kinds.items()):
        spec = make_spec(world.frames, prompt=prompt, labels=["demo"], gpus=2, sample_steps=50, base_seed=200 + n,
                         ckpt_dir=str(world.ckpt), retry_on=retry_on, max_retries=1)  # fmt: skip
        ids[kind] = insert_jobs(conn, world.home, [spec])[0]
        with write_tx(conn):
            conn.execute("UPDATE jobs SET created_at = ?, queued_at = ? WHERE id = ?",
                         (NOW - 1800 + n * 60, NOW - 1800 + n * 60, ids[kind]))  # fmt: skip
    me = WorkerIdentity.current()  # the live worker of the world
    raised = Failure(rank=0, steps_done=50, error_type="RuntimeError", message=DECODE_ERROR,
                     failure_class="engine_error", stage="decode")  # fmt: skip
    assert _run_attempt(conn, world, ids["engine_error"], me, NOW - 1500, raised) == "failed"
    oom = Failure(rank=1, steps_done=3, error_type="OutOfMemoryError", message=CUDA_OOM, failure_class="oom")
    assert _run_attempt(conn, world, ids["oom"], me, NOW - 1200, oom) == "queued"  # retried once...
    assert _run_attempt(conn, world, ids["oom"], me, NOW - 1000, oom) == "failed"  # ...and then given up
    _run_attempt(conn, world, ids["interrupted"], dead_worker(), NOW - 700, Failure(rank=0, steps_done=30))
    conn.close()
    return ids


# torchrun's own words when its rendezvous port is taken: the ranks never start, so they write nothing.
PORT_TAKEN = (
    "torch.distributed.DistNetworkError: The server socket has failed to listen on any local network address. "
    f"port: {MASTER_PORT}, useIPv6: False, code: -98, name: EADDRINUSE, message: address already in use\n"
)


def add_launch_failure(world: World) -> int:
    """A job whose render failed before any rank wrote a line (torchrun could not listen on its port): empty
    rank logs, no events, only torchrun's output and exit status, classified and finished by the queue's code."""
    conn = connect(world.home.db)
    spec = make_spec(world.frames, prompt="a kite string snaps in the wind", labels=["demo"], gpus=2,
                     sample_steps=50, base_seed=300, ckpt_dir=str(world.ckpt), retry_on=(), max_retries=0)  # fmt: skip
    job_id = insert_jobs(conn, world.home, [spec])[0]
    me, t0 = WorkerIdentity.current(), NOW - 400
    claimed = claim_next(conn, me, lambda _n: TWO_GPUS, lambda j, n: str(world.home.attempt_dir(j, n)),
                         only_jobs=[job_id], now=t0)  # fmt: skip
    assert claimed is not None
    folder = world.home.attempt_dir(job_id, claimed.number)
    folder.mkdir(parents=True, exist_ok=True)
    save_file = str(world.home.videos / f"job{job_id}.mp4")
    set_launched(conn, claimed.attempt_id, me.pid, me.started, MASTER_PORT, save_file)
    for rank in (0, 1):
        (folder / f"rank{rank}.log").write_text("")
    (folder / "events.jsonl").write_text("")
    (folder / LOG_FILE).write_text(PORT_TAKEN)
    (folder / EXIT_FILE).write_text(json.dumps({"returncode": 1}))
    tracker = Tracker(folder / "events.jsonl", folder)
    tracker.poll(t0 + 2)
    assert finish(conn, claimed.attempt_id, classify(1, tracker, folder, save_file=save_file), now=t0 + 2) == "failed"
    conn.close()
    return job_id
