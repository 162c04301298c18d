"""The events.jsonl protocol between the engine and the app (torch-free).

One JSON object per line, appended and flushed as it happens. Every event carries `v` (schema version),
`t` (unix time), `rank` and `kind`. Readers ignore unknown kinds and unknown fields.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

STAGES: tuple[str, ...] = (
    "load_text_encoder",
    "load_image_encoder",
    "load_vae",
    "load_transformer",
    "shard",
    "encode_text",
    "encode_image",
    "encode_condition",
    "denoise",
    "decode",
    "save",
)
# The stages that load the models (their end events' peaks, together, are the peak while loading).
LOAD_STAGES: tuple[str, ...] = STAGES[: STAGES.index("shard") + 1]

# `timeout`: the scheduler's time limit (Slurm's TIMEOUT) ended the render; the engine itself never reports it.
FAILURE_CLASSES: tuple[str, ...] = (
    "user_input", "oom", "comm", "killed", "engine_error", "worker_lost", "disk_full", "timeout",
)  # fmt: skip

_NUMBER = (int, float)
_OPT_NUMBER = (int, float, type(None))

# Required fields per kind and the JSON types they may take. Optional fields are checked when present.
REQUIRED: dict[str, dict[str, tuple[type, ...]]] = {
    "start": {"task": (str,), "world_size": (int,), "device": (str,), "args": (dict,), "engine_version": (str,)},
    "stage": {"name": (str,), "phase": (str,)},
    "step": {"i": (int,), "n": (int,), "seconds": _NUMBER, "eta_seconds": _NUMBER},
    "memory": {},
    "preview": {"step": (int,), "path": (str,)},
    "done": {"output": (str,), "frames": (int,), "fps": _NUMBER, "seconds": _NUMBER},
    "error": {"type": (str,), "message": (str,), "traceback": (str,), "class": (str, type(None))},
}
OPTIONAL: dict[str, dict[str, tuple[type, ...]]] = {
    "stage": {"seconds": _NUMBER},
    "memory": {
        "allocated": (int,),
        "reserved": (int,),
        "peak": (int,),
        "rss": (int,),
        "peak_rss": (int,),
        # Additions within version 1: what NVML sees the process hold on its GPU (CUDA context and NCCL buffers
        # included), and the host RSS of a CUDA rank. Peaks count from the last stage's begin.
        "nvml_used": (int,),
        "host_rss": (int,),
        "stage": (str,),
        "phase": (str,),
        "step": (int,),
    },
    # Additions within version 1 (readers that predate them ignore them): the video's pixel size, and the
    # recipe the engine embedded in the mp4, so the catalogue can check the file against both.
    # And how close the first and last generated frames came to the inputs (PSNR in dB, engine.fidelity).
    "done": {"width": (int,), "height": (int,), "recipe": (dict,), "psnr_first": _NUMBER, "psnr_last": _NUMBER},
}


def validate_event(event: Any) -> list[str]:
    """Problems with one decoded event; an empty list means it follows schema version 1."""
    if not isinstance(event, dict):
        return ["event is not a JSON object"]
    problems: list[str] = []
    for name, types in (("v", (int,)), ("t", _NUMBER), ("rank", (int,)), ("kind", (str,))):
        if name not in event:
            problems.append(f"missing field {name!r}")
        elif not isinstance(event[name], types) or isinstance(event[name], bool):
            problems.append(f"field {name!r} has the wrong type")
    if problems:
        return problems
    kind = event["kind"]
    if kind not in REQUIRED:
        return []  # unknown kinds are allowed, for later versions
    for name, types in REQUIRED[kind].items():
        if name not in event:
            problems.append(f"{kind} event lacks {name!r}")
        elif not isinstance(event[name], types) or isinstance(event[name], bool):
            problems.append(f"{kind} event field {name!r} has the wrong type")
    for name, types in OPTIONAL.get(kind, {}).items():
        if name in event and (not isinstance(event[name], types) or isinstance(event[name], bool)):
            problems.append(f"{kind} event field {name!r} has the wrong type")
    if kind == "stage":
        if event.get("name") not in STAGES:
            problems.append(f"unknown stage {event.get('name')!r}")
        if event.get("phase") not in ("begin", "end"):
            problems.append("stage phase must be 'begin' or 'end'")
        if event.get("phase") == "end" and "seconds" not in event:
            problems.append("stage end lacks 'seconds'")
    if kind == "memory" and not ({"allocated", "reserved", "peak"} <= event.keys() or "rss" in event):
        problems.append("memory event needs allocated/reserved/peak (CUDA) or rss (CPU)")
    if kind == "error" and event.get("class") not in (*FAILURE_CLASSES, None):
        problems.append(f"unknown failure class {event.get('class')!r}")
    return problems


class EventWriter:
    """Appends events to a file shared by all ranks; each event is one write() on an O_APPEND descriptor,
    so lines from different ranks never interleave."""

    def __init__(self, path: str | os.PathLike[str] | None, rank: int) -> None:
        self.rank = rank
        self._fd: int | None = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    @property
    def enabled(self) -> bool:
        return self._fd is not None

    def emit(self, kind: str, **fields: Any) -> dict[str, Any]:
        event: dict[str, Any] = {"v": SCHEMA_VERSION, "t": time.time(), "rank": self.rank, "kind": kind}
        event.update(fields)
        if self._fd is not None:
            line = json.dumps(event, ensure_ascii=False, default=str) + "\n"
            os.write(self._fd, line.encode("utf-8"))
        return event

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def parse_lines(lines: Iterable[str]) -> list[dict[str, Any]]:
    """Decode complete lines, skipping blank or undecodable ones (a crash can leave a torn last line)."""
    events = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def read_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return parse_lines(fh)
    except FileNotFoundError:
        return []


@dataclass
class EventTail:
    """Incremental reader: each poll() returns the events appended since the last one, by byte offset."""

    path: Path
    offset: int = 0
    _partial: bytes = b""

    def poll(self, max_bytes: int = 4 << 20) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read(max_bytes)
        except FileNotFoundError:
            return []
        if not chunk:
            return []
        self.offset += len(chunk)
        data = self._partial + chunk
        complete, _, self._partial = data.rpartition(b"\n")
        if not complete:
            return []
        return parse_lines(complete.decode("utf-8", errors="replace").splitlines())
