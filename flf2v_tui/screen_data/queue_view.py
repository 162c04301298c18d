"""The dashboard's data: one consistent read of the queue, filtered, with each job's cells as text."""

from __future__ import annotations

import sqlite3
import statistics
from dataclasses import dataclass, field
from typing import Any

from flf2v_tui.job_text import display_state, gpus_text, note
from flf2v_tui.ls_table import waiting_text
from flf2v_tui.term import duration, one_line
from storage.db import read_tx
from storage.jobs import count_by_state, list_jobs, unfinished_work
from storage.states import ACTIVE, FAILED, FINISHED, HELD, INTERRUPTED, LISTED, QUEUED, RUNNING, SUCCEEDED
from storage.workers import is_paused, live_workers

Row = dict[str, Any]
RECENT_FINISHED = 200  # finished jobs listed by default; the filter `state:succeeded` reaches all of them
# Rows in the table at most: 10,000 rows take a DataTable over a second to build, and a queue that long is
# read through the filter anyway. The status line says how many are left out.
MAX_ROWS = 500
TYPICAL_SAMPLE = 20  # finished jobs whose durations estimate how long a queued one will take
BAR_WIDTH = 10
NARROW_BAR_WIDTH = 5
PROMPT_CHARS = 40  # the most a prompt gets; less where the table is narrow (the note comes first)
NOTE_CHARS = 44


@dataclass(frozen=True)
class JobFilter:
    """What the `/` box accepts: state names, `label:NAME` (or `#NAME`), and any other words, which must all
    appear in the prompt or the labels."""

    states: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    words: tuple[str, ...] = ()

    @classmethod
    def parse(cls, query: str) -> JobFilter:
        states, labels, words = [], [], []
        for token in query.split():
            key, sep, value = token.partition(":")
            if sep and key == "state":
                states += [s for s in value.split(",") if s]
            elif sep and key == "label":
                labels.append(value)
            elif token.startswith("#") and len(token) > 1:
                labels.append(token[1:])
            elif token.lower() in LISTED:
                states.append(token.lower())
            else:
                words.append(token.lower())
        return cls(tuple(states), tuple(labels), tuple(words))

    def problem(self) -> str | None:
        unknown = [s for s in self.states if s not in LISTED]
        if unknown:
            return f"unknown state {unknown[0]!r}; choose from {', '.join(LISTED)}"
        return None

    def matches(self, job: Row) -> bool:
        haystack = " ".join([str(job.get("prompt") or ""), *job.get("labels", [])]).lower()
        return all(word in haystack for word in self.words)

    def __str__(self) -> str:
        parts = [f"state:{s}" for s in self.states] + [f"label:{x}" for x in self.labels] + list(self.words)
        return " ".join(parts)


@dataclass
class QueueSnapshot:
    jobs: list[Row]
    counts: dict[str, int]
    paused: bool
    workers: int
    slots: int
    queue_eta: float | None
    taken_at: float
    problem: str | None = None
    hidden_finished: int = 0
    left_out: int = 0  # matching jobs beyond MAX_ROWS
    states: dict[int, str] = field(default_factory=dict)  # job id -> display state
    waiting: str = "waiting for a worker"  # why a queued job nothing more is known about waits (ls_table)


def _typical_seconds(conn: sqlite3.Connection) -> float | None:
    rows = conn.execute(
        "SELECT finished_at - started_at FROM jobs WHERE state = 'succeeded' AND started_at IS NOT NULL "
        "ORDER BY finished_at DESC LIMIT ?",
        (TYPICAL_SAMPLE,),
    ).fetchall()
    return statistics.median(r[0] for r in rows) if rows else None


def queue_eta(conn: sqlite3.Connection, slots: int, typical: float | None, now: float) -> float | None:
    """Seconds until everything queued now has run: the slot-seconds still owed by the whole queue (whatever
    the table lists or the filter shows), spread over the workers' slots. Running jobs owe their own ETA when
    they report one; otherwise (and for queued jobs) the median duration of recent successes stands in. None
    without a worker, or with no history to estimate from. One aggregate query, however long the queue."""
    owed, without_eta, queued_gpus = unfinished_work(conn, typical or 0.0, now)
    if typical is None and (without_eta or queued_gpus):
        return None
    owed += (typical or 0.0) * queued_gpus
    if owed == 0:
        return 0.0
    return owed / slots if slots else None


def read_snapshot(conn: sqlite3.Connection, flt: JobFilter, now: float) -> QueueSnapshot:
    """A few queries in one read transaction, so counts, rows, the ETA and the paused flag agree."""
    problem = flt.problem()
    with read_tx(conn):
        recent = None if (flt.states or flt.labels) else RECENT_FINISHED
        jobs = [] if problem else list_jobs(conn, states=flt.states, labels=flt.labels, recent_finished=recent)
        counts = count_by_state(conn)
        paused = is_paused(conn)
        workers = live_workers(conn)
        waiting = waiting_text(workers, paused)
        slots = sum(len(w["pool"].get("slots", [])) for w in workers)
        eta = queue_eta(conn, slots, _typical_seconds(conn), now)
    jobs = [j for j in jobs if flt.matches(j)]
    matching = len(jobs)
    jobs = within_rows(jobs)
    states = {j["id"]: display_state(j) for j in jobs}
    finished = sum(counts.get(s, 0) for s in FINISHED)
    shown_finished = sum(1 for j in jobs if j["state"] in FINISHED)
    return QueueSnapshot(
        jobs=jobs,
        counts=counts,
        paused=paused,
        workers=len(workers),
        slots=slots,
        queue_eta=eta,
        taken_at=now,
        problem=problem,
        hidden_finished=0 if (flt.states or flt.labels) else max(finished - shown_finished, 0),
        states=states,
        left_out=matching - len(jobs),
        waiting=waiting,
    )


