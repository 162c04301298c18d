"""The submit form without its widgets: which fields it has, turning their text into a submission checked by
the CLI's own validation (flf2v_tui.submission), and pinning each error to the field it is about."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.checks import check_image
from engine.errors import BadInputError
from engine.tasks import TASKS
from flf2v_tui.rank_capacity import NeverFitsHere
from flf2v_tui.submission import QueueOptions, build_specs, expand_user, fill_tiny_checkpoint, parse_seeds
from storage.db import STORAGE_ERRORS, DatabaseError
from storage.errors import CORRUPT, DB_HEADROOM_BYTES, files_size, storage_fault
from storage.jobs import insert_jobs
from storage.paths import Home

TEXT_FIELDS = ("prompt", "neg_prompt")
PATH_FIELDS = ("first_frame", "last_frame", "ckpt_dir")
INT_FIELDS = ("frame_num", "sample_steps", "gpus", "priority", "ulysses_size")
FLOAT_FIELDS = ("sample_shift", "sample_guide_scale")
# How a job spreads over its ranks and memory; a re-run of a 14B render on 8 GPUs needs them as they were.
SWITCHES = ("dit_fsdp", "t5_fsdp", "t5_cpu")  # "1" on, "" off
# The queue's own switch, not part of a job's recipe: --other-worker (skip the check of --gpus against what a
# worker started here would have; the job is for a worker elsewhere, or one started with --cpu-slots).
OTHER_WORKER = "other_worker"
OTHER_WORKER_LABEL = "Other worker"
OFFLOAD_CHOICES = ("", "True", "False")  # "": the official default (on for one rank, off for several)
FIELDS = (
    "first_frame", "last_frame", "prompt", "neg_prompt", "task", "ckpt_dir", "size", "frame_num", "sample_steps",
    "sample_shift", "sample_guide_scale", "seeds", "gpus", "priority", "labels", "sample_solver", "ulysses_size",
    "offload_model", *SWITCHES, OTHER_WORKER,
)  # fmt: skip
DEFAULT_TASK = "flf2v-14B"
FORM_LEVEL = "form"  # errors that belong to no single field

# Which field a validation message is about, by the words the engine and submission.py use; first match wins.
_ROUTES: tuple[tuple[str, str], ...] = (
    (r"first[ _]frame", "first_frame"),
    (r"last[ _]frame", "last_frame"),
    (r"unknown task", "task"),
    (r"ckpt_dir|checkpoint", "ckpt_dir"),
    (r"^size |\bsize\b.*supported|multiples? of", "size"),
    (r"frame_num", "frame_num"),
    (r"sample_steps", "sample_steps"),
    (r"sample_shift", "sample_shift"),
    (r"sample_guide_scale", "sample_guide_scale"),
    (r"sample_solver", "sample_solver"),
    (r"neg_prompt|negative prompt", "neg_prompt"),  # before "prompt", which its messages contain too
    (r"prompt", "prompt"),
    (r"seed", "seeds"),
    (r"ulysses", "ulysses_size"),
    (r"--t5_cpu", "t5_cpu"),
    (r"offload_model", "offload_model"),
    (r"--gpus", "gpus"),
    (r"--priority", "priority"),
)


def field_for(message: str) -> str:
    for pattern, name in _ROUTES:
        if re.search(pattern, message):
            return name
    return FORM_LEVEL


def placeholders(task_name: str) -> dict[str, str]:
    """The task's defaults, shown in empty fields (an empty field means: the default)."""
    task = TASKS.get(task_name) or TASKS[DEFAULT_TASK]
    return {
        "size": task.default_size,
        "frame_num": str(task.frame_num),
        "sample_steps": str(task.sample_steps),
        "sample_shift": f"{task.sample_shift:g}",
        "sample_guide_scale": f"{task.sample_guide_scale:g}",
        "seeds": "random; or 7, or 1,2,3, or 10..19",
        "gpus": "1",
        "priority": "0",
        "labels": "comma-separated",
        "ckpt_dir": "the embedded model" if task_name == "flf2v-tiny" else "checkpoint folder",
        "neg_prompt": "the official negative prompt",
        "ulysses_size": "1",
    }


@dataclass
class Submission:
    given: dict[str, Any] = field(default_factory=dict)
    queue: QueueOptions = field(default_factory=QueueOptions)
    seeds: list[int] | None = None
    errors: dict[str, str] = field(default_factory=dict)


def _number(values: dict[str, str], name: str, kind: type, errors: dict[str, str]) -> Any:
    text = values.get(name, "").strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        errors[name] = f"{text!r} is not {what}"
        return None


def _on(values: dict[str, str], name: str) -> bool:
    return values.get(name, "").strip() in ("1", "True", "true")


