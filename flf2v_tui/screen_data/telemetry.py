"""A job view's live detail from its attempt's events.jsonl: stage timeline, step speed, memory per rank over
time, and the latest preview. Progress fields come from the worker's own Tracker, so the TUI and the DB agree."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flf2v_tui.worker.tracker import Tracker

MEMORY_HISTORY = 120  # samples kept per rank: a few minutes of a render at one sample per step

# The engine's fine-grained stages, grouped the way a person thinks of a render.
STAGE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("load", ("load_text_encoder", "load_image_encoder", "load_vae", "load_transformer", "shard")),
    ("encode", ("encode_text", "encode_image", "encode_condition")),
    ("denoise", ("denoise",)),
    ("decode", ("decode",)),
    ("save", ("save",)),
)
_GROUP_OF = {stage: group for group, stages in STAGE_GROUPS for stage in stages}


@dataclass(frozen=True)
class StageSpan:
    name: str
    seconds: float | None  # done: how long it took; running: how long so far; halted: until it stopped; pending: None
    state: str  # "done", "running", "pending", or how the render stopped in it: "failed", "cancelled", "interrupted"


# How a render that is no longer under way stopped, by the job's shown state: the stage it was in is shown so.
HALTED = {"failed": "failed", "cancelled": "cancelled", "interrupted": "interrupted"}


def memory_figure(event: dict[str, Any]) -> int | None:
    """Bytes in use on a rank: CUDA allocated memory, or the process's RSS on CPU."""
    for key in ("allocated", "rss"):
        if isinstance(event.get(key), int):
            return int(event[key])
    return None


class JobTelemetry:
    """Feed with poll(); each call reads only the events appended since the previous one."""

    def __init__(self, attempt_dir: Path) -> None:
        self.tracker = Tracker(attempt_dir / "events.jsonl", attempt_dir)
        self.memory: dict[int, deque[int]] = {}
        self.peak: dict[int, int] = {}
        self.began: dict[str, float] = {}
        self.ended: set[str] = set()
        self.preview: dict[str, Any] | None = None
        self.last_event_t: float | None = None

    def poll(self) -> bool:
        """True when anything new arrived."""
        events = self.tracker.tail.poll()
        for event in events:
            self.tracker.apply(event)
            self._note(event)
        return bool(events)

    def _note(self, e: dict[str, Any]) -> None:
        kind, t = e.get("kind"), e.get("t")
        if isinstance(t, int | float):
            self.last_event_t = float(t)
        if kind == "memory":
            value = memory_figure(e)
            rank = e.get("rank")
            if value is not None and isinstance(rank, int):
                self.memory.setdefault(rank, deque(maxlen=MEMORY_HISTORY)).append(value)
                self.peak[rank] = max(self.peak.get(rank, 0), value)
        elif kind == "stage" and isinstance(e.get("name"), str):
            if e.get("phase") == "begin" and isinstance(t, int | float):
                self.began.setdefault(e["name"], float(t))
            elif e.get("phase") == "end":
                self.ended.add(e["name"])
        elif kind == "preview":
            self.preview = e  # the hook for the latent preview image; the view shows its step and path for now

    @property
    def finished(self) -> bool:
        return self.tracker.done is not None or bool(self.tracker.errors)

    def timeline(self, now: float, halted: str | None = None) -> list[StageSpan]:
        """load, encode, denoise, decode, save: each done (with its seconds), running (so far) or pending.
        `halted` (failed, cancelled, interrupted): the render stopped; the stage it was in is shown so, with its
        seconds up to the last event (not up to now: nothing runs any more)."""
        took = self.tracker.stage_seconds
        spans = []
        for group, stages in STAGE_GROUPS:
            done = sum(took.get(s, 0.0) for s in stages if s in took)
            running = [s for s in stages if s in self.began and s not in self.ended]
            if running and (halted or not self.finished):
                until = self.last_event_t if halted and self.last_event_t is not None else now
                so_far = done + sum(max(until - self.began[s], 0.0) for s in running)
                spans.append(StageSpan(group, so_far, halted or "running"))
            elif any(s in took for s in stages):
                spans.append(StageSpan(group, done, "done"))
            else:
                spans.append(StageSpan(group, None, "pending"))
        return spans


def timeline_from_seconds(
    stage_seconds: dict[str, float], current: str | None, halted: str | None = None
) -> list[StageSpan]:
    """The same timeline from what the DB keeps about an attempt (for one whose events file is gone)."""
    spans = []
    current_group = _GROUP_OF.get(current or "")
    for group, stages in STAGE_GROUPS:
        took = [stage_seconds[s] for s in stages if s in stage_seconds]
        if group == current_group:
            spans.append(StageSpan(group, sum(took) if took else None, halted or "running"))
        elif took:
            spans.append(StageSpan(group, sum(took), "done"))
        else:
            spans.append(StageSpan(group, None, "pending"))
    return spans


@dataclass(frozen=True)
class ProgressInfo:
    """A copy of what the job view draws, taken on the reading thread so drawing never races the reader."""

    spans: list[StageSpan]
    step: int | None
    total: int | None
    sec_per_it: float | None
    eta: float | None
    memory: dict[int, list[int]]
    peak: dict[int, int]
    preview: dict[str, Any] | None


def progress_of(
    tel: JobTelemetry | None, latest: dict[str, Any] | None, now: float, shown_state: str = "running"
) -> ProgressInfo:
    """From the events when there are any, else from what the DB keeps of the latest attempt. `shown_state`:
    the job's state as shown (display_state); a failed, cancelled or interrupted one halts the timeline."""
    halted = HALTED.get(shown_state)
    if tel is not None and (tel.tracker.stage or tel.tracker.stage_seconds):
        t = tel.tracker
        memory = {rank: list(series) for rank, series in tel.memory.items()}
        return ProgressInfo(tel.timeline(now, halted), t.step, t.steps_total, t.sec_per_it, t.eta_seconds, memory,
                            dict(tel.peak), tel.preview)  # fmt: skip
    if latest is not None:
        under_way = latest["state"] == "running" or (halted is not None and latest.get("stage") != "done")
        current = latest.get("stage") if under_way else None
        return ProgressInfo(timeline_from_seconds(latest["stage_seconds"], current, halted), latest.get("step"),
                            latest.get("steps_total"), latest.get("sec_per_it"), latest.get("eta_seconds"), {}, {},
                            None)  # fmt: skip
    return ProgressInfo(timeline_from_seconds({}, None), None, None, None, None, {}, {}, None)
