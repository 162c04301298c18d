"""The worker writes progress to the database at a bounded rate, however fast a render emits events.

Two attempts emit 400 steps a second each for 5 s while the worker ticks 100 times a second; every write to
the real database is counted with sqlite3's trace callback. The clock is simulated, so the run takes no 5 s
and does not depend on how loaded the machine is.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from types import SimpleNamespace

import psutil

from engine.telemetry import EventWriter
from flf2v_tui.worker import loop
from flf2v_tui.worker.loop import Worker, WorkerConfig
from flf2v_tui.worker.pool import Pool
from storage import attempts as store
from storage.attempts import set_launched
from storage.claim import Assignment, claim_next

SECONDS, TICK_S, STEPS_PER_TICK = 5.0, 0.01, 4
MAX_PER_S = 2  # the design: "at most a few times a second"; the worker promises twice
_WRITE = re.compile(r"UPDATE attempts SET stage = .* WHERE id = (\d+) AND state = 'running'", re.S)


class Clock(SimpleNamespace):
    """The loop's `time` module with a clock that the test moves."""

    now: float

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str):
        return getattr(time, name)


def test_progress_is_written_at_most_twice_a_second_per_attempt(conn, home, queue, monkeypatch):
    clock = Clock(now=1_000_000.0)
    monkeypatch.setattr(loop, "time", clock)
    worker = Worker(home, conn, Pool("cpu", ["cpu0", "cpu1"]), WorkerConfig(quiet=True), lambda _: None)
    me = psutil.Process(os.getpid())
    writers = {}
    for slot in ("cpu0", "cpu1"):
        job_id = queue()
        got = claim_next(conn, worker.me, lambda n, s=slot: Assignment("cpu", (s,)),
                         lambda j, n: str(home.attempt_dir(j, n)), only_jobs={job_id})  # fmt: skip
        assert got is not None
        home.attempt_dir(job_id, got.number).mkdir(parents=True)
        # Its group leader "is" this test process, so the worker sees a live render for the whole run.
        set_launched(conn, got.attempt_id, me.pid, me.create_time(), None, "/nowhere.mp4")
        row = next(a for a in store.running_attempts(conn) if a["id"] == got.attempt_id)
        worker.adopt(row)
        writers[got.attempt_id] = EventWriter(home.attempt_dir(job_id, got.number) / "events.jsonl", 0)
    writes: dict[int, list[float]] = {a: [] for a in writers}

    def traced(sql: str) -> None:
        found = _WRITE.search(sql)
        if found:
            writes[int(found.group(1))].append(clock.now)

    conn.set_trace_callback(traced)
    steps = int(SECONDS / TICK_S) * STEPS_PER_TICK
    step = 0
    for _ in range(int(SECONDS / TICK_S)):
        for writer in writers.values():
            for i in range(step + 1, step + STEPS_PER_TICK + 1):
                writer.emit("step", i=i, n=steps, seconds=TICK_S / STEPS_PER_TICK, eta_seconds=1.0)
                writer.emit("memory", rss=1 << 30, peak_rss=1 << 30)
        step += STEPS_PER_TICK
        clock.now += TICK_S
        worker.tick()
    conn.set_trace_callback(None)

    assert step / SECONDS == 400  # each attempt emitted 400 steps a second
    for attempt_id, times in writes.items():
        # At most MAX_PER_S writes a second, and never two closer than 1 / MAX_PER_S apart.
        assert 0 < len(times) <= SECONDS * MAX_PER_S + 1, (attempt_id, len(times))
        assert min(b - a for a, b in itertools.pairwise(times)) >= 1 / MAX_PER_S - 1e-6
        assert len(times) >= SECONDS * MAX_PER_S - 1  # bounded, not starved
        latest = conn.execute("SELECT step FROM attempts WHERE id = ?", (attempt_id,)).fetchone()[0]
        assert latest >= steps - 400 / MAX_PER_S  # what the database shows is at most half a second old
