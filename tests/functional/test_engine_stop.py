"""A render stopped by a signal (a user's cancel) leaves one line in its rank log naming the signal and the
step, not a traceback; its `error` event and exit code stay what the worker acts on."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from engine.telemetry import read_events
from tests.functional.engine_helpers import REPO, draw_frame, engine_command, tiny_args


def test_a_stop_by_signal_is_one_log_line_with_the_step(tiny_official_ckpt, tmp_path):
    first = draw_frame(tmp_path / "first.png", (64, 64), 0.8, 0)
    last = draw_frame(tmp_path / "last.png", (64, 64), 0.2, 60)
    events, logs = tmp_path / "events.jsonl", tmp_path / "logs"
    args = tiny_args(tiny_official_ckpt, first, last, tmp_path / "out.mp4", sample_steps="400",
                     sample_solver="dpm++", events=str(events), log_dir=str(logs))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(engine_command(args), env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not any(e["kind"] == "step" and e["i"] >= 2 for e in read_events(events)):
            assert proc.poll() is None and time.monotonic() < deadline, "the render never reached step 2"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (logs / "rank0.log").read_text()
    assert "Traceback" not in log and "engine.failures.Killed" not in log, log
    stopped = [line for line in log.splitlines() if "stopped by" in line]
    assert len(stopped) == 1, log
    step = max(e["i"] for e in read_events(events) if e["kind"] == "step")
    assert stopped[0].endswith(f"Render stopped by SIGTERM in denoise after step {step}/400 (a cancel or a stop, "
                               "not a crash)"), stopped  # fmt: skip
    (error,) = [e for e in read_events(events) if e["kind"] == "error"]
    assert (error["class"], error["type"]) == ("killed", "Killed") and "Traceback" in error["traceback"]
