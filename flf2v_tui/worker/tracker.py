"""What an attempt's events.jsonl says so far: stage, step, speed, memory, errors, done."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.telemetry import EventTail


@dataclass
class Tracker:
    events_path: Path
    log_dir: Path
    stage: str | None = None
    step: int | None = None
    steps_total: int | None = None
    sec_per_it: float | None = None
    eta_seconds: float | None = None
    progress_at: float | None = None
    engine_version: str | None = None
    attention: str | None = None  # the attention kernel the engine picked (`--attn auto` depends on the card)
    memory: dict[str, dict[str, int]] = field(default_factory=dict)
    peak_memory: dict[str, int] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    done: dict[str, Any] | None = None
    start: dict[str, Any] | None = None
    _recent_steps: list[float] = field(default_factory=list)
    _log_sizes: int = -1
    tail: EventTail = field(init=False)

    def __post_init__(self) -> None:
        self.tail = EventTail(self.events_path)

    def poll(self, now: float) -> bool:
        """Read new events; True when something a reader would want to see changed."""
        changed = False
        for event in self.tail.poll():
            changed |= self.apply(event)
        if changed:
            self.progress_at = now
        return changed

    def log_activity(self, now: float) -> bool:
        """Rank logs that grow also count as progress for the stall timer (long loads emit no events)."""
        total = 0
        try:
            for entry in os.scandir(self.log_dir):
                if entry.name.endswith(".log"):
                    total += entry.stat().st_size
        except OSError:
            return False
        grew = total != self._log_sizes
        self._log_sizes = total
        if grew:
            self.progress_at = now
        return grew

    def apply(self, e: dict[str, Any]) -> bool:
        kind = e.get("kind")
        rank = str(e.get("rank", 0))
        if kind == "start":
            self.start = e
            self.engine_version = str(e.get("engine_version") or "") or None
            self.attention = str(e.get("attention") or "") or None
        elif kind == "stage":
            name = e.get("name")
            if e.get("phase") == "begin":
                self.stage = name
            elif isinstance(e.get("seconds"), int | float) and isinstance(name, str):
                self.stage_seconds[name] = round(self.stage_seconds.get(name, 0.0) + float(e["seconds"]), 4)
        elif kind == "step":
            self.stage = self.stage or "denoise"
            self.step, self.steps_total = e.get("i"), e.get("n")
            if isinstance(e.get("seconds"), int | float):
                # Step 1 carries one-off warm-up costs; speed is the mean of the steps after it when possible.
                self._recent_steps = [*self._recent_steps, float(e["seconds"])][-20:]
                usable = self._recent_steps[1:] or self._recent_steps
                self.sec_per_it = round(sum(usable) / len(usable), 4)
            self.eta_seconds = e.get("eta_seconds")
        elif kind == "memory":
            figures = {
                k: int(e[k]) for k in ("allocated", "reserved", "peak", "rss", "peak_rss") if isinstance(e.get(k), int)
            }
            self.memory[rank] = figures
            peak = max((figures.get(k, 0) for k in ("peak", "peak_rss", "rss")), default=0)
            if peak > self.peak_memory.get(rank, 0):
                self.peak_memory[rank] = peak
            return False  # memory alone is not worth an extra DB write; it rides along with the next one
        elif kind == "error":
            self.errors.append(e)
        elif kind == "done":
            self.done = e
            self.stage = "done"
        else:
            return False
        return True

    def progress(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "step": self.step,
            "steps_total": self.steps_total,
            "sec_per_it": self.sec_per_it,
            "eta_seconds": self.eta_seconds,
            "progress_at": self.progress_at,
            "memory": self.memory,
            "peak_memory": self.peak_memory,
            "stage_seconds": self.stage_seconds,
            "engine_version": self.engine_version,
            "attention": self.attention,
            # How close the render's first and last frames came to the inputs (the done event's).
            "psnr_first": (self.done or {}).get("psnr_first"),
            "psnr_last": (self.done or {}).get("psnr_last"),
        }
