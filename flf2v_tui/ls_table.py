"""The table of `flf2v ls`: its columns (chosen with --format, as `squeue -o` and `sacct --format` do), laid out
for the terminal's width, or `|`-separated for scripts (--parsable)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from engine.errors import BadInputError
from flf2v_tui.job_text import PROMPT_WIDTH, STATE_COLOURS, display_state, gpus_text, job_time, note, psnr_cell
from flf2v_tui.term import duration, fitted_table, one_line
from storage.states import FINISHED

Job = dict[str, Any]
# A cell from (job, its display state, now, the note of a queued job nobody has said more about).
Cell = Callable[[Job, str, float, str], str]


def _eta(job: Job, state: str, now: float, waiting: str) -> str:
    return duration(job["eta_seconds"]) if state == "running" and job.get("eta_seconds") is not None else "-"


def _step(job: Job, state: str, now: float, waiting: str) -> str:
    return f"{job['step']}/{job['steps_total']}" if job.get("step") and job.get("steps_total") else "-"


def _text(field: str) -> Cell:
    return lambda job, state, now, waiting: one_line(job.get(field))


def _number(field: str) -> Cell:
    return lambda job, state, now, waiting: str(job[field])


COLUMNS: dict[str, tuple[str, Cell]] = {
    "id": ("ID", _number("id")),
    "state": ("STATE", lambda job, state, now, waiting: state),
    "gpus": ("GPUS", lambda job, state, now, waiting: gpus_text(job, state)),
    "eta": ("ETA", _eta),
    "time": ("TIME", lambda job, state, now, waiting: job_time(job, state, now)),
    "labels": ("LABELS", lambda job, state, now, waiting: ",".join(job.get("labels") or []) or "-"),
    # The whole prompt: made one line where it is cut (ls_text) or written (ls_parsable).
    "prompt": ("PROMPT", lambda job, state, now, waiting: job.get("prompt") or ""),
    "note": ("NOTE", lambda job, state, now, waiting: note(job, now, waiting)),
    "step": ("STEP", _step),
    "priority": ("PRIO", _number("priority")),
    "seed": ("SEED", _number("base_seed")),
    "task": ("TASK", _text("task")),
    "size": ("SIZE", _text("size")),
    "frames": ("FRAMES", _number("frame_num")),
    "attempt": ("ATTEMPT", lambda job, state, now, waiting: str(job.get("attempt") or "-")),
    "psnr": ("PSNR", lambda job, state, now, waiting: psnr_cell(job.get("psnr_first"), job.get("psnr_last"))),
}
TEXT_COLUMNS = frozenset({"state", "labels", "prompt", "note", "task", "size"})
ALIASES = {"label": "labels", "prio": "priority", "frame_num": "frames"}
# The note (what a job does, or why it waits) comes last so that piped output never cuts it.
DEFAULT_COLUMNS = ("id", "state", "gpus", "eta", "time", "labels", "prompt", "note")
# Under NARROW columns, as the dashboard does there, GPUS, ETA and TIME give way to the note (a running job's
# ETA goes into it), so that why a job waits is read whole at 80 columns.
NARROW = 100
NARROW_COLUMNS = ("id", "state", "labels", "prompt", "note")
MIN_PROMPT = len("PROMPT")
LABELS_WIDTH = 12  # labels are cut there at a terminal: a sweep's long label must not push the note off


def parse_columns(text: str | None) -> tuple[str, ...]:
    """`id,state,note` as column keys; an unknown name is bad input listing the valid ones."""
    if text is None:
        return DEFAULT_COLUMNS
    names = [ALIASES.get(n.strip().lower(), n.strip().lower()) for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown or not names:
        what = f"unknown column {unknown[0]!r}" if unknown else "--format names no column"
        raise BadInputError(f"{what}; choose from {','.join(COLUMNS)}")
    return tuple(names)


def _cells(jobs: Sequence[Job], columns: Sequence[str], waiting: str, now: float) -> tuple[list[list[str]], list[str]]:
    rows, states = [], []
    for job in jobs:
        state = display_state(job)
        rows.append([COLUMNS[c][1](job, state, now, waiting) for c in columns])
        states.append(state)
    return rows, states


def ls_text(
    jobs: Sequence[Job],
    width: int = 0,
    now: float | None = None,
    columns: Sequence[str] = DEFAULT_COLUMNS,
    header: bool = True,
    waiting: str = "waiting for a worker",
) -> tuple[str, list[str]]:
    """Aligned columns in the state's colour, and the keys of the columns that did not fit. At a terminal's
    `width` the labels are cut to LABELS_WIDTH and the prompt gives way (down to the width of its heading), so
    that the note, the reason a job waits, stays readable; what still does not fit is cut at the line's end."""
    now = now or time.time()
    narrow = bool(width) and width < NARROW and tuple(columns) == DEFAULT_COLUMNS
    if narrow:
        columns = NARROW_COLUMNS
    rows, states = _cells(jobs, columns, waiting, now)
    if narrow:
        at = columns.index("note")
        for job, state, row in zip(jobs, states, rows, strict=True):
            if state == "running" and job.get("eta_seconds") is not None:
                row[at] += f" ETA {duration(job['eta_seconds'])}"
    if width and "labels" in columns:
        at = list(columns).index("labels")
        for row in rows:
            row[at] = one_line(row[at], LABELS_WIDTH)
    if "prompt" in columns:  # its cells are the whole prompts (cut to 200 by the query), cut here once
        at = list(columns).index("prompt")
        keep = PROMPT_WIDTH
        if width:
            heads = [COLUMNS[c][0] for c in columns]
            # A finished job's note (its file, how it failed) may be cut at the line's end (`show` has it
            # whole); the prompt gives way to the notes of the jobs still to come.
            measured = [r for r, s in zip(rows, states, strict=True) if s not in FINISHED] or rows
            widest = [max([len(heads[i]), *(len(r[i]) for r in (measured if c == "note" else rows))])
                      for i, c in enumerate(columns)]  # fmt: skip
            others = sum(widest) - widest[at]
            keep = max(MIN_PROMPT, min(PROMPT_WIDTH, width - others - 2 * (len(columns) - 1)))
        for row in rows:
            row[at] = one_line(row[at], keep)
    colours = [STATE_COLOURS.get(s) for s in states]
    # No number is ever cut short (it would read as another number): a column of numbers that does not fit
    # whole is left out; only text (a prompt, a note) is cut at the end of the line.
    last_whole = columns[-1] not in TEXT_COLUMNS
    heads = [COLUMNS[c][0] for c in columns]
    text, left_out = fitted_table(rows, heads, colours, width, whole_cells=True, last_whole=last_whole)
    text = text if header else "\n".join(text.splitlines()[1:])
    return text, [columns[heads.index(h)] for h in left_out]


