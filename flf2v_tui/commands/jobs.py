"""Commands that read or steer jobs: ls, show, wait, cancel, hold, release, top, rm, pause, resume."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from engine.errors import BadInputError
from flf2v_tui.commands.common import handles_errors, open_home, parse_ids, print_json
from flf2v_tui.job_text import display_state, ls_json, note, show_json, show_text
from flf2v_tui.ls_table import COLUMNS, ls_parsable, ls_text, parse_columns, waiting_text
from flf2v_tui.term import echo, terminal_width
from flf2v_tui.worker import KILL_GRACE_S
from storage import ops
from storage.jobs import attempts_of, list_jobs, require_job
from storage.states import FINISHED, LISTED, UNSUCCESSFUL
from storage.workers import is_paused, live_workers, set_paused


@handles_errors
def ls(
    state: Annotated[
        list[str] | None, typer.Option("--state", "-s", help=f"only these states: {', '.join(LISTED)}")
    ] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="only jobs with this label")] = None,
    all_jobs: Annotated[bool, typer.Option("--all", "-a", help="every finished job too, not just the last 20")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    columns: Annotated[
        str | None,
        typer.Option("--format", "-o", help=f"columns, e.g. id,state,label,step,eta,note; of {','.join(COLUMNS)}"),
    ] = None,
    no_header: Annotated[bool, typer.Option("--no-header", help="no heading line")] = False,
    parsable: Annotated[
        bool, typer.Option("--parsable", "-p", help="for scripts: fields separated by |, nothing cut, no colour")
    ] = False,
) -> None:
    """List jobs: finished ones first, then running, then the queue in the order it will run."""
    chosen = parse_columns(columns)
    states = [s.strip() for v in (state or []) for s in v.split(",") if s.strip()]
    unknown = [s for s in states if s not in LISTED]
    if unknown:
        raise BadInputError(f"unknown state {unknown[0]!r}; choose from {', '.join(LISTED)}")
    _, conn = open_home()
    recent = None if (all_jobs or states or label) else 20
    whole = parsable and "prompt" in chosen
    jobs = list_jobs(conn, states=states, labels=label or [], recent_finished=recent, whole_prompts=whole)
    paused = is_paused(conn)
    waiting = waiting_text(live_workers(conn), paused) if any(j["state"] == "queued" for j in jobs) else ""
    if json_out:
        print_json(ls_json(jobs, waiting))
        return
    if parsable:
        if jobs or not no_header:
            typer.echo(ls_parsable(jobs, chosen, header=not no_header, waiting=waiting))
        return
    if not jobs:
        # A script's output (--no-header, as squeue -h) is empty; a person is told why, on stderr for a script.
        message = "no jobs" + (" match" if states or label else " yet; queue one with flf2v submit (or flf2v demo)")
        echo(message, err=no_header)
        return
    text, left_out = ls_text(jobs, terminal_width(), columns=chosen, header=not no_header, waiting=waiting)
    typer.echo(text)
    if left_out:
        echo(f"({', '.join(left_out)} left out: terminal too narrow; --parsable shows all)", err=True)
    if paused:
        echo("queue paused: running jobs finish, nothing new starts (flf2v resume)")


@handles_errors
def show(
    job_id: Annotated[int, typer.Argument(help="job id")],
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Show a job's parameters, state, progress and every attempt. Exits 1 if it failed or was cancelled."""
    _, conn = open_home()
    job = require_job(conn, job_id)
    attempts = attempts_of(conn, job_id)
    if json_out:
        print_json(show_json(job, attempts))
    else:
        typer.echo(show_text(job, attempts))
    if job["state"] in UNSUCCESSFUL:
        raise typer.Exit(1)


