"""Telemetry and log lines of one rank.

Rank 0 writes the job's events; every rank writes its own memory events and, if it fails, its error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from engine.runtime import Runtime
from engine.telemetry import EventWriter

log = logging.getLogger("flf2v.engine")


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class Reporter:
    def __init__(self, runtime: Runtime, events_path: str | None) -> None:
        self.runtime = runtime
        self.events = EventWriter(events_path, runtime.rank)
        self.stage_seconds: dict[str, float] = {}
        self._step_seconds: list[float] = []
        # The main thread and the peer watch may both report the failure that ends the run; one event is kept.
        self._error_lock = threading.Lock()
        self.error_reported = False
        # Where the run is, for the one line a stop by signal leaves in the log (engine.failures.log_line).
        self.current_stage: str | None = None
        self.last_step: tuple[int, int] | None = None

    def emit(self, kind: str, **fields: Any) -> None:
        """Job-level events come from rank 0 only."""
        if self.runtime.is_main:
            self.events.emit(kind, **fields)

    def memory(self, **context: Any) -> None:
        self.events.emit("memory", **self.runtime.memory(), **context)

    def error(self, exc: BaseException, failure: str, trace: str) -> bool:
        """Write this rank's `error` event, unless one was written already; True if this call wrote it.

        The write happens under the lock: a second caller (the peer watch about to end the process with
        os._exit) returns only once the first caller's event is on disk, never while it is half written."""
        with self._error_lock:
            if self.error_reported:
                return False
            self.error_reported = True
            self.events.emit("error", type=type(exc).__name__, message=str(exc), traceback=trace, **{"class": failure})
            return True

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.emit("stage", name=name, phase="begin")
        # The figures at the start are the baseline against which the stage's own growth is read; their peak is
        # the highest since the previous stage began. The peak then starts again, so that the end event's peak
        # is this stage's own.
        self.memory(stage=name, phase="begin")
        self.runtime.reset_peak()
        started = time.perf_counter()
        self.current_stage = name
        yield  # an exception leaves current_stage naming the stage it ended
        self.current_stage = None
        seconds = time.perf_counter() - started
        self.stage_seconds[name] = self.stage_seconds.get(name, 0.0) + seconds
        self.emit("stage", name=name, phase="end", seconds=round(seconds, 4))
        self.memory(stage=name, phase="end")
        log.info(f"Stage {name} took {seconds:.2f} s")

    def step(self, i: int, n: int, seconds: float) -> None:
        self.last_step = (i, n)
        self._step_seconds.append(seconds)
        # The first step includes one-off warm-up costs, so it is left out of the estimate when possible.
        recent = self._step_seconds[1:] or self._step_seconds
        eta = sum(recent) / len(recent) * (n - i)
        self.emit("step", i=i, n=n, seconds=round(seconds, 4), eta_seconds=round(eta, 3))
        self.memory(step=i)
        width = 30
        filled = int(width * i / n)
        bar = "#" * filled + "-" * (width - filled)
        log.info(f"Sampling {i:>3}/{n} [{bar}] {seconds:.2f} s/it, ETA {format_duration(eta)}")

    def position(self) -> str:
        """Where the run is now, e.g. "in denoise after step 12/50"; "" before the first stage."""
        where = f"in {self.current_stage}" if self.current_stage else ""
        if self.last_step is not None and self.current_stage in (None, "denoise"):
            i, n = self.last_step
            where += f" after step {i}/{n}"
        return where.strip()

    def close(self) -> None:
        self.events.close()
