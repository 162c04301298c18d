"""What the dashboard and the job view do to a job, run off the UI thread with the outcome as a notification.
Each is the same storage operation as the CLI command of the same name."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from engine.errors import BadInputError
from flf2v_tui.submission import retry_job
from flf2v_tui.tui.db import deliver
from flf2v_tui.tui.screens.base import AppScreen
from flf2v_tui.tui.screens.confirm import ConfirmScreen
from flf2v_tui.tui.text import notify_plain
from flf2v_tui.worker import KILL_GRACE_S
from storage import ops
from storage.db import STORAGE_ERRORS
from storage.paths import Home
from storage.states import FINISHED, WAITING
from storage.workers import set_paused


def run_op(screen: AppScreen[Any], op: Callable[[sqlite3.Connection], str], then: Callable[[], None]) -> None:
    """op(conn) on the writing connection in a thread; its answer (or the error) is shown, then `then` runs."""
    app, db = screen.app, screen.flf2v.db

    def work() -> None:
        try:
            message, severity = db.write(op), "information"
        except BadInputError as exc:
            message, severity = exc.message, "error"
        except STORAGE_ERRORS as exc:
            message = f"could not change {db.home.db} ({exc}); is it read-only for you?"
            severity = "error"

        def report() -> None:
            notify_plain(app, message, severity=severity)  # type: ignore[arg-type]
            then()

        deliver(app, report)

    screen.run_worker(work, thread=True, group="ops")


def cancel(screen: AppScreen[Any], job_id: int, state: str, then: Callable[[], None]) -> None:
    if state in FINISHED:
        screen.notify(f"job {job_id} is already {state}; nothing to cancel", severity="warning")
        return
    what = "stop its processes (SIGTERM, then SIGKILL)" if state != "queued" and state != "held" else "drop it"
    question = f"Cancel job {job_id} ({state})? This will {what}."

    home = screen.flf2v.db.home

    def answered(yes: bool | None) -> None:
        if yes:
            run_op(screen, lambda conn: cancel_job(conn, home, job_id), then)

    screen.app.push_screen(ConfirmScreen(question, yes="Cancel job"), answered)


def cancel_job(conn: sqlite3.Connection, home: Home, job_id: int) -> str:
    """Set the cancel flag; when no worker watches the job's render, stop it the way `flf2v cancel` does, in
    a process of its own: the grace period outlasts a notification, and it must finish if the TUI quits."""
    from flf2v_tui.worker.cancel import request_cancel

    text, attempt = request_cancel(conn, job_id)
    if attempt is None:
        return text
    log_path = home.job_dir(job_id) / "cancel.log"
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            subprocess.Popen(
                [sys.executable, "-m", "flf2v_tui.cli", "cancel", str(job_id)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "FLF2V_HOME": str(home.root), "NO_COLOR": "1"}, start_new_session=True,
            )  # fmt: skip
    except OSError as exc:
        return (
            f"job {job_id}: cancel requested, but no worker watches its render and it could not be stopped from "
            f"here ({exc}); run flf2v cancel {job_id}, or start a worker"
        )
    return (
        f"job {job_id}: no worker watches its render; stopping it from here, SIGKILL after {KILL_GRACE_S:g} s "
        f"(see {log_path})"
    )


def retry(screen: AppScreen[Any], job_id: int, then: Callable[[], None]) -> None:
    home = screen.flf2v.db.home
    run_op(screen, lambda conn: retry_job(conn, home, job_id, {}), then)


def toggle_hold(screen: AppScreen[Any], job_id: int, state: str, held: bool, then: Callable[[], None]) -> None:
    if state not in WAITING:
        screen.notify(f"job {job_id} is {state}; only queued jobs can be held or released", severity="warning")
        return
    run_op(screen, lambda conn: ops.set_held(conn, job_id, not held), then)


def to_top(screen: AppScreen[Any], job_id: int, then: Callable[[], None]) -> None:
    run_op(screen, lambda conn: ops.move_to_top(conn, job_id), then)


def toggle_pause(screen: AppScreen[Any], paused: bool, then: Callable[[], None]) -> None:
    def op(conn: sqlite3.Connection) -> str:
        set_paused(conn, not paused)
        return "queue resumed" if paused else "queue paused: running jobs finish, nothing new starts (p resumes)"

    run_op(screen, op, then)