def within_rows(jobs: list[Row], limit: int = MAX_ROWS) -> list[Row]:
    """The jobs worth a row when there are too many: the most recent finished ones, every running one and
    the head of the queue (list_jobs orders them past, present, future)."""
    if len(jobs) <= limit:
        return jobs
    finished = [j for j in jobs if j["state"] in FINISHED]
    current = [j for j in jobs if j["state"] not in FINISHED]
    keep_current = current[: max(limit - min(len(finished), limit // 4), 0)]
    keep_finished = finished[len(finished) - (limit - len(keep_current)) :] if limit > len(keep_current) else []
    return keep_finished + keep_current


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """A bar of eighth blocks, so that a step of a 50-step render moves it visibly."""
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, rest = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[rest].strip() if rest else ""
    return ("█" * full + partial).ljust(width, "·")


def progress_text(step: int | None, total: int | None, width: int = BAR_WIDTH) -> str:
    if not total:
        return ""
    done = step or 0
    return f"{bar(done / total, width)} {done}/{total}"


COLUMNS = ("id", "state", "label", "prompt", "gpus", "step", "s/it", "eta", "age", "note")
# Under 100 columns the table keeps what says where a job is and why: the note before the prompt's end.
NARROW_COLUMNS = ("id", "state", "step", "note", "prompt")  # a running job's ETA is in its note
NARROW_BELOW = 100
# From 100 to WIDE_FROM columns: s/it and age give way, so that the prompt keeps some room beside the note.
MEDIUM_COLUMNS = ("id", "state", "label", "gpus", "step", "eta", "note", "prompt")
WIDE_FROM = 140


def columns_for(width: int) -> tuple[str, ...]:
    """The dashboard's columns at a terminal `width` cells wide."""
    if width < NARROW_BELOW:
        return NARROW_COLUMNS
    return MEDIUM_COLUMNS if width < WIDE_FROM else COLUMNS


def job_note(job: Row, state: str, now: float, waiting: str, eta: str = "") -> str:
    """Why a job waits or how it ended (as `flf2v ls` says it); for a render under way, the stage it is in
    (and `eta`, where the table has no column for it)."""
    if state == INTERRUPTED:
        return "its worker died"
    if state in ACTIVE:
        return " · ".join(x for x in (one_line(job.get("stage")), eta and f"ETA {eta}") if x)
    return note(job, now, waiting)


def job_cells(job: Row, state: str, now: float, waiting: str = "", narrow: bool = False) -> dict[str, str]:
    """The dashboard cells of a job, by column (COLUMNS; `narrow`: for NARROW_COLUMNS, a shorter bar and the
    ETA in the note). The prompt comes whole, on one line: the table cuts it to the room the others leave."""
    active = state in ACTIVE
    live = active and state != INTERRUPTED  # an interrupted render's worker is gone: no speed, no ETA to trust
    bar_width = NARROW_BAR_WIDTH if narrow else BAR_WIDTH
    eta = duration(job["eta_seconds"]) if live and job.get("eta_seconds") is not None else ""
    total = job.get("steps_total")
    step = job.get("steps_total") if job["state"] == "succeeded" and total else job.get("step")
    shown = (active or job["state"] in (SUCCEEDED, FAILED)) and total
    return {
        "id": str(job["id"]),
        "state": state,
        "label": one_line(",".join(job.get("labels") or [])) or "-",
        "prompt": one_line(job.get("prompt")),
        "gpus": gpus_text(job, state),
        "step": progress_text(step, total, bar_width) if shown else "",
        "s/it": f"{job['sec_per_it']:.2f}" if live and job.get("sec_per_it") else "",
        "eta": eta,
        "age": duration(now - job["created_at"]) if job.get("created_at") else "-",
        "note": one_line(job_note(job, state, now, waiting, eta if narrow else ""), NOTE_CHARS),
    }


def prompt_room(rows: list[dict[str, str]], columns: tuple[str, ...], width: int) -> int:
    """How many characters the prompt gets in a table `width` cells wide (each column has a cell of padding
    each side, and the table a scroll bar): what the other columns leave, from 10 to PROMPT_CHARS."""
    others = sum(max([len(c), *(len(r[c]) for r in rows)]) + 2 for c in columns if c != "prompt")
    return max(10, min(PROMPT_CHARS, width - others - 4))


def status_line(snap: QueueSnapshot) -> str:
    """The queue in one line: is anything running it, how much is there, when will it be done."""
    c = snap.counts
    parts = ["PAUSED: running jobs finish, nothing new starts (p resumes)"] if snap.paused else []
    if snap.workers == 0:
        # Not "read-only": cancel, hold, retry and submit still change the queue; only nothing runs it.
        parts.append("no worker running: nothing will start until `flf2v worker` runs")
    else:
        parts.append(f"{snap.workers} worker(s), {snap.slots} slot(s)")
    run = " · ".join(parts)
    counts = " ".join(
        f"{c.get(s, 0)} {s}" for s in (RUNNING, QUEUED, HELD, INTERRUPTED, *FINISHED)
        if c.get(s, 0)
    )  # fmt: skip
    eta = "" if snap.queue_eta is None else f" · queue ETA {duration(snap.queue_eta)}"
    return f"{run} · {counts or 'no jobs'}{eta}"