@handles_errors
def wait(
    job_ids: Annotated[list[str], typer.Argument(help="job ids")],
    timeout: Annotated[float, typer.Option("--timeout", help="give up after this many seconds (0: never)")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress lines")] = False,
) -> None:
    """Wait until jobs finish. Exits 0 if all succeeded, 1 if any failed or was cancelled."""
    from flf2v_tui.progress import follow_jobs

    _, conn = open_home()
    ids = parse_ids(job_ids)
    for job_id in ids:
        require_job(conn, job_id)
    finals = follow_jobs(conn, ids, timeout=timeout, quiet=quiet)
    if finals is None:
        echo(f"timed out after {timeout:g} s; {_still_unfinished(conn, ids)}", err=True)
        raise typer.Exit(1)
    if any(state != "succeeded" for state in finals.values()):
        raise typer.Exit(1)


def _still_unfinished(conn: Any, ids: list[int]) -> str:
    """What the jobs a wait gave up on are doing: held ones say so (they never start by themselves)."""
    parts = []
    for job in list_jobs(conn, ids=ids):
        state = display_state(job)
        if state == "held" and job.get("never_on"):
            parts.append(f"job {job['id']} {note(job, time.time())}")  # "never starts: job 5 failed (...)"
        elif state == "held" and job.get("waiting_on"):
            parts.append(f"job {job['id']} is held: it waits ({job['waiting_on']})")
        elif state == "held":
            parts.append(f"job {job['id']} is held and never starts until released (flf2v release {job['id']})")
        elif state not in FINISHED:
            parts.append(f"job {job['id']} is {state}")
    return "; ".join(parts) if parts else "the jobs have finished since"


class _Countdown:
    """The grace period as it passes: one line rewritten on a terminal, a line every few seconds otherwise.
    Messages go through `say`, which first clears that line so that they never land on its end."""

    def __init__(self, job_ids: list[int]) -> None:
        self.jobs = ", ".join(str(j) for j in job_ids)
        self.tty, self.last, self.drawn = sys.stderr.isatty(), -1.0, False

    def __call__(self, left: float, processes: int) -> None:
        text = f"job {self.jobs}: waiting for {processes} process(es) to stop; SIGKILL in {left:.0f} s"
        if self.tty:
            sys.stderr.write(f"\r\x1b[K{text}")
            sys.stderr.flush()
            self.drawn = True
        elif self.last < 0 or self.last - left >= 5:
            echo(text, err=True)
            self.last = left

    def clear(self) -> None:
        if self.drawn:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.drawn = False

    def say(self, text: str) -> None:
        self.clear()
        echo(text)


@handles_errors
def cancel(
    job_ids: Annotated[list[str], typer.Argument(help="job ids, e.g. 12 or 12,13 or 12..20")],
    kill_grace: Annotated[
        float, typer.Option("--kill-grace", help="seconds between SIGTERM and SIGKILL when no worker watches it")
    ] = KILL_GRACE_S,
) -> None:
    """Cancel jobs: queued ones at once; running ones get SIGTERM, a grace period, then SIGKILL.

    The worker that runs a job stops it. When no worker watches a render (the worker was stopped and left it
    running), this command stops it itself, waits out the grace period and records the job as cancelled.
    Several such renders are signalled together and share one grace period.
    """
    # Imported on use: process handling pulls in psutil, which the other commands need not load.
    from flf2v_tui.worker.cancel import request_cancel, stop_unwatched

    if kill_grace < 0:
        raise BadInputError("--kill-grace must be 0 or more seconds")
    home, conn = open_home()
    unwatched: list[dict[str, Any]] = []
    for job_id in parse_ids(job_ids):
        text, attempt = request_cancel(conn, job_id)
        if attempt is None:
            echo(text)
        else:
            unwatched.append(attempt)
    if not unwatched:
        return
    countdown = _Countdown([a["job_id"] for a in unwatched])
    try:
        lines = stop_unwatched(conn, str(home.root), unwatched, kill_grace, countdown.say, countdown)
    finally:
        countdown.clear()
    for attempt, line in zip(unwatched, lines, strict=True):
        echo(line or f"job {attempt['job_id']}: cancel requested; a worker took it over and stops it")


@handles_errors
def hold(job_ids: Annotated[list[str], typer.Argument(help="queued job ids")]) -> None:
    """Keep queued jobs from starting until released."""
    _, conn = open_home()
    for job_id in parse_ids(job_ids):
        echo(ops.set_held(conn, job_id, True))


@handles_errors
def release(job_ids: Annotated[list[str], typer.Argument(help="held job ids")]) -> None:
    """Let held jobs start again."""
    _, conn = open_home()
    for job_id in parse_ids(job_ids):
        echo(ops.set_held(conn, job_id, False))


@handles_errors
def top(job_id: Annotated[int, typer.Argument(help="a queued job id")]) -> None:
    """Move a queued job to the front of the queue."""
    _, conn = open_home()
    echo(ops.move_to_top(conn, job_id))


@handles_errors
def rm(
    job_ids: Annotated[list[str], typer.Argument(help="job ids that are not running")],
    keep_files: Annotated[bool, typer.Option("--keep-files", help="keep the job's folder (inputs and logs)")] = False,
) -> None:
    """Remove jobs from the queue and their folders of input copies and logs. Videos stay in videos/."""
    home, conn = open_home()
    for job_id in parse_ids(job_ids):
        echo(ops.remove(conn, home, job_id, keep_files=keep_files))


@handles_errors
def pause() -> None:
    """Drain: running jobs finish, nothing new starts (until flf2v resume)."""
    _, conn = open_home()
    set_paused(conn, True)
    running = len(list_jobs(conn, states=["running"]))
    echo(f"queue paused; {running} running job(s) will finish, nothing new starts (flf2v resume)")


@handles_errors
def resume() -> None:
    """Start queued jobs again after flf2v pause."""
    _, conn = open_home()
    set_paused(conn, False)
    workers = live_workers(conn)
    suffix = "" if workers else "; no worker is running (start one with flf2v worker)"
    echo("queue resumed" + suffix)


def register(app: typer.Typer) -> None:
    examples = {
        "ls": "flf2v ls --state running,queued --label sweep\n\n  flf2v ls --all --json\n\n"
        "  flf2v ls --format id,state,label,step,eta,note --parsable --no-header",
        "show": "flf2v show 12\n\n  flf2v show 12 --json | jq .attempts",
        "wait": "flf2v wait 12 13 --timeout 3600",
        "cancel": "flf2v cancel 12\n\n  flf2v cancel 20..29 --kill-grace 10",
        "hold": "flf2v hold 12",
        "release": "flf2v release 12",
        "top": "flf2v top 12",
        "rm": "flf2v rm 12 13 --keep-files",
        "pause": "flf2v pause",
        "resume": "flf2v resume",
    }
    for fn in (ls, show, wait, cancel, hold, release, top, rm, pause, resume):
        name = fn.__name__
        app.command(name, epilog=f"Example:\n\n  {examples[name]}")(fn)
