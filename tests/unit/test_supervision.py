"""Reading an attempt: events into progress, torchrun's report and events into a failure class, logs merged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from engine.telemetry import EventWriter
from flf2v_tui.logs import Follower, merged
from flf2v_tui.term import inert
from flf2v_tui.worker.classify import classify, read_exit, reported_failures
from flf2v_tui.worker.procs import leader_alive
from flf2v_tui.worker.tracker import Tracker

# What torchrun 2.x prints when rank 1 is killed with SIGKILL and rank 0 is stopped by the agent.
TORCHRUN_REPORT = """\
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
engine.generate FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2025-01-01_00:00:02
  host      : box
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 101)  (SIGTERM)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 101
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2025-01-01_00:00:01
  host      : box
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 102)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 102
============================================================
"""

# The same death when rank 0's peer watch saw it and exited within the same second: torchrun ties by rank.
PEER_FIRST_REPORT = """\
============================================================
engine.generate FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2025-01-01_00:00:01
  host      : box
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 101)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 101
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2025-01-01_00:00:01
  host      : box
  rank      : 0 (local_rank: 0)
  exitcode  : 1 (pid: 102)
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
============================================================
"""


def attempt(tmp_path, events: list[tuple[int, str, dict]], returncode: int | None, report: str = ""):
    for rank, kind, fields in events:
        EventWriter(tmp_path / "events.jsonl", rank).emit(kind, **fields)
    (tmp_path / "torchrun.log").write_text(report)
    if returncode is not None:
        (tmp_path / "exit.json").write_text(json.dumps({"returncode": returncode}))
    tracker = Tracker(tmp_path / "events.jsonl", tmp_path)
    tracker.poll(time.time())
    return tracker


def test_tracker_follows_stages_steps_and_memory(tmp_path):
    tracker = attempt(tmp_path, [
        (0, "start", {"task": "flf2v-tiny", "world_size": 2, "device": "cpu", "args": {}, "engine_version": "1",
                      "attention": "cudnn (_native_cudnn)"}),
        (0, "stage", {"name": "load_vae", "phase": "begin"}),
        (0, "stage", {"name": "load_vae", "phase": "end", "seconds": 0.5}),
        (0, "stage", {"name": "denoise", "phase": "begin"}),
        (0, "step", {"i": 1, "n": 4, "seconds": 3.0, "eta_seconds": 3.0}),
        (0, "step", {"i": 2, "n": 4, "seconds": 1.0, "eta_seconds": 2.0}),
        (0, "step", {"i": 3, "n": 4, "seconds": 2.0, "eta_seconds": 1.5}),
        (0, "memory", {"rss": 100, "peak_rss": 150}),
        (1, "memory", {"allocated": 5, "reserved": 8, "peak": 9}),
        (1, "memory", {"allocated": 4, "reserved": 8, "peak": 7}),
        (0, "future_kind", {"anything": True}),
    ], None)  # fmt: skip
    p = tracker.progress()
    assert (p["stage"], p["step"], p["steps_total"], p["eta_seconds"]) == ("denoise", 3, 4, 1.5)
    assert p["sec_per_it"] == 1.5  # the warm-up step is left out
    assert p["stage_seconds"] == {"load_vae": 0.5}
    assert p["peak_memory"] == {"0": 150, "1": 9}
    assert (p["engine_version"], p["attention"]) == ("1", "cudnn (_native_cudnn)")


def test_killed_rank_is_the_failing_rank(tmp_path):
    tracker = attempt(tmp_path, [(0, "error", {"type": "Killed", "message": "stopped by signal SIGTERM",
                                                "traceback": "", "class": "killed"})], 1, TORCHRUN_REPORT)  # fmt: skip
    root = reported_failures(tmp_path)[0]
    assert (root.rank, root.exitcode) == (1, -9)
    out = classify(read_exit(tmp_path), tracker, tmp_path)
    assert (out.state, out.failure_class, out.failing_rank, out.exit_code) == ("failed", "killed", 1, -9)
    assert "SIGKILL" in out.message


def test_a_silent_death_beats_the_peer_torchrun_names_first(tmp_path):
    lost = "rank 1 (pid 101 on box) is gone: it exited or was killed while rank 0 still needed it"
    tracker = attempt(tmp_path, [(0, "error", {"type": "PeerLostError", "message": lost, "traceback": "",
                                                "class": "comm"})], 1, PEER_FIRST_REPORT)  # fmt: skip
    root, other = reported_failures(tmp_path)
    assert (root.rank, root.exitcode, other.rank, other.exitcode) == (0, 1, 1, -9)
    out = classify(read_exit(tmp_path), tracker, tmp_path)
    assert (out.failure_class, out.failing_rank, out.exit_code) == ("killed", 1, -9)
    assert "rank 1 was killed by SIGKILL" in out.message


def test_a_primary_error_beats_echoes_from_other_ranks(tmp_path):
    tracker = attempt(tmp_path, [
        (1, "error", {"type": "OutOfMemoryError", "message": "CUDA out of memory", "traceback": "", "class": "oom"}),
        (0, "error", {"type": "DistError", "message": "peer closed", "traceback": "", "class": "comm"}),
    ], 1)  # fmt: skip
    out = classify(1, tracker, tmp_path)
    assert (out.failure_class, out.failing_rank, out.message) == ("oom", 1, "CUDA out of memory")


def test_logs_decide_when_no_event_was_written(tmp_path):
    for name, text, expected in (
        ("comm", "RuntimeError: [gloo] Connection closed by peer\n", "comm"),
        ("oom", "torch.OutOfMemoryError: CUDA out of memory\n", "oom"),
        ("other", "ValueError: boom\n", "engine_error"),
    ):
        folder = tmp_path / name
        folder.mkdir()
        assert classify(1, attempt(folder, [], 1, text), folder).failure_class == expected


def test_success_cancel_stall_and_lost(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    tracker = attempt(tmp_path, [(0, "done", {"output": str(video), "frames": 9, "fps": 16, "seconds": 1.0})], 0)
    assert classify(0, tracker, tmp_path, cancelled=True).state == "succeeded"  # the cancel came too late
    video.unlink()
    assert classify(0, tracker, tmp_path).failure_class == "engine_error"
    assert classify(143, tracker, tmp_path, cancelled=True).state == "cancelled"
    stalled = classify(1, tracker, tmp_path, stalled="stalled: no progress")
    assert (stalled.failure_class, stalled.message) == ("engine_error", "stalled: no progress")
    lost = classify(None, tracker, tmp_path)
    assert (lost.state, lost.failure_class) == ("interrupted", "worker_lost")


def test_a_stall_before_the_start_event_is_classed_by_the_attempts_rank_count(tmp_path):
    """A busy machine can stall a render before torchrun's ranks write their start event (world size unknown):
    two ranks that never got going are a communication failure, one rank an engine error."""
    tracker = attempt(tmp_path, [], 1)
    assert tracker.start is None
    assert classify(-15, tracker, tmp_path, stalled="stalled", ranks=2).failure_class == "comm"
    assert classify(-15, tracker, tmp_path, stalled="stalled").failure_class == "engine_error"


def test_a_reused_pid_is_not_the_leader():
    me = os.getpid()
    import psutil

    started = psutil.Process(me).create_time()
    assert leader_alive(me, started)
    assert not leader_alive(me, started - 100)  # same pid, other start time: another process
    assert not leader_alive(None, started)


def test_shim_records_the_exit_code(tmp_path):
    code = "import sys; print('hello'); sys.exit(3)"
    subprocess.run([sys.executable, "-m", "flf2v_tui.shim", str(tmp_path), "--", sys.executable, "-c", code],
                   check=True, timeout=60)  # fmt: skip
    assert read_exit(tmp_path) == 3
    assert "hello" in (tmp_path / "torchrun.log").read_text()
    assert json.loads((tmp_path / "shim.json").read_text())["subreaper"] is True


def test_merged_logs_are_in_time_order_with_tracebacks_kept(tmp_path):
    (tmp_path / "rank0.log").write_text("[2025-01-01 00:00:01,000] INFO: a\n[2025-01-01 00:00:03,000] INFO: d\n")
    (tmp_path / "rank1.log").write_text(
        "[2025-01-01 00:00:02,000] ERROR: b\nTraceback (most recent call last):\n[2025-01-01 00:00:04,000] INFO: e\n"
    )
    lines = list(merged({0: tmp_path / "rank0.log", 1: tmp_path / "rank1.log"}))
    assert [line.split()[-1] for line in lines] == ["a", "b", "last):", "d", "e"]
    assert lines[2].startswith("[r1] Traceback")


def test_follower_handles_partial_lines(tmp_path):
    path = tmp_path / "rank0.log"
    path.write_text("[2025-01-01 00:00:01,000] INFO: one\npart")
    f = Follower({0: path}, prefix=False)
    assert f.poll() == ["[2025-01-01 00:00:01,000] INFO: one\n"]
    with open(path, "a") as fh:
        fh.write("ial\n")
    assert f.poll() == ["partial\n"]
    with open(path, "a") as fh:
        fh.write("cut")
    assert f.poll() == [] and f.flush() == ["cut\n"]


def test_escape_sequences_are_made_inert():
    evil = "ok \x1b[2J\x1b[H\x1b]0;pwned\x07\x1b]52;c;ZXZpbA==\x07 done\r\x07"
    assert inert(evil) == "ok  done"


def test_a_signal_stop_leaves_one_line_of_torchrun_not_its_traceback(tmp_path):
    """A real torchrun under the real shim, its group sent SIGTERM as a cancel does: torchrun.log keeps what
    the agent said and the rank printed, and ends on one line naming the signal instead of a traceback."""
    script = tmp_path / "sleeper.py"
    script.write_text("import signal, sys, time\n"
                      "signal.signal(signal.SIGTERM, lambda *_: (print('rank stopped', flush=True), sys.exit(143)))\n"
                      "print('rank started', flush=True)\ntime.sleep(120)\n")  # fmt: skip
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", "--master-port", "0"]
    shim = subprocess.Popen([sys.executable, "-m", "flf2v_tui.shim", str(tmp_path), "--", *torchrun, str(script)],
                            start_new_session=True)  # fmt: skip
    log = tmp_path / "torchrun.log"
    deadline = time.monotonic() + 120
    while "rank started" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(shim.pid, 15)
    assert shim.wait(timeout=60) == 0
    text = log.read_text()
    assert "Traceback" not in text and "SignalException" not in text, text
    assert "rank stopped" in text and "death signal" in text, text  # what came before is kept
    assert text.endswith("flf2v shim: torchrun stopped by SIGTERM (a cancel or a stop); its traceback is left out\n")


def test_a_traceback_that_is_not_a_signal_stop_is_kept_whole(tmp_path):
    from flf2v_tui.shim import tidy_signal_traceback

    crash = 'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\nValueError: got signal: 15\n'
    (tmp_path / "torchrun.log").write_text("started\n" + crash)
    tidy_signal_traceback(tmp_path / "torchrun.log")
    assert (tmp_path / "torchrun.log").read_text() == "started\n" + crash


def test_a_re_attached_render_counts_its_ranks_on_every_node(tmp_path):
    """The attempt row's nproc is per node: a re-attached 2-node render has as many ranks as a launched one."""
    from flf2v_tui.worker.running import Running

    row = {"id": 7, "job_id": 3, "number": 1, "log_dir": str(tmp_path), "gpus": "slurm0", "device": "cuda",
           "pgid": None, "pgid_started": None, "master_port": 29500, "started_at": 0.0, "save_file": "",
           "nproc": 1, "nodes": 2}  # fmt: skip
    assert Running.adopted(row, "tag").ranks == 2
    assert Running.adopted({**row, "nproc": 4, "nodes": 1}, "tag").ranks == 4
