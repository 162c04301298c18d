"""Following jobs until they finish: a live bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sqlite3
import sys
import time
from typing import Any

from flf2v_tui.job_text import display_state
from flf2v_tui.term import duration, inert_row, use_colour
from storage.jobs import list_jobs
from storage.states import ACTIVE, FINISHED

POLL_S = 0.25


def _describe(job: dict[str, Any]) -> str:
    state = display_state(job)
    if state not in ACTIVE:
        return state + (f": {job['state_reason']}" if job.get("state_reason") else "")
    text = f"{state} {job.get('stage') or 'starting'}"
    if job.get("step") and job.get("steps_total"):
        text += f" {job['step']}/{job['steps_total']}"
    if job.get("sec_per_it"):
        text += f" {job['sec_per_it']:.2f}s/it"
    if job.get("eta_seconds") is not None and job.get("stage") == "denoise":
        text += f" ETA {duration(job['eta_seconds'])}"
    return text


def _final_line(job: dict[str, Any]) -> str:
    state = job["state"]
    if state == "succeeded":
        return f"job {job['id']} succeeded: {job.get('output_path')}"
    return f"job {job['id']} {state}" + (f": {job['state_reason']}" if job.get("state_reason") else "")


def follow_jobs(
    conn: sqlite3.Connection, ids: list[int], timeout: float = 0, quiet: bool = False
) -> dict[int, str] | None:
    """Poll until every job is finished; returns their final states, or None on timeout."""
    live = not quiet and sys.stdout.isatty()
    if live:
        return _follow_live(conn, ids, timeout)
    return _follow_plain(conn, ids, timeout, quiet)


def _poll(conn: sqlite3.Connection, ids: list[int]) -> dict[int, dict[str, Any]]:
    # Inert as read: every line below quotes state reasons (engine output) and output paths (a person's).
    return {job["id"]: inert_row(job) for job in list_jobs(conn, ids=ids)}


def _follow_plain(conn: sqlite3.Connection, ids: list[int], timeout: float, quiet: bool) -> dict[int, str] | None:
    started = time.monotonic()
    last: dict[int, str] = {}
    while True:
        jobs = _poll(conn, ids)
        for job_id, job in jobs.items():
            if job["state"] in FINISHED:
                if last.get(job_id) != "__final__":
                    print(_final_line(job), flush=True)
                    last[job_id] = "__final__"
                continue
            key = f"{display_state(job)}|{job.get('stage')}|{job.get('step')}|{job.get('state_reason')}"
            if not quiet and key != last.get(job_id):
                print(f"job {job_id}: {_describe(job)}", flush=True)
            last[job_id] = key
        if all(j["state"] in FINISHED for j in jobs.values()):
            return {i: j["state"] for i, j in jobs.items()}
        if timeout and time.monotonic() - started > timeout:
            return None
        time.sleep(POLL_S)


def _follow_live(conn: sqlite3.Connection, ids: list[int], timeout: float) -> dict[int, str] | None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(no_color=not use_colour())
    started = time.monotonic()
    with Progress(
        TextColumn("job {task.fields[job]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}", markup=False),  # a reason's brackets are text, not rich markup
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        tasks = {i: progress.add_task("", total=None, job=i) for i in ids}
        while True:
            jobs = _poll(conn, ids)
            for job_id, job in jobs.items():
                total = job.get("steps_total") or None
                done = job.get("step") or 0
                if job["state"] == "succeeded" and total:
                    done = total
                progress.update(tasks[job_id], total=total, completed=done, description=_describe(job))
            if all(j["state"] in FINISHED for j in jobs.values()):
                break
            if timeout and time.monotonic() - started > timeout:
                return None
            time.sleep(POLL_S)
    for job in jobs.values():
        console.print(_final_line(job), markup=False, highlight=False)
    return {i: j["state"] for i, j in jobs.items()}