def ls_parsable(jobs: Sequence[Job], columns: Sequence[str], header: bool = True, waiting: str = "") -> str:
    """sacct's --parsable: `|` between fields, nothing cut, no colour; a `|` inside a field is written `\\|`."""
    rows, _ = _cells(jobs, columns, waiting, time.time())
    lines = [[COLUMNS[c][0] for c in columns]] if header else []
    lines += rows
    return "\n".join("|".join(one_line(cell).replace("|", "\\|") for cell in row) for row in lines)


def waiting_text(workers: Sequence[dict[str, Any]], paused: bool) -> str:
    """Why a queued job that nothing else has been said about waits: the queue is paused, no worker runs, or
    every slot of the running workers is busy (the workers then make no claim, so they write no reason)."""
    if paused:
        return "queue paused (flf2v resume)"
    if not workers:
        return "waiting for a worker (flf2v worker)"
    pools = [w.get("pool") or {} for w in workers]
    slots = sum(len(p.get("slots") or []) for p in pools)
    taken = sum(len(set(p.get("busy") or {}) | set(p.get("blocked") or {})) for p in pools)
    if slots and taken >= slots:
        # Short enough for the note at 80 columns beside a cut prompt (ls_text).
        kind = "a free GPU" if any(p.get("device") == "cuda" for p in pools) else "a CPU slot"
        return f"waiting for {kind} ({slots} busy)"
    return "waiting for a worker to take it"
