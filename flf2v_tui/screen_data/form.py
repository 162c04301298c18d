"""The submit form without its widgets: which fields it has, turning their text into a submission checked by
the CLI's own validation (flf2v_tui.submission), and pinning each error to the field it is about.

Its engine fields are the flags engine.flags gives a form label; how each is shown and read follows its kind."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from engine.checks import check_image
from engine.cli_args import layout_ranks
from engine.errors import BadInputError
from engine.flags import BOOL, CHOICE, FLAGS, PATH, SWITCH, TEXT, Flag
from engine.tasks import TASKS
from flf2v_tui.job_edit import NothingToChange, edit_job
from flf2v_tui.rank_capacity import NeverFitsHere
from flf2v_tui.submission import QueueOptions, build_specs, expand_user, fill_tiny_checkpoint, parse_seeds
from storage.db import STORAGE_ERRORS, DatabaseError
from storage.errors import CORRUPT, DB_HEADROOM_BYTES, files_size, storage_fault
from storage.jobs import insert_jobs
from storage.paths import Home

FORM_FLAGS: dict[str, Flag] = {flag.name: flag for flag in FLAGS if flag.label}
# The queue's own switch, not part of a job's recipe: --other-worker (skip the check of --gpus against what a
# worker started here would have; the job is for a worker elsewhere, or one started with --cpu-slots).
OTHER_WORKER = "other_worker"
OTHER_WORKER_LABEL = "Other worker"
# The form's fields that are no engine flag: the seed or a sweep of them (--base_seed, --seeds, --seed-range),
# the queue's numbers, labels and --other-worker.
QUEUE_LABELS = {"seeds": "Seed or seeds", "gpus": "GPUs (ranks)", "priority": "Priority", "labels": "Labels",
                OTHER_WORKER: OTHER_WORKER_LABEL}  # fmt: skip
QUEUE_NUMBERS = ("gpus", "priority")
LABELS = {**{name: flag.label for name, flag in FORM_FLAGS.items()}, **QUEUE_LABELS}
# Where each field sits, row by row; a row of one field spans the form. A flag of FORM_FLAGS that no row names
# gets a row of its own at the end, so a new flag is on the form without an edit here.
_ROWS: tuple[tuple[str, ...], ...] = (
    ("first_frame",), ("last_frame",), ("prompt",), ("neg_prompt",), ("task", "ckpt_dir"),
    ("size", "frame_num", "sample_steps"), ("sample_shift", "sample_guide_scale", "seeds"),
    ("gpus", "priority", "labels"), ("sample_solver", "ulysses_size", "offload_model"),
    # How a job spreads over its ranks and memory; a re-run of a 14B render on 8 GPUs needs them as they were.
    ("dit_fsdp", "t5_fsdp", "t5_cpu", OTHER_WORKER),
    # The GPU fast path: guidance branches on two halves of the ranks, the attention kernel, compiled blocks.
    ("cfg_size", "attn", "compile"),
)  # fmt: skip
LAYOUT = _ROWS + tuple((name,) for name in FORM_FLAGS if all(name not in row for row in _ROWS))
FIELDS = tuple(name for row in LAYOUT for name in row)
FRAMES = ("first_frame", "last_frame")
SWITCHES = tuple(name for name in FIELDS if name in FORM_FLAGS and FORM_FLAGS[name].kind == SWITCH)  # "1" on
BOOL_CHOICES = ("", "True", "False")  # "": the engine's default (offload_model: on for one rank, off for several)
DEFAULT_TASK: str = FORM_FLAGS["task"].default
FORM_LEVEL = "form"  # errors that belong to no single field
# The form field an error is about, where its flag is not itself a field.
_FIELD_OF = {"base_seed": "seeds"}

Widget = Literal["area", "path", "input", "select", "checkbox"]


def widget_of(name: str) -> Widget:
    """How a field is shown: prose in a text area, a path with completion, a choice or a bool as a select
    (a bool's blank meaning the default), a switch as a checkbox, anything else as a line of text."""
    flag = FORM_FLAGS.get(name)
    if flag is None:
        return "checkbox" if name == OTHER_WORKER else "input"
    kinds: dict[str, Widget] = {TEXT: "area", PATH: "path", CHOICE: "select", BOOL: "select", SWITCH: "checkbox"}
    return kinds.get(flag.kind, "input")


def choices_of(name: str) -> tuple[str, ...]:
    """The values of a select field."""
    flag = FORM_FLAGS[name]
    return BOOL_CHOICES if flag.kind == BOOL else flag.choices


def select_value(name: str, text: str) -> str:
    """What a select field shows for `text`: itself when it is one of the choices, else the default."""
    flag = FORM_FLAGS[name]
    return text if text in choices_of(name) else ("" if flag.kind == BOOL else flag.default)


def shown_text(name: str, text: str) -> str:
    """A field's text as its widget holds it once opened with `text` (a select shows one of its choices, a
    switch is on or off): what the form reads back before anything is typed."""
    kind = widget_of(name)
    if kind == "select":
        return select_value(name, text)
    if kind == "checkbox":
        return "1" if text else ""
    return text


def field_for(error: BadInputError) -> str:
    """The field an error goes under: the one its flag fills, or the whole form."""
    name = _FIELD_OF.get(error.field or "", error.field)
    return name if name in FIELDS else FORM_LEVEL


def placeholders(task_name: str) -> dict[str, str]:
    """The defaults, shown in empty fields (an empty field means: the default); the task decides some."""
    task = TASKS.get(task_name) or TASKS[DEFAULT_TASK]
    queue = QueueOptions()
    hints: dict[str, str] = {}
    for name, flag in FORM_FLAGS.items():
        value = getattr(task, flag.from_task) if flag.from_task else flag.default
        if widget_of(name) == "input" and value is not None:
            hints[name] = f"{value:g}" if isinstance(value, float) else str(value)
    return hints | {
        "seeds": "random; or 7, or 1,2,3, or 10..19",
        "gpus": "cfg x ulysses x ring (1)",
        "priority": str(queue.priority),
        "labels": "comma-separated",
        "ckpt_dir": "the embedded model" if task_name == "flf2v-tiny" else "checkpoint folder",
        "neg_prompt": "the official negative prompt",
    }


@dataclass
class Submission:
    given: dict[str, Any] = field(default_factory=dict)
    queue: QueueOptions = field(default_factory=QueueOptions)
    seeds: list[int] | None = None
    errors: dict[str, str] = field(default_factory=dict)


def _number(text: str, kind: type, name: str, errors: dict[str, str]) -> Any:
    try:
        return kind(text)
    except ValueError:
        errors[name] = f"{text!r} is not {'a whole number' if kind is int else 'a number'}"
        return None


def _on(text: str) -> bool:
    return text.strip() in ("1", "True", "true")


def _flag_value(flag: Flag, text: str, errors: dict[str, str]) -> Any:
    """A field's text as its flag's value; None for an empty field (the default), with a type error in `errors`."""
    if flag.kind == SWITCH:
        return True if _on(text) else None
    if flag.kind == TEXT:
        if not text.strip():
            return None
        # The prompt is kept as typed; the negative prompt's ends are trimmed, as the form always did.
        return text if flag.name == "prompt" else text.strip()
    text = text.strip()
    if not text:
        return None
    if flag.kind == BOOL:
        return {"True": True, "False": False}.get(text)
    if flag.type in (int, float):
        return _number(text, flag.type, flag.name, errors)
    if flag.kind == PATH:
        try:  # a ~name of no user, said under its own field
            expand_user(text)
        except BadInputError as exc:
            errors[flag.name] = exc.message
    return text


def _parse_seeds(seeds: str, out: Submission) -> None:
    try:
        if re.fullmatch(r"-?\d+", seeds):
            out.given["base_seed"] = int(seeds)
        elif ".." in seeds:
            out.seeds = parse_seeds(None, seeds)
        elif seeds:
            out.seeds = parse_seeds(seeds, None)
    except BadInputError as exc:
        out.errors["seeds"] = exc.message.replace("--seed-range ", "").replace("--seeds ", "")


def parse_form(values: dict[str, str]) -> Submission:
    """Field texts -> what build_specs takes; type errors are reported per field, before any other check."""
    out = Submission()
    for name in FIELDS:
        if name in FORM_FLAGS:
            out.given[name] = _flag_value(FORM_FLAGS[name], values.get(name, ""), out.errors)
    _parse_seeds(values.get("seeds", "").strip(), out)
    numbers = {name: values.get(name, "").strip() for name in QUEUE_NUMBERS}
    given = {name: _number(text, int, name, out.errors) for name, text in numbers.items() if text}
    if "gpus" not in given:  # an empty field: as many ranks as the layout uses (engine.cli_args.layout_problem)
        given["gpus"] = layout_ranks(*(out.given.get(name) or 1 for name in ("cfg_size", "ulysses_size", "ring_size")))
    out.queue = QueueOptions(
        **{name: number for name, number in given.items() if number is not None},
        labels=[x for x in re.split(r"[,\s]+", values.get("labels", "")) if x],
        other_worker=_on(values.get(OTHER_WORKER, "")),
    )
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
    except (BadInputError, *STORAGE_ERRORS) as exc:
        return [], _refusal(home, exc, sub.given)


def check(home: Home, values: dict[str, str]) -> dict[str, str]:
    """The errors a submit of these texts would meet, queueing nothing (the form checks again after a change,
    so an error the change fixed goes at once). flf2v-tiny without a checkpoint folder is no error: the submit
    writes the embedded model then."""
    sub = parse_form(values)
    if sub.errors:
        return sub.errors
    try:
        build_specs(sub.given, sub.queue, sub.seeds, home=home)
    except BadInputError as exc:
        embedded = sub.given.get("task") == "flf2v-tiny" and not sub.given.get("ckpt_dir")
        return {} if embedded and exc.field == "ckpt_dir" else _refusal(home, exc, sub.given)
    return {}


def _refusal(home: Home, exc: BaseException, given: dict[str, Any]) -> dict[str, str]:
    """A check's or the queue's refusal, under the field it is about."""
    if isinstance(exc, NeverFitsHere):  # waived here by the form's switch, not by the CLI's flag
        return {"gpus": exc.saying(f'switch on "{OTHER_WORKER_LABEL}"')}
    if isinstance(exc, BadInputError):
        return {field_for(exc): exc.message}
    frames = [str(expand_user(given[f])) for f in FRAMES if given.get(f)]
    return {FORM_LEVEL: storage_refused(home, exc, frames)}


def _default(name: str, task_name: str) -> Any:
    """What an emptied field means in an edit: its flag's default (the task's, for flags the task decides)."""
    flag = FORM_FLAGS[name]
    if flag.kind == SWITCH:
        return False
    task = TASKS.get(task_name) or TASKS[DEFAULT_TASK]
    return getattr(task, flag.from_task) if flag.from_task else flag.default


NOTHING_CHANGED = "nothing to save: change a field the job keeps, or esc to leave it as it is"


def edit(
    conn: sqlite3.Connection, home: Home, job_id: int, original: dict[str, str], values: dict[str, str]
) -> tuple[str, dict[str, str]]:
    """Save the form into queued job `job_id` (flf2v edit's checks, job_edit.edit_job): only the fields changed
    from `original` (the texts the form opened with) change. Returns (what changed, {}) or ("", {field: why})."""
    changed = [name for name in FIELDS if values.get(name, "") != original.get(name, "")]
    if not changed:
        return "", {FORM_LEVEL: NOTHING_CHANGED}
    sub = parse_form(values)
    if sub.errors:
        return "", sub.errors
    if sub.seeds is not None:
        return "", {"seeds": "an edit keeps one job: give one seed (y on the job copies it into new jobs)"}
    task = sub.given.get("task") or DEFAULT_TASK
    given = {name: _default(name, task) if sub.given[name] is None else sub.given[name]
             for name in changed if name in FORM_FLAGS}  # fmt: skip
    if "seeds" in changed:
        given["base_seed"] = sub.given.get("base_seed", -1)  # emptied: a new random seed, as at submit
    queue = sub.queue
    try:
        if "task" in given or "ckpt_dir" in given:
            fill_tiny_checkpoint(home, given)
        message = edit_job(
            conn, home, job_id, given, gpus=queue.gpus if "gpus" in changed else None,
            priority=queue.priority if "priority" in changed else None,
            labels=queue.labels if "labels" in changed else None, other_worker=queue.other_worker,
        )  # fmt: skip
    except NothingToChange:  # only Other worker, or a text that reads as the value the job has
        return "", {FORM_LEVEL: NOTHING_CHANGED}
    except (BadInputError, *STORAGE_ERRORS) as exc:
        return "", _refusal(home, exc, given)
    return message, {}


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
    A path is the user's original when it still exists (the frames' `*_src`), else the job's own copy."""

    def text(value: Any) -> str:
        return "" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))

    def path(name: str) -> str:
        src = job.get(f"{name}_src") or ""
        return src if src and Path(src).is_file() else str(job.get(name) or "")

    texts: dict[str, str] = {}
    for name, flag in FORM_FLAGS.items():
        value = job.get(name)
        if flag.kind == SWITCH:
            texts[name] = "1" if value else ""
        elif flag.kind == BOOL:
            texts[name] = "" if value is None else str(bool(value))
        else:
            texts[name] = path(name) if flag.kind == PATH else text(value)
    return texts | {
        "task": texts["task"] or DEFAULT_TASK,
        "seeds": text(job.get("base_seed")),
        "gpus": text(job.get("gpus")),
        "priority": text(job.get("priority")),
        "labels": ",".join(job.get("labels") or []),
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