def parse_form(values: dict[str, str]) -> Submission:
    """Field texts -> what build_specs takes; type errors are reported per field, before any other check."""
    out = Submission()
    numbers = {n: _number(values, n, int, out.errors) for n in INT_FIELDS}
    numbers |= {n: _number(values, n, float, out.errors) for n in FLOAT_FIELDS}
    given: dict[str, Any] = {n: values.get(n, "").strip() or None for n in (*PATH_FIELDS, "task", "size")}
    for name in PATH_FIELDS:  # a ~name of no user, said under its own field
        try:
            expand_user(given[name] or "")
        except BadInputError as exc:
            out.errors[name] = exc.message
    given["prompt"] = values.get("prompt", "")
    given["neg_prompt"] = values.get("neg_prompt", "").strip() or None
    given["task"] = given["task"] or DEFAULT_TASK
    for name in ("frame_num", "sample_steps", "sample_shift", "sample_guide_scale", "ulysses_size"):
        given[name] = numbers[name]
    given["sample_solver"] = values.get("sample_solver", "").strip() or None
    offload = values.get("offload_model", "").strip()
    given["offload_model"] = {"True": True, "False": False}.get(offload)
    for name in SWITCHES:
        given[name] = True if _on(values, name) else None
    seeds = values.get("seeds", "").strip()
    try:
        if re.fullmatch(r"-?\d+", seeds):
            given["base_seed"] = int(seeds)
        elif ".." in seeds:
            out.seeds = parse_seeds(None, seeds)
        elif seeds:
            out.seeds = parse_seeds(seeds, None)
    except BadInputError as exc:
        out.errors["seeds"] = exc.message.replace("--seed-range ", "").replace("--seeds ", "")
    labels = [x for x in re.split(r"[,\s]+", values.get("labels", "")) if x]
    out.queue = QueueOptions(
        gpus=numbers["gpus"] if numbers["gpus"] is not None else 1,
        priority=numbers["priority"] if numbers["priority"] is not None else 0,
        labels=labels,
        other_worker=_on(values, OTHER_WORKER),
    )
    out.given = given
    return out


def submit(conn: sqlite3.Connection, home: Home, values: dict[str, str]) -> tuple[list[int], dict[str, str]]:
    """Validate like `flf2v submit` and queue; returns (new job ids, {}) or ([], {field: message}).
    A database or disk that refuses the job (read-only, full, locked too long) is a message for the whole form."""
    sub = parse_form(values)
    if sub.errors:
        return [], sub.errors
    try:
        fill_tiny_checkpoint(home, sub.given)
        specs = build_specs(sub.given, sub.queue, sub.seeds, home=home)
        return insert_jobs(conn, home, specs), {}
    except NeverFitsHere as exc:  # waived here by the form's switch, not by the CLI's flag
        return [], {"gpus": exc.saying(f'switch on "{OTHER_WORKER_LABEL}"')}
    except BadInputError as exc:
        return [], {field_for(exc.message): exc.message}
    except STORAGE_ERRORS as exc:
        frames = [str(expand_user(sub.given[f])) for f in ("first_frame", "last_frame") if sub.given.get(f)]
        return [], {FORM_LEVEL: storage_refused(home, exc, frames)}


def storage_refused(home: Home, exc: BaseException, frames: Iterable[str] = ()) -> str:
    """Why the queue refused the job, in the words `flf2v submit` uses (storage.errors): the cause, where, and
    for a full disk what is free and about what the job needs (copies of `frames` and the database's log)."""
    fault = storage_fault(exc, None if isinstance(exc, OSError) else home.db)  # an OSError names its own file
    if isinstance(exc, DatabaseError) and (fault is None or fault.cause == CORRUPT):
        return f"{exc}; nothing was queued"  # its own words say which file and what to do
    if fault is None or fault.path is None:
        return f"could not queue it in {home.root} ({exc}); nothing was queued"
    return f"{fault.line(DB_HEADROOM_BYTES + files_size(frames))}; nothing was queued"


def image_summary(path: str) -> str:
    """`832×480 RGB`, or why the file cannot be used, for the line under a frame's path."""
    if not path.strip():
        return ""
    try:
        info = check_image(expand_user(path), "image")
    except BadInputError as exc:
        return exc.message
    return f"{info.width}×{info.height} {info.mode}"


def prefill_from_job(job: dict[str, Any]) -> dict[str, str]:
    """The form's field texts for a job's recipe (the catalogue's "re-run" opens the form with these).
    The frames are the user's originals when they still exist, else the job's own copies."""

    def frame(role: str) -> str:
        src = job.get(f"{role}_src") or ""
        return src if src and Path(src).is_file() else str(job.get(role) or "")

    def text(value: Any) -> str:
        return "" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))

    return {
        "first_frame": frame("first_frame"),
        "last_frame": frame("last_frame"),
        "prompt": text(job.get("prompt")),
        "neg_prompt": text(job.get("neg_prompt")),
        "task": text(job.get("task")) or DEFAULT_TASK,
        "ckpt_dir": text(job.get("ckpt_dir")),
        "size": text(job.get("size")),
        "frame_num": text(job.get("frame_num")),
        "sample_steps": text(job.get("sample_steps")),
        "sample_shift": text(job.get("sample_shift")),
        "sample_guide_scale": text(job.get("sample_guide_scale")),
        "seeds": text(job.get("base_seed")),
        "gpus": text(job.get("gpus")),
        "priority": text(job.get("priority")),
        "labels": ",".join(job.get("labels") or []),
        "sample_solver": text(job.get("sample_solver")),
        "ulysses_size": text(job.get("ulysses_size")),
        "offload_model": "" if job.get("offload_model") is None else str(bool(job["offload_model"])),
        **{name: "1" if job.get(name) else "" for name in SWITCHES},
    }


def complete_path(text: str) -> str | None:
    """The first entry of the folder being typed that extends `text` (folders get a trailing /), keeping
    the text's own spelling of the folder (~, relative); None when nothing does."""
    if not text:
        return None
    folder_text, _, stem = text.rpartition("/")
    try:
        folder = expand_user(folder_text or ("/" if text.startswith("/") else "."))
        names = sorted(os.listdir(folder))
    except (OSError, BadInputError):  # not a folder, or ~name of no user: nothing to suggest
        return None
    hidden_ok = stem.startswith(".")
    for name in names:
        if name.startswith(stem) and name != stem and (hidden_ok or not name.startswith(".")):
            prefix = f"{folder_text}/" if folder_text or text.startswith("/") else ""
            suffix = "/" if (folder / name).is_dir() else ""
            return f"{prefix}{name}{suffix}"
    return None
